import AsyncHTTPClient
import Logging
import NIOCore
import SluiceCore

/// An upstream's answer on the canonical lane: a complete canonical answer, or its own stream with the decoder
/// that reads it into canonical deltas. The gateway encodes either for the client's dialect.
public enum GenerationReply: Sendable {
    case answer(Generation.Answer)
    case stream(body: HTTPClientResponse.Body, decoder: any GenerationStreamDecoder)
}

/// The canonical lane: any client dialect (Anthropic Messages, OpenAI Responses, …) sent to an upstream in the
/// upstream's own wire format, so each new dialect or upstream kind is one decoder and one encoder, not N×M.
public protocol GenerationUpstream: UpstreamProvider {
    /// Sends `request` (its `model` already the upstream's name) in this upstream's dialect.
    func generate(_ request: Generation.Request, identity: ResponseIdentity, logger: Logger) async throws -> GenerationReply
}

extension UpstreamProvider {
    /// The canonical lane of this upstream, or a 400 when its kind has none.
    public func generation(_ request: Generation.Request, identity: ResponseIdentity, logger: Logger) async throws -> GenerationReply {
        guard let lane = self as? any GenerationUpstream else {
            throw APIError(
                status: 400, type: "invalid_request_error", code: "unsupported_by_upstream",
                message: "This API is not available on the upstream serving model '\(request.model)'.", param: "model")
        }
        return try await lane.generate(request, identity: identity, logger: logger)
    }
}

extension GenerationUpstream {
    /// OpenAI chat completions on the canonical lane: decoded to the canonical model, sent in this upstream's
    /// dialect, and its answer or stream encoded back as chat completions.
    func chatOnCanonicalLane(_ request: ChatCompletionRequest, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        var canonical = try OpenAIChat.canonicalRequest(request)
        canonical.stream = request.isStreaming
        switch try await generate(canonical, identity: identity, logger: logger) {
        case .answer(let answer):
            let response = OpenAIChat.chatResponse(answer, identity: identity)
            guard let body = try? WireJSON.encoder().encodeAsByteBuffer(response, allocator: ByteBufferAllocator()) else {
                throw APIError.internalError()
            }
            return .complete(body: body, usage: answer.usage.openAI)
        case .stream(let body, let decoder):
            let encoder = OpenAIChat.StreamEncoder(model: request.model, identity: identity, includeUsage: request.includeUsage)
            return .stream(UpstreamStream(body: body, translator: canonicalTranslator(decoder: decoder, encoder: encoder)))
        }
    }
}

extension OllamaUpstream: GenerationUpstream {
    /// Ollama `/api/chat`, NDJSON when streaming.
    public func generate(_ request: Generation.Request, identity: ResponseIdentity, logger: Logger) async throws -> GenerationReply {
        var native = try OllamaChat.ollamaRequest(request)
        native.stream = request.stream
        let body = try http.encode(native)
        if request.stream {
            let response = try await http.send(.POST, "/api/chat", body: body, logger: logger)
            return .stream(body: response.body, decoder: OllamaChat.StreamDecoder(identity: identity))
        }
        let answer = try http.decode(Ollama.ChatResponse.self, from: try await http.sendCollecting(.POST, "/api/chat", body: body, logger: logger), logger: logger)
        return .answer(OllamaChat.canonicalAnswer(answer, identity: identity))
    }
}

extension OpenAIUpstream: GenerationUpstream {
    /// OpenAI `/v1/chat/completions`, SSE with a usage chunk when streaming.
    public func generate(_ request: Generation.Request, identity: ResponseIdentity, logger: Logger) async throws -> GenerationReply {
        var chat = try OpenAIChat.chatRequest(request)
        chat.model = endpoint.upstreamName(for: chat.model)
        chat.stream = request.stream
        if request.stream { chat.streamOptions = StreamOptions(includeUsage: true) }
        let body = try http.encode(chat)
        if request.stream {
            let response = try await http.send(.POST, "/v1/chat/completions", body: body, logger: logger)
            return .stream(body: response.body, decoder: OpenAIChat.StreamDecoder())
        }
        let answer = try http.decode(ChatCompletionResponse.self, from: try await http.sendCollecting(.POST, "/v1/chat/completions", body: body, logger: logger), logger: logger)
        return .answer(OpenAIChat.canonicalAnswer(answer))
    }
}

/// Reads a canonical stream decoder's output into any client dialect's encoder, as the relay's `StreamTranslator`.
///
/// Both sides arrive as existentials (chosen by upstream kind and by route); opening them here gives the generic
/// translator concrete types, so its per-chunk work is not dispatched through existentials.
public func canonicalTranslator(
    decoder: any GenerationStreamDecoder, encoder: any GenerationStreamEncoder, collectsAnswer: Bool = false
) -> any StreamTranslator {
    func withDecoder<D: GenerationStreamDecoder>(_ decoder: D) -> any StreamTranslator {
        func withEncoder<E: GenerationStreamEncoder>(_ encoder: E) -> any StreamTranslator {
            CanonicalStreamTranslator(decoder: decoder, encoder: encoder, collectsAnswer: collectsAnswer)
        }
        return withEncoder(encoder)
    }
    return withDecoder(decoder)
}
