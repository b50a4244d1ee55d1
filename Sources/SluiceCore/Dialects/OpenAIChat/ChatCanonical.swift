import Foundation

/// OpenAI Chat Completions (`/v1/chat/completions`) to and from the canonical model, on the existing wire types
/// (`ChatCompletionRequest`, `ChatCompletionResponse`), so the chat surface can be served from any upstream and any
/// surface from an OpenAI upstream.
public enum OpenAIChat {}

extension OpenAIChat {
    /// A validated chat request as a canonical one. Leading `system`/`developer` messages become the system prompt;
    /// later ones stay `.system` turns. Consecutive `tool` messages become one `.tool` turn. `n` and
    /// `stream_options` ride in `extensions`. Throws a 400 naming a content part of an unsupported type.
    public static func canonicalRequest(_ request: ChatCompletionRequest) throws(APIError) -> Generation.Request {
        var system: [Generation.ContentPart] = []
        var messages: [Generation.Message] = []
        var callNames: [String: String] = [:]
        for (i, message) in request.messages.enumerated() {
            let parts = try contentParts(message.content, path: "messages[\(i)].content")
            var extensions: Generation.Extensions = [:]
            if let name = message.name { extensions["name"] = .string(name) }
            switch message.role {
            case "system", "developer":
                if messages.isEmpty {
                    system += parts
                } else {
                    messages.append(Generation.Message(role: .system, content: parts, extensions: extensions))
                }
            case "user":
                messages.append(Generation.Message(role: .user, content: parts, extensions: extensions))
            case "assistant":
                var content = parts.filter { $0.text?.isEmpty != true }
                for call in message.toolCalls ?? [] {
                    callNames[call.id] = call.function.name
                    content.append(.toolCall(.init(id: call.id, name: call.function.name, arguments: call.function.arguments)))
                }
                messages.append(Generation.Message(role: .assistant, content: content, extensions: extensions))
            default:  // "tool", "function"
                guard let callID = message.toolCallID ?? message.name else { throw .missingField("messages[\(i)].tool_call_id") }
                let result = Generation.ToolResult(callID: callID, name: callNames[callID] ?? message.name, content: parts)
                if let last = messages.last, last.role == .tool {
                    messages[messages.count - 1].content.append(.toolResult(result))
                } else {
                    messages.append(Generation.Message(role: .tool, content: [.toolResult(result)]))
                }
            }
        }
        var out = Generation.Request(model: request.model, messages: messages, origin: .openAIChat)
        out.system = system
        out.sampling.temperature = request.temperature
        out.sampling.topP = request.topP
        out.sampling.topK = request.topK
        out.sampling.maxTokens = request.tokenLimit
        out.sampling.stopSequences = request.stop?.values ?? []
        out.sampling.seed = request.seed
        out.sampling.presencePenalty = request.presencePenalty
        out.sampling.frequencyPenalty = request.frequencyPenalty
        out.tools = (request.tools ?? []).map { tool in
            Generation.Tool(name: tool.function.name, description: tool.function.description, parameters: tool.function.parameters, strict: tool.function.strict)
        }
        out.toolChoice = try toolChoice(request.toolChoice)
        try out.checkToolChoice(field: "tool_choice")
        switch request.responseFormat?.type {
        case "json_object": out.responseFormat = .jsonObject
        case "json_schema":
            let schema = request.responseFormat?.jsonSchema
            guard let body = schema?["schema"] else { throw .missingField("response_format.json_schema.schema") }
            var strict: Bool?
            if case .bool(let b)? = schema?["strict"] { strict = b }
            out.responseFormat = .jsonSchema(
                name: schema?["name"]?.stringValue ?? "response", schema: body, strict: strict, description: schema?["description"]?.stringValue)
        default: out.responseFormat = .text
        }
        out.user = request.user
        out.stream = request.isStreaming
        if let n = request.n { out.extensions["n"] = .int(n) }
        switch request.reasoningEffort {
        case "none"?: out.reasoning = .off
        case let effort?: out.reasoning = .effort(Generation.ReasoningRequest.Effort(rawValue: effort) ?? .medium)
        case nil: break
        }
        // Carried so that an upstream that cannot honour them refuses them by name rather than dropping them.
        if request.logprobs == true { out.extensions["logprobs"] = true }
        if let top = request.topLogprobs { out.extensions["top_logprobs"] = .int(top) }
        if let bias = request.logitBias, !bias.isEmpty { out.extensions["logit_bias"] = .object(bias.mapValues { .double($0) }) }
        if let keepAlive = request.keepAlive { out.extensions["keep_alive"] = keepAlive }
        // Ollama's own `think` (through `extra_body`, or a virtual model's default) wins over `reasoning_effort`.
        if let think = request.think { out.ollama["think"] = think }
        out.ollama.merge(request.ollama) { _, gateway in gateway }
        if let options = request.options, !options.isEmpty { out.extensions["options"] = .object(options) }
        if let include = request.streamOptions?.includeUsage { out.extensions["stream_options"] = ["include_usage": .bool(include)] }
        return out
    }

