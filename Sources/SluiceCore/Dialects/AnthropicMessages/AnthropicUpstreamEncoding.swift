import NIOCore

extension AnthropicMessages {
    /// The `max_tokens` sent when the client gave no cap: Anthropic requires one, other dialects do not.
    public static let defaultMaxTokens = 8192

    /// Encodes a canonical request as a `/v1/messages` body for an Anthropic upstream.
    ///
    /// `.tool` turns become user turns of `tool_result` blocks, merged with an adjacent user turn (Anthropic wants
    /// roles to alternate); `.system` turns in the middle join the system prompt, where Anthropic takes
    /// instructions. Extensions are written only for requests that came in as Anthropic. A temperature above
    /// Anthropic's maximum of 1 (OpenAI allows 2) is capped at 1; an effort becomes a thinking budget
    /// (`ReasoningRequest.budgetTokens`). Throws a 400 for a server tool of another dialect, which an Anthropic
    /// upstream cannot run.
    public static func encodeRequest(_ request: Generation.Request, model: String? = nil) throws(APIError) -> ByteBuffer {
        let sameDialect = request.origin == .anthropicMessages
        // The Messages API has no response format: dropping it would hand back prose where JSON was asked for.
        if request.responseFormat != .text {
            throw .invalidValue(request.origin.responseFormatField, "structured output is not available on an Anthropic upstream.")
        }
        // Controls the Messages API lacks are refused by the name the client used, never dropped.
        for (field, given) in [
            ("seed", request.sampling.seed != nil), ("presence_penalty", request.sampling.presencePenalty != nil),
            ("frequency_penalty", request.sampling.frequencyPenalty != nil),
        ] where given {
            throw .invalidValue(field, "is not available on an Anthropic upstream.")
        }
        if case .int(let n)? = request.extensions["n"], n > 1 {
            throw .invalidValue("n", "an Anthropic upstream answers one choice per request.")
        }
        if !sameDialect {
            for field in ["logprobs", "top_logprobs", "logit_bias", "keep_alive", "options"] where request.extensions[field] != nil {
                throw .invalidValue(field, "is not available on an Anthropic upstream.")
            }
        }
        var body: [String: JSONValue] = [:]
        if sameDialect { for (key, value) in request.extensions where !key.contains(".") { body[key] = value } }
        body["model"] = .string(model ?? request.model)
        body["max_tokens"] = .int(request.sampling.maxTokens ?? defaultMaxTokens)

        var systemParts = request.system
        var messages: [JSONValue] = []
        var pending: (role: String, blocks: [JSONValue])?
        func flush() {
            if let p = pending { messages.append(["role": .string(p.role), "content": .array(p.blocks)]) }
            pending = nil
        }
        for message in request.messages {
            let role: String
            switch message.role {
            case .system:
                systemParts += message.content.filter { $0.text != nil }
                continue
            case .user, .tool: role = "user"
            case .assistant: role = "assistant"
            }
            let blocks = message.content.compactMap { blockValue($0, sameDialect: sameDialect) }
            guard !blocks.isEmpty else { continue }
            if pending?.role == role {
                pending?.blocks += blocks
            } else {
                flush()
                pending = (role, blocks)
            }
        }
        flush()
        body["messages"] = .array(messages)
        if !systemParts.isEmpty {
            body["system"] = .array(systemParts.compactMap { blockValue($0, sameDialect: sameDialect) })
        }
        let sampling = request.sampling
        if let t = sampling.temperature { body["temperature"] = .double(min(1, t)) }
        if let p = sampling.topP { body["top_p"] = .double(p) }
        if let k = sampling.topK { body["top_k"] = .int(k) }
        if !sampling.stopSequences.isEmpty { body["stop_sequences"] = .array(sampling.stopSequences.map { .string($0) }) }
        if request.stream { body["stream"] = true }

        if !request.tools.isEmpty {
            var tools: [JSONValue] = []
            for (i, tool) in request.tools.enumerated() {
                if tool.kind != nil {
                    guard sameDialect, let definition = tool.extensions["definition"] else {
                        throw .invalidValue("tools[\(i)].type", "the tool '\(tool.name)' cannot be served by an Anthropic upstream.")
                    }
                    tools.append(definition)
                    continue
                }
                var value: [String: JSONValue] = ["name": .string(tool.name), "input_schema": tool.parameters ?? ["type": "object"]]
                if let d = tool.description { value["description"] = .string(d) }
                if sameDialect { value.merge(tool.extensions) { a, _ in a } }
                tools.append(.object(value))
            }
            body["tools"] = .array(tools)
        }
        var choice: [String: JSONValue]?
        switch request.toolChoice {
        case nil: break
        case .auto?: choice = ["type": "auto"]
        case .any?: choice = ["type": "any"]
        case .none?: choice = ["type": "none"]
        case .tool(let name)?: choice = ["type": "tool", "name": .string(name)]
        }
        if request.parallelToolCalls == false, !request.tools.isEmpty {
            choice = (choice ?? ["type": "auto"]).merging(["disable_parallel_tool_use": true]) { _, b in b }
        }
        if let choice { body["tool_choice"] = .object(choice) }

        switch request.reasoning {
        case nil: break
        case .off?: body["thinking"] = ["type": "disabled"]
        case let reasoning?:
            let maxTokens = request.sampling.maxTokens ?? defaultMaxTokens
            let budget = min(reasoning.budgetTokens(maxTokens: maxTokens) ?? 1024, max(1024, maxTokens - 1))
            body["thinking"] = ["type": "enabled", "budget_tokens": .int(budget)]
            if budget >= maxTokens { body["max_tokens"] = .int(budget + 1024) }
        }
        if sameDialect, !request.metadata.isEmpty {
            body["metadata"] = .object(request.metadata)
        } else if let user = request.user {
            body["metadata"] = ["user_id": .string(user)]
        }
        if sameDialect {
            // `thinking.display` and the like go back into the object they came from, when it is still sent.
            for (path, value) in request.extensions {
                guard let dot = path.firstIndex(of: "."), case .object(var parent)? = body[String(path[..<dot])] else { continue }
                parent[String(path[path.index(after: dot)...])] = value
                body[String(path[..<dot])] = .object(parent)
            }
        }
        var out = ByteBuffer()
        out.writeJSONValue(.object(body))
        return out
    }

