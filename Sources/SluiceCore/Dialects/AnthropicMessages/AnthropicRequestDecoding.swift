import NIOCore

/// Anthropic Messages API (`POST /v1/messages`, https://docs.anthropic.com/en/api/messages): what Claude Code and
/// the `anthropic` SDKs speak.
public enum AnthropicMessages {}

extension AnthropicMessages {
    static let knownRequestFields: Set<String> = [
        "model", "messages", "system", "max_tokens", "metadata", "stop_sequences", "stream", "temperature", "top_p",
        "top_k", "tools", "tool_choice", "thinking",
    ]

    /// Decodes and validates a `/v1/messages` body into a canonical request.
    ///
    /// Throws a 400 naming the field for a missing `model`, `messages` or `max_tokens`, a wrong type, a value out of
    /// range, or a content block type it does not know. Top-level fields it does not model (`service_tier`,
    /// `container`, ...) ride in `extensions`; block-level ones (`cache_control`, `citations`) in the part's.
    public static func decodeRequest(_ body: ByteBuffer) throws(APIError) -> Generation.Request {
        try decode(body, maxTokensRequired: true)
    }

    /// Decodes a `/v1/messages/count_tokens` body: a messages request without `max_tokens` (nor `stream`,
    /// `temperature` and the like, which are accepted and ignored there as Anthropic does).
    public static func decodeCountTokensRequest(_ body: ByteBuffer) throws(APIError) -> Generation.Request {
        try decode(body, maxTokensRequired: false)
    }

    static func decode(_ body: ByteBuffer, maxTokensRequired: Bool) throws(APIError) -> Generation.Request {
        let root = try JSONFields.body(body)
        let model = try root.requiredString("model")
        if model.isEmpty { throw .invalidValue("model", "must not be empty.") }
        let maxTokens = try root.int("max_tokens")
        if maxTokens == nil, maxTokensRequired { throw .missingField("max_tokens") }
        if let maxTokens, maxTokens < 1 { throw .invalidValue("max_tokens", "must be at least 1.") }

        let rawMessages = try root.requiredArray("messages")
        if rawMessages.isEmpty { throw .invalidValue("messages", "must contain at least one message.") }
        var messages: [Generation.Message] = []
        messages.reserveCapacity(rawMessages.count)
        for (i, raw) in rawMessages.enumerated() {
            messages += try message(raw, path: "messages[\(i)]")
        }

        var request = Generation.Request(model: model, messages: messages, origin: .anthropicMessages)
        // Unknown members of modelled objects (`thinking.display`), by dotted path.
        var nested: Generation.Extensions = [:]
        request.sampling.maxTokens = maxTokens
        request.system = try system(root)
        if let t = try root.double("temperature") {
            guard (0...1).contains(t) else { throw .invalidValue("temperature", "must be between 0 and 1.") }
            request.sampling.temperature = t
        }
        if let p = try root.double("top_p") {
            guard (0...1).contains(p) else { throw .invalidValue("top_p", "must be between 0 and 1.") }
            request.sampling.topP = p
        }
        if let k = try root.int("top_k") {
            guard k >= 0 else { throw .invalidValue("top_k", "must not be negative.") }
            request.sampling.topK = k
        }
        request.sampling.stopSequences = try root.stringArray("stop_sequences") ?? []
        request.stream = try root.bool("stream") ?? false
        if let metadata = try root.object("metadata") {
            request.metadata = metadata.members
            request.user = try metadata.string("user_id")
        }
        if let tools = try root.array("tools") {
            request.tools = try tools.enumerated().map { i, raw throws(APIError) in try tool(raw, path: "tools[\(i)]") }
        }
        if let choice = try root.object("tool_choice") {
            let type = try choice.requiredString("type")
            switch type {
            case "auto": request.toolChoice = .auto
            case "any": request.toolChoice = .any
            case "none": request.toolChoice = Generation.ToolChoice.none
            case "tool": request.toolChoice = .tool(name: try choice.requiredString("name"))
            default: throw .invalidValue("tool_choice.type", "must be one of auto, any, tool, none.")
            }
            if let disable = try choice.bool("disable_parallel_tool_use") { request.parallelToolCalls = !disable }
            nested.merge(choice.unknown(["type", "name", "disable_parallel_tool_use"], prefix: "tool_choice")) { a, _ in a }
        }
        if let thinking = try root.object("thinking") {
            switch try thinking.requiredString("type") {
            case "enabled":
                guard let budget = try thinking.int("budget_tokens") else { throw .missingField("thinking.budget_tokens") }
                guard budget >= 1024 else { throw .invalidValue("thinking.budget_tokens", "must be at least 1024.") }
                if let maxTokens, budget >= maxTokens {
                    throw .invalidValue("thinking.budget_tokens", "must be less than max_tokens.")
                }
                request.reasoning = .budget(tokens: budget)
            case "disabled":
                request.reasoning = .off
            case "adaptive":
                // Newer Claude clients let the model decide how much to think: a middling effort elsewhere.
                request.reasoning = .effort(.medium)
            default:
                throw .invalidValue("thinking.type", "must be 'enabled', 'adaptive' or 'disabled'.")
            }
            nested.merge(thinking.unknown(["type", "budget_tokens"], prefix: "thinking")) { a, _ in a }
        }
        request.extensions = root.unknown(knownRequestFields).merging(nested) { a, _ in a }
        try request.checkToolChoice(field: "tool_choice.name")
        return request
    }

