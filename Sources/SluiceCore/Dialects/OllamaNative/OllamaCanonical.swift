import NIOCore

/// Ollama's native `/api/chat` to and from the canonical model, on the existing `Ollama` wire types.
public enum OllamaChat {}

extension OllamaChat {
    /// An `/api/chat` request as a canonical one.
    ///
    /// Ollama tool calls have no ids, so calls get `call_<n>` in conversation order and each tool message answers
    /// the oldest unanswered call (of its `tool_name`, when given). Base64 `images` become image parts, their media
    /// type read from the data's first bytes. `keep_alive` rides in `extensions`.
    public static func canonicalRequest(_ request: Ollama.ChatRequest) throws(APIError) -> Generation.Request {
        var system: [Generation.ContentPart] = []
        var messages: [Generation.Message] = []
        var pending: [(id: String, name: String)] = []
        var callCount = 0
        for (i, message) in request.messages.enumerated() {
            var parts: [Generation.ContentPart] = []
            if let thinking = message.thinking, !thinking.isEmpty { parts.append(.reasoning(.init(text: thinking))) }
            if !message.content.isEmpty { parts.append(.text(message.content)) }
            for image in message.images ?? [] {
                parts.append(.image(.init(source: .base64(mediaType: mediaType(ofBase64: image), data: image))))
            }
            switch message.role {
            case "system":
                if messages.isEmpty { system += parts } else { messages.append(.init(role: .system, content: parts)) }
            case "user":
                messages.append(.init(role: .user, content: parts))
            case "assistant":
                for call in message.toolCalls ?? [] {
                    let id = "call_\(callCount)"
                    callCount += 1
                    pending.append((id, call.function.name))
                    parts.append(.toolCall(.init(id: id, name: call.function.name, arguments: encodeArguments(call.function.arguments))))
                }
                messages.append(.init(role: .assistant, content: parts))
            case "tool":
                let match = pending.firstIndex { message.toolName == nil || $0.name == message.toolName } ?? (pending.isEmpty ? nil : 0)
                guard let match else {
                    throw .invalidValue("messages[\(i)]", "a tool message must follow an assistant message with tool_calls.")
                }
                let call = pending.remove(at: match)
                let result = Generation.ToolResult(callID: call.id, name: message.toolName ?? call.name, content: parts.filter { $0.text != nil })
                if let last = messages.last, last.role == .tool {
                    messages[messages.count - 1].content.append(.toolResult(result))
                } else {
                    messages.append(.init(role: .tool, content: [.toolResult(result)]))
                }
            default:
                throw .invalidValue("messages[\(i)].role", "'\(message.role)' is not one of system, user, assistant, tool.")
            }
        }
        var out = Generation.Request(model: request.model, messages: messages, origin: .ollamaChat)
        out.system = system
        if let options = request.options {
            out.sampling.temperature = options.temperature
            out.sampling.topP = options.topP
            out.sampling.topK = options.topK
            out.sampling.maxTokens = options.numPredict.flatMap { $0 > 0 ? $0 : nil }
            out.sampling.stopSequences = options.stop ?? []
            out.sampling.seed = options.seed
            out.sampling.presencePenalty = options.presencePenalty
            out.sampling.frequencyPenalty = options.frequencyPenalty
        }
        out.tools = (request.tools ?? []).map {
            Generation.Tool(name: $0.function.name, description: $0.function.description, parameters: $0.function.parameters)
        }
        switch request.format {
        case nil, .null?: break
        case .string("json")?: out.responseFormat = .jsonObject
        case .object(let schema)?: out.responseFormat = .jsonSchema(name: "response", schema: .object(schema), strict: nil, description: nil)
        default: throw .invalidValue("format", "must be \"json\" or a JSON schema object.")
        }
        switch request.think {
        case nil, .null?: break
        case .bool(false)?: out.reasoning = .off
        case .bool(true)?: out.reasoning = .effort(.medium)
        case .string(let level)?:
            guard let effort = Generation.ReasoningRequest.Effort(rawValue: level) else {
                throw .invalidValue("think", "must be true, false, \"low\", \"medium\" or \"high\".")
            }
            out.reasoning = .effort(effort)
        default: throw .invalidType("think", expected: "boolean or string")
        }
        out.stream = request.isStreaming
        if let keepAlive = request.keepAlive { out.extensions["keep_alive"] = keepAlive }
        return out
    }

