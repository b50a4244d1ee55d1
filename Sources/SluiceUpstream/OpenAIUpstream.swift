import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SluiceCore

/// An OpenAI-compatible server: requests and answers pass through byte for byte.
public struct OpenAIUpstream: UpstreamProvider {
    public let endpoint: UpstreamEndpoint
    let http: UpstreamHTTP

    public init(endpoint: UpstreamEndpoint, client: HTTPClient, timeouts: UpstreamTimeouts, maxResponseBytes: Int = 64 * 1024 * 1024) {
        self.endpoint = endpoint
        self.http = UpstreamHTTP(client: client, endpoint: endpoint, timeouts: timeouts, maxResponseBytes: maxResponseBytes)
    }

    public func chatCompletions(_ request: ChatCompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        try await forward("/v1/chat/completions", rawBody, streams: request.isStreaming, logger: logger)
    }

    public func completions(_ request: CompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        try await forward("/v1/completions", rawBody, streams: request.isStreaming, logger: logger)
    }

    public func embeddings(_ request: EmbeddingsRequest, rawBody: ByteBuffer, logger: Logger) async throws -> UpstreamReply {
        try await forward("/v1/embeddings", rawBody, streams: false, logger: logger)
    }

    public func models(created: Int, logger: Logger) async throws -> ModelList {
        try http.decode(ModelList.self, from: try await http.sendCollecting(.GET, "/v1/models", body: nil, logger: logger), logger: logger)
    }

    public func native(_ request: NativeRequest, logger: Logger) async throws -> UpstreamReply {
        throw APIError(
            status: 404, type: "invalid_request_error", code: "not_found",
            message: "The Ollama native API is only available with an Ollama upstream.")
    }

    public func probe(logger: Logger) async throws {
        _ = try await http.sendCollecting(.GET, "/v1/models", body: nil, logger: logger)
    }


    private func forward(_ path: String, _ body: ByteBuffer, streams: Bool, logger: Logger) async throws -> UpstreamReply {
        if streams {
            let response = try await http.send(.POST, path, body: body, logger: logger)
            return .stream(UpstreamStream(body: response.body, translator: OpenAIStreamPassthrough()))
        }
        let answer = try await http.sendCollecting(.POST, path, body: body, logger: logger)
        return .complete(body: answer, usage: Usage(inAnswer: answer))
    }
}