    static func system(_ root: JSONFields) throws(APIError) -> [Generation.ContentPart] {
        switch root["system"] {
        case nil: return []
        case .string(let s): return s.isEmpty ? [] : [.text(s)]
        case .array(let blocks):
            var parts: [Generation.ContentPart] = []
            for (i, raw) in blocks.enumerated() {
                let block = try JSONFields(raw, path: "system[\(i)]")
                guard try block.requiredString("type") == "text" else {
                    throw .invalidValue("system[\(i)].type", "system blocks must be of type 'text'.")
                }
                parts.append(.text(.init(try block.requiredString("text"), extensions: block.unknown(["type", "text"]))))
            }
            return parts
        default:
            throw .invalidType("system", expected: "string or array of text blocks")
        }
    }

    /// One Anthropic message; a user turn that carries tool results becomes a `.tool` message (the results) followed
    /// by a `.user` message (anything else), the order Anthropic requires them in.
    static func message(_ raw: JSONValue, path: String) throws(APIError) -> [Generation.Message] {
        let fields = try JSONFields(raw, path: path)
        let roleName = try fields.requiredString("role")
        let role: Generation.Role
        switch roleName {
        case "user": role = .user
        case "assistant": role = .assistant
        default: throw .invalidValue(fields.name("role"), "'\(roleName)' is not one of user, assistant.")
        }
        let blocks: [Generation.ContentPart]
        switch fields["content"] {
        case .string(let s): blocks = [.text(s)]
        case .array(let items):
            blocks = try items.enumerated().map { j, item throws(APIError) in try block(item, path: fields.element("content", j), role: role) }
        case nil: throw .missingField(fields.name("content"))
        default: throw .invalidType(fields.name("content"), expected: "string or array of content blocks")
        }
        let extensions = fields.unknown(["role", "content"])
        guard role == .user else { return [Generation.Message(role: role, content: blocks, extensions: extensions)] }
        let results = blocks.filter { if case .toolResult = $0 { true } else { false } }
        guard !results.isEmpty else { return [Generation.Message(role: .user, content: blocks, extensions: extensions)] }
        let rest = blocks.filter { if case .toolResult = $0 { false } else { true } }
        var out = [Generation.Message(role: .tool, content: results, extensions: extensions)]
        if !rest.isEmpty { out.append(Generation.Message(role: .user, content: rest)) }
        return out
    }

