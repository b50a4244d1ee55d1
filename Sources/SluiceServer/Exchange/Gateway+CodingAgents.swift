import Foundation
import Hummingbird
import NIOFoundationCompat
import HTTPTypes
import NIOCore
import SluiceCore
import SluiceUpstream

/// The coding-agent surfaces: Anthropic Messages (Claude Code) and OpenAI Responses (Codex CLI), served over every
/// upstream kind through the canonical conversation model, and passed through where the upstream speaks the
/// client's dialect.
extension Gateway {
    /// The client dialects answered from canonical answers and deltas.
    enum GenerationSurface {
        case anthropicMessages
        case openAIResponses

        /// Id prefix of the answers this surface gives (`msg_…`, `resp_…`).
        var idPrefix: String {
            switch self {
            case .anthropicMessages: "msg_"
            case .openAIResponses: "resp_"
            }
        }
    }

    /// `POST /v1/messages` (Anthropic Messages API).
    func messages(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/messages" }
        var body = try await collectBody(request)
        let scheduled = try schedule(&body, shape: .anthropicMessages, context: context)
        var generation = try anthropicPassThroughProbe(body, context: context)?.generationRequest ?? AnthropicMessages.decodeRequest(body)
        generation.ollama = scheduled.ollama
        let requested = scheduled.requested ?? generation.model
        try applyAlias(to: &generation.model, body: &body)
        let call = Call(
            route: "/v1/messages", cacheFamily: "messages", format: nil, body: body, model: generation.model,
            streaming: generation.stream, includeUsage: true, cacheable: cacheable(generation), idPrefix: "msg",
            surface: .anthropicMessages)
        let headers = Self.anthropicHeaders(request.headers)
        let collects = cache != nil && call.cacheable
        let unserved = AnthropicMessages.unservedFields(generation)
        var response = try await serve(call, requestedModel: requested, request: request, context: context) { [generation, body] upstream, _ in
            if let anthropic = upstream as? AnthropicUpstream {
                return try await anthropic.messages(
                    rawBody: body, streams: generation.stream, headers: headers, collectsAnswer: collects, logger: context.logger)
            }
            if let refusal = unserved.refusal(model: generation.model) { throw refusal }
            let identity = surfaceIdentity(.anthropicMessages)
            let reply = try await upstream.generation(generation, identity: identity, logger: context.logger)
            return encode(reply, for: .anthropicMessages, model: generation.model, identity: identity, collectsAnswer: collects)
        }
        nameIgnored(unserved, in: &response, passesThrough: { $0.kind == .anthropic }, context: context)
        return response
    }

    /// Names advisory fields an upstream that translates left out in `X-Sluice-Ignored`, so leaving them out is
    /// never silent. The upstream that answered says whether it translated; a cache hit's answer was translated
    /// unless some upstream of the model takes the client's API itself.
    func nameIgnored(
        _ unserved: UnservedFields, in response: inout Response, passesThrough: (UpstreamEndpoint) -> Bool, context: SluiceRequestContext
    ) {
        guard let header = unserved.ignoredHeader else { return }
        let translated: Bool
        if let name = context.trace.snapshot.upstream, let upstream = upstreams.first(where: { $0.endpoint.name == name }) {
            translated = !passesThrough(upstream.endpoint)
        } else {
            let servers = context.trace.decisions.withLock { $0.route?.servers } ?? []
            translated = !servers.contains { passesThrough(upstreams[$0].endpoint) }
        }
        if translated { response.headers[.xSluiceIgnored] = header }
    }