    static func contentParts(_ content: MessageContent?, path: String) throws(APIError) -> [Generation.ContentPart] {
        switch content {
        case nil: return []
        case .text(let s)?: return [.text(s)]
        case .parts(let parts)?:
            var out: [Generation.ContentPart] = []
            for (j, part) in parts.enumerated() {
                switch part.type {
                case "text": out.append(.text(part.text ?? ""))
                // An earlier refusal is what the assistant said: the next turn reads it as text.
                case "refusal": out.append(.text(part.refusal ?? part.text ?? ""))
                case "image_url":
                    guard let url = part.imageURL?.url else { throw .missingField("\(path)[\(j)].image_url.url") }
                    out.append(.image(Generation.Image(openAIURL: url, detail: part.imageURL?.detail)))
                default:
                    throw .invalidValue("\(path)[\(j)].type", "'\(part.type)' is not a supported content part type (text, image_url).")
                }
            }
            return out
        }
    }

    static func toolChoice(_ value: JSONValue?) throws(APIError) -> Generation.ToolChoice? {
        switch value {
        case nil, .null?: return nil
        case .string("auto")?: return .auto
        case .string("none")?: return Generation.ToolChoice.none
        case .string("required")?: return .any
        case .object?:
            guard let name = value?["function"]?["name"]?.stringValue else { throw .missingField("tool_choice.function.name") }
            return .tool(name: name)
        default:
            throw .invalidValue("tool_choice", "must be 'auto', 'none', 'required' or a named function.")
        }
    }

    /// A canonical request as a chat request for an OpenAI-compatible upstream.
    ///
    /// The reasoning request becomes `reasoning_effort` (a token budget the nearest effort); reasoning parts of
    /// earlier turns are dropped (chat has no standard field for them in the history), as is `topK`;
    /// streamed requests ask for usage. Throws a 400 for another dialect's server tool.
    public static func chatRequest(_ request: Generation.Request, model: String? = nil) throws(APIError) -> ChatCompletionRequest {
        var messages: [ChatMessage] = []
        if let system = request.systemText { messages.append(ChatMessage(role: "system", content: .text(system))) }
        for message in request.messages {
            switch message.role {
            case .system, .user:
                messages.append(ChatMessage(role: message.role.rawValue, content: chatContent(message.content)))
            case .assistant:
                let calls = message.content.compactMap { part -> ToolCall? in
                    guard case .toolCall(let call) = part else { return nil }
                    return ToolCall(id: call.id, name: call.name, arguments: call.arguments.isEmpty ? "{}" : call.arguments)
                }
                let text = message.text
                messages.append(
                    ChatMessage(role: "assistant", content: text.isEmpty && !calls.isEmpty ? nil : .text(text), toolCalls: calls.isEmpty ? nil : calls))
            case .tool:
                for part in message.content {
                    guard case .toolResult(let result) = part else { continue }
                    let text = result.isError && !result.text.hasPrefix("Error") ? "Error: " + result.text : result.text
                    messages.append(ChatMessage(role: "tool", content: .text(text), toolCallID: result.callID))
                }
            }
        }
        var out = ChatCompletionRequest(model: model ?? request.model, messages: messages, stream: request.stream ? true : nil)
        if request.stream { out.streamOptions = StreamOptions(includeUsage: true) }
        out.temperature = request.sampling.temperature
        out.topP = request.sampling.topP
        out.maxTokens = request.sampling.maxTokens
        if !request.sampling.stopSequences.isEmpty { out.stop = .many(request.sampling.stopSequences) }
        out.seed = request.sampling.seed
        out.presencePenalty = request.sampling.presencePenalty
        out.frequencyPenalty = request.sampling.frequencyPenalty
        if !request.tools.isEmpty {
            out.tools = try request.tools.enumerated().map { i, tool throws(APIError) in
                guard tool.kind == nil else {
                    throw .invalidValue("tools[\(i)].type", "the tool '\(tool.name)' cannot be served by a chat completions upstream.")
                }
                var definition = FunctionDefinition(name: tool.name, description: tool.description, parameters: tool.parameters)
                definition.strict = tool.strict
                return Tool(function: definition)
            }
        }
        switch request.toolChoice {
        case nil: break
        case .auto?: out.toolChoice = "auto"
        case .any?: out.toolChoice = "required"
        case .none?: out.toolChoice = "none"
        case .tool(let name)?: out.toolChoice = ["type": "function", "function": ["name": .string(name)]]
        }
        switch request.responseFormat {
        case .text: break
        case .jsonObject: out.responseFormat = ResponseFormat(type: "json_object")
        case .jsonSchema(let name, let schema, let strict, let description):
            var body: [String: JSONValue] = ["name": .string(name), "schema": schema]
            if let strict { body["strict"] = .bool(strict) }
            if let description { body["description"] = .string(description) }
            out.responseFormat = ResponseFormat(type: "json_schema", jsonSchema: .object(body))
        }
        out.user = request.user
        if request.origin == .openAIChat, case .int(let n)? = request.extensions["n"] { out.n = n }
        // Codex sends parallel_tool_calls: false, Claude Code disable_parallel_tool_use; only meaningful with tools.
        if let parallel = request.parallelToolCalls, !request.tools.isEmpty { out.parallelToolCalls = parallel }
        switch request.reasoning {
        case nil, .off?: break
        case .effort(let effort)?: out.reasoningEffort = effort.rawValue
        // Anthropic's budgets as the nearest effort: about what each effort spends on OpenAI's reasoning models.
        case .budget(let tokens)?: out.reasoningEffort = tokens <= 2_048 ? "low" : tokens <= 8_192 ? "medium" : "high"
        }
        return out
    }