    static func block(_ raw: JSONValue, path: String, role: Generation.Role) throws(APIError) -> Generation.ContentPart {
        let block = try JSONFields(raw, path: path)
        let type = try block.requiredString("type")
        switch type {
        case "text":
            return .text(.init(try block.requiredString("text"), extensions: block.unknown(["type", "text"])))
        case "image":
            return .image(try image(block))
        case "tool_use":
            guard role == .assistant else { throw .invalidValue(block.name("type"), "tool_use blocks belong in assistant messages.") }
            let input = block["input"] ?? .object([:])
            guard case .object = input else { throw .invalidType(block.name("input"), expected: "object") }
            return .toolCall(
                .init(
                    id: try block.requiredString("id"), name: try block.requiredString("name"), arguments: input.jsonText,
                    extensions: block.unknown(["type", "id", "name", "input"])))
        case "tool_result":
            guard role == .user else { throw .invalidValue(block.name("type"), "tool_result blocks belong in user messages.") }
            var content: [Generation.ContentPart] = []
            switch block["content"] {
            case nil: break
            case .string(let s): content = [.text(s)]
            case .array(let items):
                for (k, item) in items.enumerated() {
                    let inner = try JSONFields(item, path: block.element("content", k))
                    switch try inner.requiredString("type") {
                    case "text": content.append(.text(.init(try inner.requiredString("text"), extensions: inner.unknown(["type", "text"]))))
                    case "image": content.append(.image(try image(inner)))
                    default: throw .invalidValue(inner.name("type"), "tool_result content blocks must be text or image.")
                    }
                }
            default: throw .invalidType(block.name("content"), expected: "string or array of content blocks")
            }
            return .toolResult(
                .init(
                    callID: try block.requiredString("tool_use_id"), content: content, isError: try block.bool("is_error") ?? false,
                    extensions: block.unknown(["type", "tool_use_id", "content", "is_error"])))
        case "thinking":
            return .reasoning(
                .init(
                    text: try block.requiredString("thinking"), signature: try block.string("signature"),
                    extensions: block.unknown(["type", "thinking", "signature"])))
        case "redacted_thinking":
            return .reasoning(.init(text: "", redactedData: try block.requiredString("data"), extensions: block.unknown(["type", "data"])))
        default:
            throw .invalidValue(
                block.name("type"), "'\(type)' is not a supported content block type (text, image, tool_use, tool_result, thinking).")
        }
    }

    static func image(_ block: JSONFields) throws(APIError) -> Generation.Image {
        guard let source = try block.object("source") else { throw .missingField(block.name("source")) }
        let extensions = block.unknown(["type", "source"])
        switch try source.requiredString("type") {
        case "base64":
            return .init(
                source: .base64(mediaType: try source.requiredString("media_type"), data: try source.requiredString("data")),
                extensions: extensions)
        case "url":
            return .init(source: .url(try source.requiredString("url")), extensions: extensions)
        default:
            throw .invalidValue(source.name("type"), "image sources must be 'base64' or 'url'.")
        }
    }

    static func tool(_ raw: JSONValue, path: String) throws(APIError) -> Generation.Tool {
        let fields = try JSONFields(raw, path: path)
        let name = try fields.requiredString("name")
        if name.isEmpty { throw .invalidValue(fields.name("name"), "must not be empty.") }
        if let type = try fields.string("type"), type != "custom" {
            // A server tool (web search, code execution, ...): only an Anthropic upstream can run it.
            var tool = Generation.Tool(name: name)
            tool.kind = type
            tool.extensions = ["definition": raw]
            return tool
        }
        guard let schema = fields["input_schema"] else { throw .missingField(fields.name("input_schema")) }
        guard case .object = schema else { throw .invalidType(fields.name("input_schema"), expected: "object") }
        var tool = Generation.Tool(name: name, description: try fields.string("description"), parameters: schema)
        tool.extensions = fields.unknown(["name", "description", "input_schema", "type"])
        return tool
    }
}
