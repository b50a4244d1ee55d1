import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import ServiceLifecycle
import SluiceCore
import SluiceStore
import SluiceUpstream

/// The OpenAI API: chat completions, completions, embeddings and the model list.
extension Gateway {
    func chatCompletions(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/chat/completions" }
        var body = try await collectBody(request)
        if let hit = earlyCacheHit(body, route: "/v1/chat/completions", family: "chat", format: .openAIChat, idPrefix: "chatcmpl", request: request, context: context) {
            return hit
        }
        let scheduled = try schedule(&body, shape: .openAIChat, context: context)
        let probe = try passThroughProbe(body, context: context)
        var chat = try probe?.chatRequest ?? RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: body)
        chat.ollama = scheduled.ollama
        // Members the chat type does not decode reach an OpenAI upstream in the bytes; translated, they would be lost.
        let unserved = probe == nil ? ChatCompletionRequest.unservedFields(in: body) : UnservedFields([], advisory: [])
        let requested = scheduled.requested ?? chat.model
        try applyAlias(to: &chat.model, body: &body)
        let call = Call(
            route: "/v1/chat/completions", cacheFamily: "chat", format: .openAIChat, body: body, model: chat.model,
            streaming: chat.isStreaming, includeUsage: chat.includeUsage,
            cacheable: (chat.n ?? 1) == 1 && deterministicEnough(temperature: chat.temperature, seed: chat.seed), idPrefix: "chatcmpl")
        var response = try await serve(call, requestedModel: requested, request: request, context: context) { [chat, body] upstream, identity in
            if upstream.endpoint.kind != .openai, let refusal = unserved.refusal(model: chat.model) { throw refusal }
            return try await upstream.chatCompletions(chat, rawBody: body, identity: identity, logger: context.logger)
        }
        nameIgnored(unserved, in: &response, passesThrough: { $0.kind == .openai }, context: context)
        return response
    }

    func completions(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/completions" }
        var body = try await collectBody(request)
        if let hit = earlyCacheHit(body, route: "/v1/completions", family: "completion", format: .openAICompletion, idPrefix: "cmpl", request: request, context: context) {
            return hit
        }
        let scheduled = try schedule(&body, shape: .openAICompletion, context: context)
        var completion = try RequestDecoding.decodeValidated(CompletionRequest.self, from: body)
        let requested = scheduled.requested ?? completion.model
        try applyAlias(to: &completion.model, body: &body)
        let call = Call(
            route: "/v1/completions", cacheFamily: "completion", format: .openAICompletion, body: body, model: completion.model,
            streaming: completion.isStreaming, includeUsage: completion.includeUsage,
            cacheable: (completion.n ?? 1) == 1 && completion.prompt.values.count == 1
                && deterministicEnough(temperature: completion.temperature, seed: completion.seed),
            idPrefix: "cmpl", kinds: [.ollama, .openai])
        return try await serve(call, requestedModel: requested, request: request, context: context) { [completion, body] upstream, identity in
            try await upstream.completions(completion, rawBody: body, identity: identity, logger: context.logger)
        }
    }

    func embeddings(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/embeddings" }
        var body = try await collectBody(request)
        var embeddings: EmbeddingsRequest
        if let probe = try passThroughProbe(body, context: context) {
            embeddings = EmbeddingsRequest(model: probe.model, input: .many([]))
        } else {
            embeddings = try Self.decodeEmbeddings(body)
        }
        let requested = embeddings.model
        try applyAlias(to: &embeddings.model, body: &body)
        let call = Call(
            route: "/v1/embeddings", cacheFamily: "embeddings", format: nil, body: body, model: embeddings.model,
            streaming: false, includeUsage: false, cacheable: true, idPrefix: "embd", kinds: [.ollama, .openai])
        return try await serve(call, requestedModel: requested, request: request, context: context) { [embeddings, body] upstream, _ in
            try await upstream.embeddings(embeddings, rawBody: body, logger: context.logger)
        }
    }

    func listModels(context: SluiceRequestContext) async throws -> ModelList {
        let created = Int(now())
        let models = try await mergedModels(from: upstreams, context: context, name: \.id) { upstream in
            try await upstream.models(created: created, logger: context.logger).data
        }
        return ModelList(data: virtualModelList(created: created, context: context, before: models))
    }

    /// `GET /api/tags` and `/api/ps` over every Ollama upstream, as `/v1/models` does over all upstreams: one list,
    /// each model once, limited to the models the key may use. Entries pass through as the upstreams wrote them.
    func nativeModelList(path: String, context: SluiceRequestContext) async throws -> Response {
        let ollamas = upstreams.filter { $0.endpoint.kind == .ollama }
        let models = try await mergedModels(from: ollamas, context: context, name: { $0["name"]?.stringValue ?? $0["model"]?.stringValue ?? "" }) {
            upstream in
            let reply = try await upstream.native(NativeRequest(method: .get, path: path, body: nil, streams: false), logger: context.logger)
            guard case .complete(let body, _) = reply, let list = try? JSONDecoder().decode(JSONValue.self, from: body)["models"]?.arrayValue
            else { throw APIError.upstreamFailed("The upstream sent a model list that could not be read.") }
            return list
        }
        return try JSONResponse(JSONValue.object(["models": .array(models)])).response(status: .ok)
    }

    /// Asks every upstream at once and merges the answers in upstream order, each model once; an upstream that fails
    /// is left out unless all fail. A key limited to some models sees only those.
    func mergedModels<Entry: Sendable>(
        from servers: [any UpstreamProvider], context: SluiceRequestContext, name: (Entry) -> String,
        _ fetch: @escaping @Sendable (any UpstreamProvider) async throws -> [Entry]
    ) async throws -> [Entry] {
        let answers = await withTaskGroup(of: (Int, Result<[Entry], any Error>).self) { group in
            for (index, upstream) in servers.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await measured(upstream, fetch)))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var answers = [Result<[Entry], any Error>?](repeating: nil, count: servers.count)
            for await (index, answer) in group { answers[index] = answer }
            return answers.compactMap { $0 }
        }
        var seen = Set<String>()
        var merged: [Entry] = []
        var lastError: (any Error)?
        for answer in answers {
            switch answer {
            case .success(let entries):
                merged += entries.filter { seen.insert(name($0)).inserted }
            case .failure(let error):
                lastError = error
            }
        }
        if let lastError, !answers.contains(where: { (try? $0.get()) != nil }) { throw lastError }
        if case .key(let record) = context.identity, !record.allowedModels.isEmpty {
            merged = merged.filter { entry in record.allowedModels.contains { Self.sameModel($0, name(entry)) } }
        }
        return merged
    }

    func model(id: String, context: SluiceRequestContext) async throws -> Model {
        let list = try await listModels(context: context)
        guard let model = list.data.first(where: { Self.sameModel($0.id, id) }) else { throw APIError.modelNotFound(id) }
        return model
    }

    /// `llama3.2` and `llama3.2:latest` name the same Ollama model.
    static func sameModel(_ a: String, _ b: String) -> Bool {
        UpstreamChooser.sameModel(a, b)
    }
}