    /// `POST /v1/messages/count_tokens`: the upstream's count where it is Anthropic, else an estimate of four bytes
    /// of text per token (Ollama and OpenAI-compatible servers have no counting endpoint).
    func countTokens(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/messages/count_tokens" }
        var body = try await collectBody(request)
        var generation = try anthropicPassThroughProbe(body, context: context)?.generationRequest ?? AnthropicMessages.decodeCountTokensRequest(body)
        let requested = generation.model
        try applyAlias(to: &generation.model, body: &body)
        let servers = try self.servers(for: generation.model, requested: requested, context: context, stream: false)
        if let index = servers.first(where: { upstreams[$0] is AnthropicUpstream }), let anthropic = upstreams[index] as? AnthropicUpstream {
            context.trace.update { $0.upstream = anthropic.endpoint.name }
            let answer = try await measured(anthropic) { _ in
                try await anthropic.countTokens(rawBody: body, headers: Self.anthropicHeaders(request.headers), logger: context.logger)
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: answer))
        }
        let tokens = Self.estimatedTokens(generation)
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"input_tokens":\#(tokens)}"#)))
    }

    /// `POST /v1/responses` (OpenAI Responses API).
    func responses(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/responses" }
        var body = try await collectBody(request)
        var generation = try OpenAIResponses.decodeRequest(body)
        // The whole conversation's input items, kept with the answer for a later previous_response_id.
        var input: [JSONValue]?
        if let previous = generation.previousResponseID {
            // Every conversation this gateway answered is in its store, pass-through ones included, so an id it
            // does not hold for this key is 404: asking an upstream with the gateway's own credential would hand
            // one key's conversation to another.
            let continued = try await continuing(body, previous: previous, context: context)
            body = continued.body
            input = continued.input
            generation = try OpenAIResponses.decodeRequest(body)
        }
        let stores = responseStore != nil && generation.store != false
        if stores, input == nil {
            input = Self.inputItems((try? JSONDecoder().decode(JSONValue.self, from: body))?["input"])
        }
        let scheduled = try schedule(&body, shape: .openAIResponses, context: context)
        if scheduled.requested != nil || !scheduled.ollama.isEmpty {
            generation = try OpenAIResponses.decodeRequest(body)
            generation.ollama = scheduled.ollama
        }
        let requested = scheduled.requested ?? generation.model
        try applyAlias(to: &generation.model, body: &body)
        let identity = surfaceIdentity(.openAIResponses)
        var call = Call(
            route: "/v1/responses", cacheFamily: "responses", format: nil, body: body, model: generation.model,
            streaming: generation.stream, includeUsage: true,
            // A stored answer must be the one its id names: stored requests are answered afresh.
            cacheable: !stores && cacheable(generation), idPrefix: "resp", surface: .openAIResponses)
        if stores, let input {
            call.keepAnswer = { [self, generation] answer in
                var answer = answer
                answer.id = identity.id
                answer.model = generation.model
                await keep(OpenAIResponses.encodeAnswer(answer, createdAt: identity.created), input: input, model: generation.model, context: context)
            }
            call.keepResponse = { [self, generation] response in
                await keep(response, input: input, model: generation.model, context: context)
            }
        }
        let collects = (cache != nil && call.cacheable) || call.keepAnswer != nil
        let unserved = OpenAIResponses.unservedFields(generation)
        var response = try await serve(call, requestedModel: requested, request: request, context: context) {
            [generation, body, call] upstream, _ in
            if let openAI = upstream as? OpenAIUpstream, openAI.endpoint.servesResponses {
                // The gateway expands a stored conversation itself, so the upstream is asked not to keep its own copy.
                let reply = try await openAI.responses(rawBody: Self.withoutUpstreamStore(body), streams: generation.stream, logger: context.logger)
                if case .complete(let answer, _) = reply, let keep = call.keepResponse { await keep(answer) }
                return reply
            }
            // Translated, a field the canonical model does not carry would be dropped: one that changes the answer
            // is refused by name instead.
            if let refusal = unserved.refusal(model: generation.model) { throw refusal }
            let reply = try await upstream.generation(generation, identity: identity, logger: context.logger)
            let encoded = encode(reply, for: .openAIResponses, model: generation.model, identity: identity, collectsAnswer: collects)
            // Kept before the client can see the id, so its next request can already continue from it.
            if case .generated(_, let answer) = encoded, let keep = call.keepAnswer { await keep(answer) }
            return encoded
        }
        nameIgnored(unserved, in: &response, passesThrough: { $0.servesResponses }, context: context)
        return response
    }

    /// A Responses body with `store: false`, for an upstream whose stored copy nobody will ask for: the gateway keeps
    /// conversations in its own store, per key. Unchanged when it cannot be read (the upstream will say why).
    static func withoutUpstreamStore(_ body: ByteBuffer) -> ByteBuffer {
        guard case .object(var members)? = try? JSONDecoder().decode(JSONValue.self, from: body) else { return body }
        members["store"] = false
        return (try? WireJSON.encoder().encodeAsByteBuffer(JSONValue.object(members), allocator: ByteBufferAllocator())) ?? body
    }

    /// A canonical reply in the surface's wire format; the gateway's id and the client's model name win over the
    /// upstream's, so a client sees the same shape whichever upstream answered.
    func encode(
        _ reply: GenerationReply, for surface: GenerationSurface, model: String, identity: ResponseIdentity, collectsAnswer: Bool
    ) -> UpstreamReply {
        switch reply {
        case .answer(var answer):
            answer.id = identity.id
            answer.model = model
            return .generated(body: encodeAnswer(answer, for: surface, identity: identity), answer: answer)
        case .stream(let body, let decoder):
            let encoder = streamEncoder(for: surface, model: model, identity: identity)
            return .stream(
                UpstreamStream(body: body, translator: canonicalTranslator(decoder: decoder, encoder: encoder, collectsAnswer: collectsAnswer)))
        }
    }

    func encodeAnswer(_ answer: Generation.Answer, for surface: GenerationSurface, identity: ResponseIdentity) -> ByteBuffer {
        switch surface {
        case .anthropicMessages: AnthropicMessages.encodeAnswer(answer)
        case .openAIResponses: OpenAIResponses.encodeAnswer(answer, createdAt: identity.created)
        }
    }

    func streamEncoder(for surface: GenerationSurface, model: String, identity: ResponseIdentity) -> any GenerationStreamEncoder {
        switch surface {
        case .anthropicMessages: AnthropicMessages.StreamEncoder(id: identity.id, model: model)
        case .openAIResponses: OpenAIResponses.StreamEncoder(id: identity.id, model: model, createdAt: identity.created)
        }
    }

    /// A cached canonical answer, with a fresh id, as the call's surface writes it: whole, or as a stream of its
    /// events, whichever way the answer was first delivered.
    func replay(_ cached: Generation.Answer, call: Call, context: SluiceRequestContext) -> Response {
        guard let surface = call.surface else {
            return Response(status: .internalServerError)
        }
        let identity = surfaceIdentity(surface)
        var answer = cached
        answer.id = identity.id
        answer.model = call.model
        guard call.streaming else {
            return Response(
                status: .ok, headers: [.contentType: "application/json", .xCache: "HIT"],
                body: .init(byteBuffer: encodeAnswer(answer, for: surface, identity: identity)))
        }
        var encoder = streamEncoder(for: surface, model: call.model, identity: identity)
        var out = ByteBuffer()
        for delta in answer.deltas { encoder.write(delta, into: &out) }
        return Response(
            status: .ok, headers: [.contentType: encoder.contentType, .cacheControl: "no-cache", .xCache: "HIT"],
            body: .init(byteBuffer: out))
    }

    /// Whether an answer to this request may be shared: one answer, and deterministic enough for the cache policy.
    /// A Responses request that continues or stores a conversation is tied to its key's history, so it is not shared.
    func cacheable(_ request: Generation.Request) -> Bool {
        request.previousResponseID == nil && deterministicEnough(temperature: request.sampling.temperature, seed: request.sampling.seed)
    }

    /// `msg_…` or `resp_…` and 24 random letters and digits.
    func surfaceIdentity(_ surface: GenerationSurface) -> ResponseIdentity {
        let random = ResponseIdentity.randomID(prefix: "x").dropFirst(2)
        return ResponseIdentity(id: surface.idPrefix + random, created: Int(now()))
    }

    /// The Anthropic headers a client's request carries on to an Anthropic upstream.
    static func anthropicHeaders(_ headers: HTTPFields) -> [(String, String)] {
        var out: [(String, String)] = []
        if let version = headers[.anthropicVersion] { out.append(("anthropic-version", version)) }
        if let beta = headers[.anthropicBeta] { out.append(("anthropic-beta", beta)) }
        return out
    }

    /// About four bytes of text per token, at least one: system, messages, tool definitions.
    static func estimatedTokens(_ request: Generation.Request) -> Int {
        var bytes = request.system.reduce(0) { $0 + ($1.text?.utf8.count ?? 0) }
        for message in request.messages {
            for part in message.content {
                switch part {
                case .text(let text): bytes += text.text.utf8.count
                case .toolCall(let call): bytes += call.name.utf8.count + call.arguments.utf8.count
                case .toolResult(let result): bytes += result.content.reduce(0) { $0 + ($1.text?.utf8.count ?? 0) }
                case .reasoning(let reasoning): bytes += reasoning.text.utf8.count
                case .image: bytes += 1_000
                }
            }
        }
        for tool in request.tools {
            bytes += tool.name.utf8.count + (tool.description?.utf8.count ?? 0) + (tool.parameters.map { "\($0)".utf8.count } ?? 0)
        }
        return max(1, bytes / 4)
    }
}

extension HTTPField.Name {
    static let anthropicVersion = Self("anthropic-version")!
    static let anthropicBeta = Self("anthropic-beta")!
}