    /// One content part as an Anthropic block; nil for a part Anthropic cannot take (reasoning of another upstream,
    /// whose missing signature Anthropic would refuse).
    static func blockValue(_ part: Generation.ContentPart, sameDialect: Bool) -> JSONValue? {
        func with(_ base: [String: JSONValue], _ extensions: Generation.Extensions) -> JSONValue {
            guard sameDialect, !extensions.isEmpty else { return .object(base) }
            return .object(base.merging(extensions) { a, _ in a })
        }
        switch part {
        case .text(let text):
            return with(["type": "text", "text": .string(text.text)], text.extensions)
        case .image(let image):
            let source: JSONValue
            switch image.source {
            case .base64(let mediaType, let data): source = ["type": "base64", "media_type": .string(mediaType), "data": .string(data)]
            case .url(let url): source = ["type": "url", "url": .string(url)]
            }
            return with(["type": "image", "source": source], image.extensions)
        case .toolCall(let call):
            return with(
                ["type": "tool_use", "id": .string(call.id), "name": .string(call.name), "input": inputObject(call.arguments)],
                call.extensions)
        case .toolResult(let result):
            var base: [String: JSONValue] = [
                "type": "tool_result", "tool_use_id": .string(result.callID),
                "content": .array(result.content.compactMap { blockValue($0, sameDialect: sameDialect) }),
            ]
            if result.isError { base["is_error"] = true }
            return with(base, result.extensions)
        case .reasoning(let reasoning):
            if let data = reasoning.redactedData { return with(["type": "redacted_thinking", "data": .string(data)], reasoning.extensions) }
            guard let signature = reasoning.signature, sameDialect || !signature.isEmpty else { return nil }
            return with(["type": "thinking", "thinking": .string(reasoning.text), "signature": .string(signature)], reasoning.extensions)
        }
    }

    /// Reads a Messages response body from an Anthropic upstream into a canonical answer.
    public static func decodeAnswer(_ body: ByteBuffer) throws(APIError) -> Generation.Answer {
        let root: JSONFields
        do {
            root = try JSONFields.body(body)
        } catch {
            throw .upstreamFailed("The upstream sent an answer that could not be read.")
        }
        do throws(APIError) {
            var content: [Generation.ContentPart] = []
            for (i, raw) in (try root.array("content") ?? []).enumerated() {
                let block = try JSONFields(raw, path: "content[\(i)]")
                switch try block.requiredString("type") {
                case "text": content.append(.text(try block.requiredString("text")))
                case "tool_use":
                    content.append(
                        .toolCall(.init(id: try block.requiredString("id"), name: try block.requiredString("name"), arguments: (block["input"] ?? [:]).jsonText)))
                case "thinking":
                    content.append(.reasoning(.init(text: try block.requiredString("thinking"), signature: try block.string("signature"))))
                case "redacted_thinking":
                    content.append(.reasoning(.init(text: "", redactedData: try block.requiredString("data"))))
                default:
                    // Server-tool blocks (web search results, ...) have no canonical form yet.
                    continue
                }
            }
            return Generation.Answer(
                id: try root.string("id") ?? "", model: try root.string("model") ?? "", content: content,
                stopReason: canonicalStopReason(try root.string("stop_reason")), stopSequence: try root.string("stop_sequence"),
                usage: try usage(root.object("usage")) ?? Generation.Usage())
        } catch {
            throw .upstreamFailed("The upstream sent an answer that could not be read: \(error.message)")
        }
    }

    /// Canonical usage from an Anthropic `usage` object (input counts summed, since canonical prompt tokens include
    /// the cached ones).
    static func usage(_ fields: JSONFields?) throws(APIError) -> Generation.Usage? {
        guard let fields else { return nil }
        let cacheRead = try fields.int("cache_read_input_tokens") ?? 0
        let cacheCreation = try fields.int("cache_creation_input_tokens") ?? 0
        return Generation.Usage(
            promptTokens: (try fields.int("input_tokens") ?? 0) + cacheRead + cacheCreation,
            completionTokens: try fields.int("output_tokens") ?? 0,
            cachedPromptTokens: cacheRead, cacheCreationTokens: cacheCreation)
    }
}