    static func chatContent(_ parts: [Generation.ContentPart]) -> MessageContent {
        guard parts.contains(where: { if case .image = $0 { true } else { false } }) else {
            return .text(parts.compactMap(\.text).joined())
        }
        return .parts(
            parts.compactMap { part in
                switch part {
                case .text(let t): ContentPart(type: "text", text: t.text, imageURL: nil)
                case .image(let image): ContentPart(type: "image_url", text: nil, imageURL: .init(url: image.url, detail: image.detail))
                default: nil
                }
            })
    }

    /// An OpenAI chat answer as a canonical one (first choice).
    public static func canonicalAnswer(_ response: ChatCompletionResponse) -> Generation.Answer {
        let message = response.choices.first?.message
        var content: [Generation.ContentPart] = []
        if let reasoning = message?.reasoningContent, !reasoning.isEmpty { content.append(.reasoning(.init(text: reasoning))) }
        if let text = message?.content?.text, !text.isEmpty { content.append(.text(text)) }
        for call in message?.toolCalls ?? [] {
            content.append(.toolCall(.init(id: call.id, name: call.function.name, arguments: call.function.arguments)))
        }
        return Generation.Answer(
            id: response.id, model: response.model, content: content,
            stopReason: canonicalStopReason(response.choices.first?.finishReason),
            usage: Generation.Usage(
                promptTokens: response.usage?.promptTokens ?? 0, completionTokens: response.usage?.completionTokens ?? 0,
                cachedPromptTokens: response.usage?.cachedTokens ?? 0, reasoningTokens: response.usage?.reasoningTokens ?? 0))
    }

    /// A canonical answer as an OpenAI chat answer, stamped with `identity`.
    public static func chatResponse(_ answer: Generation.Answer, identity: ResponseIdentity) -> ChatCompletionResponse {
        let calls = answer.toolCalls.map { ToolCall(id: $0.id, name: $0.name, arguments: $0.arguments) }
        let text = answer.text
        let reasoning = answer.content.compactMap { if case .reasoning(let r) = $0 { r.text } else { nil } }.joined()
        let message = ChatMessage(
            role: "assistant", content: text.isEmpty && !calls.isEmpty ? nil : .text(text), toolCalls: calls.isEmpty ? nil : calls,
            reasoningContent: reasoning.isEmpty ? nil : reasoning)
        return ChatCompletionResponse(
            id: identity.id, created: identity.created, model: answer.model,
            choices: [.init(index: 0, message: message, finishReason: finishReason(answer.stopReason))],
            usage: answer.usage.openAI)
    }

    /// OpenAI's `finish_reason` for a canonical stop reason.
    public static func finishReason(_ reason: Generation.StopReason) -> String {
        switch reason {
        case .endTurn, .stopSequence, .error, .other: "stop"
        case .maxTokens: "length"
        case .toolUse: "tool_calls"
        case .contentFilter: "content_filter"
        }
    }

    /// The canonical stop reason for OpenAI's `finish_reason`.
    public static func canonicalStopReason(_ reason: String?) -> Generation.StopReason {
        switch reason {
        case nil, "stop": .endTurn
        case "length": .maxTokens
        case "tool_calls", "function_call": .toolUse
        case "content_filter": .contentFilter
        case let other?: .other(other)
        }
    }
}