    /// A canonical request as an `/api/chat` request for an Ollama upstream.
    ///
    /// Reasoning requests become `think`: `false`; an OpenAI effort as its level (`low`, `medium`, `high`); `true`
    /// for Anthropic budgets and Ollama's own `think: true`. Images must be base64: Ollama does not fetch URLs, so a URL image is a 400 naming it.
    public static func ollamaRequest(_ request: Generation.Request, model: String? = nil) throws(APIError) -> Ollama.ChatRequest {
        var messages: [Ollama.Message] = []
        if let system = request.systemText { messages.append(Ollama.Message(role: "system", content: system)) }
        var callNames: [String: String] = [:]
        for (i, message) in request.messages.enumerated() {
            switch message.role {
            case .system, .user, .assistant:
                var images: [String] = []
                var calls: [Ollama.ToolCall] = []
                var thinking = ""
                for (j, part) in message.content.enumerated() {
                    switch part {
                    case .image(let image):
                        guard case .base64(_, let data) = image.source else {
                            throw .invalidValue("messages[\(i)].content[\(j)]", "Ollama upstreams take images as base64 data only.")
                        }
                        images.append(data)
                    case .toolCall(let call):
                        callNames[call.id] = call.name
                        // Ollama takes arguments as an object: text that is not one cannot be sent as the model wrote it.
                        guard let arguments = call.arguments.isEmpty ? [:] : JSONValue(jsonText: call.arguments), arguments.objectValue != nil else {
                            throw .invalidValue("messages[\(i)].content[\(j)].arguments", "must be a JSON object for an Ollama upstream.")
                        }
                        calls.append(.init(function: .init(name: call.name, arguments: arguments)))
                    case .reasoning(let reasoning):
                        thinking += reasoning.text
                    default:
                        continue
                    }
                }
                messages.append(
                    Ollama.Message(
                        role: message.role.rawValue, content: message.text, images: images.isEmpty ? nil : images,
                        toolCalls: calls.isEmpty ? nil : calls, thinking: thinking.isEmpty ? nil : thinking))
            case .tool:
                for part in message.content {
                    guard case .toolResult(let result) = part else { continue }
                    messages.append(Ollama.Message(role: "tool", content: result.text, toolName: result.name ?? callNames[result.callID]))
                }
            }
        }
        try refuseUnservable(request.extensions)
        var out = Ollama.ChatRequest(model: model ?? request.model, messages: messages, stream: request.stream)
        if !request.tools.isEmpty {
            out.tools = try offeredTools(request.tools, choice: request.toolChoice).map { i, tool throws(APIError) in
                guard tool.kind == nil else {
                    throw .invalidValue("tools[\(i)].type", "the tool '\(tool.name)' cannot be served by an Ollama upstream.")
                }
                return Tool(function: FunctionDefinition(name: tool.name, description: tool.description, parameters: tool.parameters))
            }
            if out.tools?.isEmpty == true { out.tools = nil }
        }
        switch request.responseFormat {
        case .text: break
        case .jsonObject: out.format = "json"
        case .jsonSchema(_, let schema, _, _): out.format = schema
        }
        var options = Ollama.Options()
        options.temperature = request.sampling.temperature
        options.topP = request.sampling.topP
        options.topK = request.sampling.topK
        options.numPredict = request.sampling.maxTokens
        options.stop = request.sampling.stopSequences.isEmpty ? nil : request.sampling.stopSequences
        options.seed = request.sampling.seed
        options.presencePenalty = request.sampling.presencePenalty
        options.frequencyPenalty = request.sampling.frequencyPenalty
        // Chat's `extra_body` options (num_ctx, …) reach Ollama as they came.
        if request.origin == .openAIChat, case .object(let extra)? = request.extensions["options"] { options.extra = extra }
        out.options = options.isEmpty ? nil : options
        switch request.reasoning {
        case nil: break
        case .off?: out.think = false
        // An effort keeps its level (gpt-oss reads it), from chat's `reasoning_effort` and Responses'
        // `reasoning.effort` alike; Anthropic's budgets and adaptive thinking only switch thinking on.
        case .effort(let effort)? where request.origin == .openAIChat || request.origin == .openAIResponses:
            out.think = .string(effort == .minimal ? "low" : effort.rawValue)
        case .effort?, .budget?: out.think = true
        }
        if request.origin == .ollamaChat || request.origin == .openAIChat { out.keepAlive = request.extensions["keep_alive"] }
        // What the gateway itself sets for Ollama (a virtual model's defaults, the context guard's num_ctx).
        if let extra = request.ollama["options"]?.objectValue {
            var options = out.options ?? Ollama.Options()
            options.extra.merge(extra) { _, set in set }
            out.options = options
        }
        if let keepAlive = request.ollama["keep_alive"] { out.keepAlive = keepAlive }
        if let think = request.ollama["think"] { out.think = think }
        return out
    }

