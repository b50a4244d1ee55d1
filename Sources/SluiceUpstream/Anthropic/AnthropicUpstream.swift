import AsyncHTTPClient
import Foundation
import NIOFoundationCompat
import Logging
import NIOCore
import SluiceCore

/// An Anthropic Messages API server (`/v1/messages`): Anthropic clients pass through byte for byte, every other
/// generating dialect goes through the canonical model.
///
/// Sends the endpoint's key as `x-api-key` and the client's `anthropic-version` (else `2023-06-01`); completions,
/// embeddings and Ollama's native API have no Anthropic counterpart and are refused with a 400 or 404 naming why.
public struct AnthropicUpstream: UpstreamProvider, GenerationUpstream {
    public let endpoint: UpstreamEndpoint
    let http: UpstreamHTTP

    public init(endpoint: UpstreamEndpoint, client: HTTPClient, timeouts: UpstreamTimeouts, maxResponseBytes: Int = 64 * 1024 * 1024) {
        self.endpoint = endpoint
        self.http = UpstreamHTTP(client: client, endpoint: endpoint, timeouts: timeouts, maxResponseBytes: maxResponseBytes)
    }

    /// `/v1/messages` as the client sent it, with the client's `anthropic-version` and `anthropic-beta` headers.
    public func messages(
        rawBody: ByteBuffer, streams: Bool, headers: [(String, String)], collectsAnswer: Bool, logger: Logger
    ) async throws -> UpstreamReply {
        if streams {
            let response = try await http.send(.POST, "/v1/messages", body: rawBody, headers: headers, logger: logger)
            return .stream(UpstreamStream(body: response.body, translator: AnthropicStreamPassthrough(collectsAnswer: collectsAnswer)))
        }
        let body = try await http.sendCollecting(.POST, "/v1/messages", body: rawBody, headers: headers, logger: logger)
        guard let answer = try? AnthropicMessages.decodeAnswer(body) else { return .complete(body: body, usage: nil) }
        return .generated(body: body, answer: answer)
    }

    /// `/v1/messages/count_tokens`, passed through.
    public func countTokens(rawBody: ByteBuffer, headers: [(String, String)], logger: Logger) async throws -> ByteBuffer {
        try await http.sendCollecting(.POST, "/v1/messages/count_tokens", body: rawBody, headers: headers, logger: logger)
    }

    public func generate(_ request: Generation.Request, identity: ResponseIdentity, logger: Logger) async throws -> GenerationReply {
        let body = try AnthropicMessages.encodeRequest(request)
        if request.stream {
            let response = try await http.send(.POST, "/v1/messages", body: body, logger: logger)
            return .stream(body: response.body, decoder: AnthropicMessages.StreamDecoder())
        }
        return .answer(try AnthropicMessages.decodeAnswer(try await http.sendCollecting(.POST, "/v1/messages", body: body, logger: logger)))
    }

    public func chatCompletions(_ request: ChatCompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        try await chatOnCanonicalLane(request, identity: identity, logger: logger)
    }

    public func completions(_ request: CompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        throw Self.unsupported("/v1/completions")
    }

    public func embeddings(_ request: EmbeddingsRequest, rawBody: ByteBuffer, logger: Logger) async throws -> UpstreamReply {
        throw Self.unsupported("/v1/embeddings")
    }

    public func models(created: Int, logger: Logger) async throws -> ModelList {
        let body = try await http.sendCollecting(.GET, "/v1/models", body: nil, logger: logger)
        guard let data = (try? JSONDecoder().decode(JSONValue.self, from: body))?["data"]?.arrayValue else {
            throw APIError.upstreamFailed("The upstream sent a model list that could not be read.")
        }
        return ModelList(data: data.compactMap { $0["id"]?.stringValue }.map { Model(id: $0, created: created, ownedBy: "anthropic") })
    }

    public func native(_ request: NativeRequest, logger: Logger) async throws -> UpstreamReply {
        throw APIError(
            status: 404, type: "invalid_request_error", code: "not_found",
            message: "The Ollama native API is only available with an Ollama upstream.")
    }

    public func probe(logger: Logger) async throws {
        _ = try await http.sendCollecting(.GET, "/v1/models", body: nil, logger: logger)
    }

    static func unsupported(_ route: String) -> APIError {
        APIError(
            status: 400, type: "invalid_request_error", code: "unsupported_by_upstream",
            message: "\(route) is not available on an Anthropic upstream.", param: "model")
    }
}

/// Anthropic SSE passed through untouched, watched for its usage (`message_start` and `message_delta`) and for a
/// clean end (`message_stop`): a body that ends before it is a truncation.
public struct AnthropicStreamPassthrough: StreamTranslator {
    public let contentType = "text/event-stream"
    public private(set) var usage: Usage?
    private var decoder = AnthropicMessages.StreamDecoder()
    private var deltas: [Generation.Delta] = []
    private var builder: Generation.AnswerBuilder?

    public init(collectsAnswer: Bool = false) {
        builder = collectsAnswer ? Generation.AnswerBuilder() : nil
    }

    public var canonicalAnswer: Generation.Answer? { builder?.answer }

    public mutating func translate(_ input: ByteBuffer, into output: inout ByteBuffer) throws(APIError) {
        var copy = input
        output.writeBuffer(&copy)
        deltas.removeAll(keepingCapacity: true)
        try decoder.decode(input, into: &deltas)
        note()
    }

    public mutating func finish(into output: inout ByteBuffer) throws(APIError) {
        deltas.removeAll(keepingCapacity: true)
        try decoder.finish(into: &deltas)
        note()
    }

    public func failureFrame(for error: APIError) -> ByteBuffer { AnthropicMessages.errorEvent(for: error) }

    private mutating func note() {
        for delta in deltas {
            builder?.observe(delta)
            switch delta {
            case .messageStart(_, _, let counts?), .finish(_, _, let counts?): usage = counts.openAI
            default: break
            }
        }
    }
}
