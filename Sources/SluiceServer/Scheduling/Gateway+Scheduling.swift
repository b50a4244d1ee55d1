import Foundation
import HTTPTypes
import NIOCore
import NIOFoundationCompat
import SluiceCore

/// What ``Gateway/schedule(_:shape:context:)`` did to a request.
struct ScheduledRequest {
    /// The name the client sent, when it named a virtual model (the key check and errors use it).
    var requested: String?
    /// Ollama settings the body's dialect cannot carry (Anthropic Messages, Responses), for ``Generation/Request/ollama``.
    var ollama: [String: JSONValue] = [:]

    static let unchanged = ScheduledRequest()
}

extension Gateway {
    /// Applies a virtual model and the context guard to a request body before it is decoded.
    ///
    /// A virtual model's name becomes its upstream model's, and its defaults are written into the body (so every
    /// lane, pass-through or translated, sends them). The prompt is then checked against the model's context
    /// window: the request's own `num_ctx`, else the virtual model's, else what `/api/ps` reported; `warn` marks the
    /// answer with `x-sluice-warning`, `reject` throws 400 `context_length_exceeded`, `raise` sets `num_ctx`.
    ///
    /// A dialect that cannot carry Ollama's fields (Anthropic Messages, Responses) gets them back in ``ScheduledRequest/ollama``,
    /// for the canonical request sent to an Ollama upstream.
    func schedule(_ body: inout ByteBuffer, shape: RequestShape, context: SluiceRequestContext) throws -> ScheduledRequest {
        guard scheduler.inspectsBodies, case .object(var members)? = try? JSONDecoder().decode(JSONValue.self, from: body),
            let requested = members["model"]?.stringValue
        else { return .unchanged }
        let virtual = scheduler.virtualModel(named: requested)
        let target = virtual?.model ?? aliasTarget(requested) ?? requested
        let servers = pool.servers(of: target)
        let ollama = !servers.isEmpty && servers.allSatisfy { upstreams[$0].endpoint.kind == .ollama }
        let someOllama = servers.contains { upstreams[$0].endpoint.kind == .ollama }
        var changed = false
        // Ollama fields the body does not take to the Ollama upstream: a dialect that cannot carry them, or a chat
        // body that a hosted upstream of the same model (an overflow) would get as sent and refuse with them.
        let aside = someOllama && (shape == .anthropicMessages || shape == .openAIResponses || (shape == .openAIChat && !ollama))
        var scheduled = ScheduledRequest()
        if let virtual {
            if aside { scheduled.ollama = virtual.ollamaSettings(for: members, shape: shape) }
            virtual.apply(to: &members, shape: shape, ollama: ollama)
            changed = true
        }
        let limit = members["options"]?["num_ctx"]?.intValue ?? virtual?.numCtx ?? pool.contextLength(of: target, on: servers)
        if let limit, limit > 0 {
            let estimate = ContextGuard.estimatedTokens(members)
            let verdict = ContextGuard.decide(
                estimate: estimate, limit: limit, model: virtual?.name ?? requested, policy: scheduler.settings.contextPolicy,
                answerReserve: ContextGuard.answerLimit(members) ?? ContextGuard.defaultAnswerReserve,
                canRaise: (ollama && shape.carriesOllamaFields) || aside, maximum: scheduler.settings.contextMax)
            switch verdict {
            case .fits:
                break
            case .warn(let message):
                context.trace.update { $0.warning = message }
                context.logger.warning("prompt longer than the model's context", metadata: ["estimate": "\(estimate)", "limit": "\(limit)"])
            case .reject(let message):
                throw ContextGuard.error(message, shape: shape)
            case .raise(let numCtx):
                if aside {
                    var options = scheduled.ollama["options"]?.objectValue ?? [:]
                    options["num_ctx"] = .int(numCtx)
                    scheduled.ollama["options"] = .object(options)
                } else {
                    var options = members["options"]?.objectValue ?? [:]
                    options["num_ctx"] = .int(numCtx)
                    members["options"] = .object(options)
                    changed = true
                }
                context.logger.notice("num_ctx raised to fit the prompt", metadata: ["estimate": "\(estimate)", "num_ctx": "\(numCtx)"])
            }
        }
        if changed {
            body = try WireJSON.encoder().encodeAsByteBuffer(JSONValue.object(members), allocator: ByteBufferAllocator())
        }
        scheduled.requested = virtual == nil ? nil : requested
        return scheduled
    }

    /// The virtual models ahead of the upstreams' `models`, as `/v1/models` lists them; a key limited to some
    /// models sees only those.
    func virtualModelList(created: Int, context: SluiceRequestContext, before models: [Model]) -> [Model] {
        var names = scheduler.settings.virtualModels.keys.sorted()
        if case .key(let record) = context.identity, !record.allowedModels.isEmpty {
            names = names.filter { name in record.allowedModels.contains { Self.sameModel($0, name) } }
        }
        let virtual = names.map { Model(id: $0, created: created, ownedBy: "sluice") }
        return virtual + models.filter { model in !names.contains { Self.sameModel($0, model.id) } }
    }
}

extension HTTPField.Name {
    static let xSluiceWarning = Self("x-sluice-warning")!
}