    /// The tools Ollama is offered, with their indices in the request: none for a `none` choice (Ollama would still
    /// call one), only the named one for a named choice (the closest Ollama comes to forcing it), else all.
    static func offeredTools(_ tools: [Generation.Tool], choice: Generation.ToolChoice?) throws(APIError) -> [(Int, Generation.Tool)] {
        let indexed = Array(tools.enumerated())
        switch choice {
        case .none?: return []
        case .tool(let name)?:
            let named = indexed.filter { $0.element.name == name }
            guard !named.isEmpty else { throw .invalidValue("tool_choice", "names '\(name)', which is not in tools.") }
            return named.map { ($0.offset, $0.element) }
        default: return indexed.map { ($0.offset, $0.element) }
        }
    }

    /// What a client asked for that Ollama cannot give: refused by name rather than answered without.
    static func refuseUnservable(_ extensions: Generation.Extensions) throws(APIError) {
        // One upstream call answers one choice: more would be n calls for one request, which a client can make itself.
        if case .int(let n)? = extensions["n"], n > 1 {
            throw .invalidValue("n", "Ollama upstreams answer one choice per request; send n separate requests.")
        }
        if extensions["logprobs"] != nil || extensions["top_logprobs"] != nil {
            throw .invalidValue(
                extensions["logprobs"] != nil ? "logprobs" : "top_logprobs", "token log probabilities are not available on Ollama upstreams.")
        }
        if extensions["logit_bias"] != nil { throw .invalidValue("logit_bias", "is not available on Ollama upstreams.") }
    }

    /// A complete `/api/chat` answer as a canonical one; `identity` names it and its tool calls.
    public static func canonicalAnswer(_ response: Ollama.ChatResponse, identity: ResponseIdentity) -> Generation.Answer {
        var content: [Generation.ContentPart] = []
        if let thinking = response.message?.thinking, !thinking.isEmpty { content.append(.reasoning(.init(text: thinking))) }
        if let text = response.message?.content, !text.isEmpty { content.append(.text(text)) }
        let calls = response.message?.toolCalls ?? []
        for (i, call) in calls.enumerated() {
            content.append(
                .toolCall(.init(id: OllamaResponseTranslation.toolCallID(identity, i), name: call.function.name, arguments: encodeArguments(call.function.arguments))))
        }
        return Generation.Answer(
            id: identity.id, model: response.model, content: content, stopReason: stopReason(response.doneReason, hasToolCalls: !calls.isEmpty),
            usage: Generation.Usage(promptTokens: response.promptEvalCount ?? 0, completionTokens: response.evalCount ?? 0))
    }

    /// A canonical answer as a complete `/api/chat` answer.
    public static func ollamaResponse(_ answer: Generation.Answer, createdAt: String?) -> Ollama.ChatResponse {
        let reasoning = answer.content.compactMap { if case .reasoning(let r) = $0 { r.text } else { nil } }.joined()
        let calls = answer.toolCalls.map {
            Ollama.ToolCall(function: .init(name: $0.name, arguments: JSONValue(jsonText: $0.arguments) ?? [:]))
        }
        var response = Ollama.ChatResponse(
            model: answer.model, createdAt: createdAt,
            message: Ollama.Message(
                role: "assistant", content: answer.text, toolCalls: calls.isEmpty ? nil : calls, thinking: reasoning.isEmpty ? nil : reasoning),
            done: true)
        response.doneReason = answer.stopReason == .maxTokens ? "length" : "stop"
        response.promptEvalCount = answer.usage.promptTokens
        response.evalCount = answer.usage.completionTokens
        return response
    }

    /// Ollama reports `stop` for a finished turn whether or not it called tools.
    static func stopReason(_ doneReason: String?, hasToolCalls: Bool) -> Generation.StopReason {
        if hasToolCalls { return .toolUse }
        switch doneReason {
        case "length": return .maxTokens
        case nil, "stop", "load", "unload": return .endTurn
        case let other?: return .other(other)
        }
    }

    static func encodeArguments(_ arguments: JSONValue) -> String {
        if case .string(let s) = arguments { return s }
        return arguments.jsonText
    }

    /// The image type a base64 payload's first bytes announce (PNG, JPEG, GIF, WebP); PNG when unknown.
    static func mediaType(ofBase64 data: String) -> String {
        if data.hasPrefix("/9j/") { return "image/jpeg" }
        if data.hasPrefix("R0lGOD") { return "image/gif" }
        if data.hasPrefix("UklGR") { return "image/webp" }
        return "image/png"
    }
}
