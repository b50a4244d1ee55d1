import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SluiceCore

/// An Ollama server: OpenAI requests are translated to its native API, its native API is proxied as is.
public struct OllamaUpstream: UpstreamProvider {
    public let endpoint: UpstreamEndpoint
    let http: UpstreamHTTP

    public init(endpoint: UpstreamEndpoint, client: HTTPClient, timeouts: UpstreamTimeouts, maxResponseBytes: Int = 64 * 1024 * 1024) {
        self.endpoint = endpoint
        self.http = UpstreamHTTP(client: client, endpoint: endpoint, timeouts: timeouts, maxResponseBytes: maxResponseBytes)
    }

    public func chatCompletions(_ request: ChatCompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        try await chatOnCanonicalLane(request, identity: identity, logger: logger)
    }

    public func completions(_ request: CompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        let native = try OllamaRequestTranslation.generate(request)
        let body = try http.encode(native)
        if request.isStreaming {
            let response = try await http.send(.POST, "/api/generate", body: body, logger: logger)
            let translator = OllamaGenerateStreamTranslator(model: request.model, identity: identity, includeUsage: request.includeUsage)
            return .stream(UpstreamStream(body: response.body, translator: translator))
        }
        let answer = try http.decode(Ollama.GenerateResponse.self, from: try await http.sendCollecting(.POST, "/api/generate", body: body, logger: logger), logger: logger)
        let translated = OllamaResponseTranslation.completion(answer, model: request.model, identity: identity)
        return .complete(body: try http.encode(translated), usage: translated.usage)
    }

    public func embeddings(_ request: EmbeddingsRequest, rawBody: ByteBuffer, logger: Logger) async throws -> UpstreamReply {
        let body = try http.encode(OllamaRequestTranslation.embed(request))
        let answer = try http.decode(Ollama.EmbedResponse.self, from: try await http.sendCollecting(.POST, "/api/embed", body: body, logger: logger), logger: logger)
        let translated = OllamaResponseTranslation.embeddings(answer, model: request.model, encodingFormat: request.encodingFormat)
        return .complete(body: try http.encode(translated), usage: Usage(promptTokens: translated.usage.promptTokens, completionTokens: 0))
    }

    public func models(created: Int, logger: Logger) async throws -> ModelList {
        let tags = try http.decode(Ollama.TagsResponse.self, from: try await http.sendCollecting(.GET, "/api/tags", body: nil, logger: logger), logger: logger)
        return OllamaResponseTranslation.models(tags, created: created)
    }

    public func native(_ request: NativeRequest, logger: Logger) async throws -> UpstreamReply {
        let method = HTTPMethod(rawValue: request.method.rawValue)
        if request.streams {
            let response = try await http.send(method, request.path, body: request.body, logger: logger)
            return .stream(UpstreamStream(body: response.body, translator: OllamaStreamPassthrough()))
        }
        let body = try await http.sendCollecting(method, request.path, body: request.body, logger: logger)
        return .complete(body: body, usage: Self.nativeUsage(body))
    }

    public func probe(logger: Logger) async throws {
        _ = try await http.sendCollecting(.GET, "/api/version", body: nil, logger: logger)
    }

    private struct NativeCounts: Decodable {
        var promptEvalCount: Int?
        var evalCount: Int?
        enum CodingKeys: String, CodingKey {
            case promptEvalCount = "prompt_eval_count"
            case evalCount = "eval_count"
        }
    }

    static func nativeUsage(_ body: ByteBuffer) -> Usage? {
        guard let counts = try? JSONDecoder().decode(NativeCounts.self, from: body),
            counts.promptEvalCount != nil || counts.evalCount != nil
        else { return nil }
        return Usage(promptTokens: counts.promptEvalCount ?? 0, completionTokens: counts.evalCount ?? 0)
    }
}
