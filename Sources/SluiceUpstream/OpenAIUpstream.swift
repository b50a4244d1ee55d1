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


    /// `/v1/responses` as the client sent it, for an upstream that serves the Responses API itself.
    public func responses(rawBody: ByteBuffer, streams: Bool, logger: Logger) async throws -> UpstreamReply {
        let rawBody = renamingModel(rawBody)
        if streams {
            let response = try await http.send(.POST, "/v1/responses", body: rawBody, logger: logger)
            return .stream(UpstreamStream(body: response.body, translator: ResponsesStreamPassthrough()))
        }
        let answer = try await http.sendCollecting(.POST, "/v1/responses", body: rawBody, logger: logger)
        return .complete(body: answer, usage: ResponsesStreamPassthrough.usage(in: (try? JSONDecoder().decode(JSONValue.self, from: answer))?["usage"]))
    }

    /// The body with its model renamed as `modelNames` says; untouched (not even parsed) when there is nothing to rename.
    func renamingModel(_ body: ByteBuffer) -> ByteBuffer {
        guard !endpoint.modelNames.isEmpty, case .object(var members)? = try? JSONDecoder().decode(JSONValue.self, from: body),
            let model = members["model"]?.stringValue
        else { return body }
        let name = endpoint.upstreamName(for: model)
        guard name != model else { return body }
        members["model"] = .string(name)
        return (try? WireJSON.encoder().encodeAsByteBuffer(JSONValue.object(members), allocator: ByteBufferAllocator())) ?? body
    }

    private func forward(_ path: String, _ body: ByteBuffer, streams: Bool, logger: Logger) async throws -> UpstreamReply {
        let body = renamingModel(body)
        if streams {
            let response = try await http.send(.POST, path, body: body, logger: logger)
            return .stream(UpstreamStream(body: response.body, translator: OpenAIStreamPassthrough()))
        }
        let answer = try await http.sendCollecting(.POST, path, body: body, logger: logger)
        return .complete(body: answer, usage: Usage(inAnswer: answer))
    }
}

/// Responses API SSE passed through untouched, watched for the usage of its terminal event and for a clean end:
/// a body that ends before `response.completed`, `response.incomplete` or `response.failed` is a truncation.
public struct ResponsesStreamPassthrough: StreamTranslator {
    public let contentType = "text/event-stream"
    public private(set) var usage: Usage?
    /// The Response object of the terminal event (`response.completed`, …), so the gateway can keep it for its key.
    public private(set) var finalResponse: ByteBuffer?
    private var decoder = SSEDecoder()
    private var ended = false

    public init() {}

    public mutating func translate(_ input: ByteBuffer, into output: inout ByteBuffer) throws(APIError) {
        var copy = input
        output.writeBuffer(&copy)
        let events = try decoder.upstreamEvents(input)
        for event in events { note(event) }
    }

    public mutating func finish(into output: inout ByteBuffer) throws(APIError) {
        guard ended else { throw APIError.upstreamFailed("The upstream's stream ended before the response was complete.") }
    }

    public func failureFrame(for error: APIError) -> ByteBuffer {
        var encoder = OpenAIResponses.StreamEncoder(id: "resp_failed", model: "", createdAt: 0)
        var out = ByteBuffer()
        encoder.write(.error(error), into: &out)
        return out
    }

    private mutating func note(_ event: ServerSentEvent) {
        guard let name = event.event, name == "response.completed" || name == "response.incomplete" || name == "response.failed"
        else { return }
        ended = true
        let value = try? JSONDecoder().decode(JSONValue.self, from: Data(event.data.utf8))
        usage = Self.usage(in: value?["response"]?["usage"]) ?? usage
        if name == "response.completed", let response = value?["response"] {
            finalResponse = try? WireJSON.encoder().encodeAsByteBuffer(response, allocator: ByteBufferAllocator())
        }
    }

    /// A Responses `usage` object (`input_tokens`, `output_tokens`, and their `_details`) as the gateway's usage.
    static func usage(in value: JSONValue?) -> Usage? {
        guard case .int(let input)? = value?["input_tokens"], case .int(let output)? = value?["output_tokens"] else { return nil }
        var cached = 0
        var reasoning = 0
        if case .int(let count)? = value?["input_tokens_details"]?["cached_tokens"] { cached = count }
        if case .int(let count)? = value?["output_tokens_details"]?["reasoning_tokens"] { reasoning = count }
        return Usage(promptTokens: input, completionTokens: output, cachedTokens: cached, reasoningTokens: reasoning)
    }
}
