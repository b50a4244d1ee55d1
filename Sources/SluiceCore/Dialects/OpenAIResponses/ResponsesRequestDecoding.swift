import NIOCore

/// OpenAI Responses API (`POST /v1/responses`, https://platform.openai.com/docs/api-reference/responses): what
/// Codex CLI speaks.
public enum OpenAIResponses {}

extension OpenAIResponses {
    static let knownRequestFields: Set<String> = [
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens", "temperature",
        "top_p", "text", "reasoning", "metadata", "user", "store", "previous_response_id", "stream",
    ]

    /// Responses fields that say how to serve a request, not what to answer: which extra outputs to return
    /// (`include`), prompt-cache routing (`prompt_cache_key`), context truncation, tier, verbosity, the reasoning
    /// summary's style. Codex CLI sends several on every request. An upstream the request is translated for has no
    /// such knobs, so they are left out and named in the `x-sluice-ignored` response header rather than refused.
    public static let advisoryFields: Set<String> = [
        "include", "prompt_cache_key", "truncation", "service_tier", "safety_identifier", "stream_options", "text.verbosity",
        "reasoning.summary", "reasoning.generate_summary",
    ]

    /// The fields of a decoded Responses request the canonical model does not carry.
    public static func unservedFields(_ request: Generation.Request) -> UnservedFields {
        UnservedFields(request.extensions.keys, advisory: advisoryFields)
    }

    /// Decodes and validates a `/v1/responses` body into a canonical request.
    ///
    /// `input` is a string (one user message) or a list of items: messages (`input_text`, `input_image`,
    /// `output_text` parts), `function_call`, `function_call_output` and `reasoning`. Consecutive assistant items
    /// merge into one assistant turn, as chat and Anthropic upstreams want parallel calls together. An item or part
    /// type it cannot carry is a 400 naming it; top-level fields it does not model (`include`, `truncation`,
    /// `service_tier`, ...) ride in `extensions`, as do unknown members of `text` and `reasoning` (`text.verbosity`,
    /// `reasoning.summary`). Non-function tools are kept with their definition, for an OpenAI upstream only.
    public static func decodeRequest(_ body: ByteBuffer) throws(APIError) -> Generation.Request {
        let root = try JSONFields.body(body)
        let model = try root.requiredString("model")
        if model.isEmpty { throw .invalidValue("model", "must not be empty.") }

        var messages: [Generation.Message] = []
        switch root["input"] {
        case nil: throw .missingField("input")
        case .string(let s): messages = [Generation.Message(role: .user, content: [.text(s)])]
        case .array(let items):
            var callNames: [String: String] = [:]
            for (i, item) in items.enumerated() {
                try appendItem(item, path: "input[\(i)]", to: &messages, callNames: &callNames)
            }
        default: throw .invalidType("input", expected: "string or array of input items")
        }

        var request = Generation.Request(model: model, messages: messages, origin: .openAIResponses)
        var extensions = root.unknown(knownRequestFields)
        // These change what the call is (run in the background, continue a server-side conversation object), and
        // Sluice runs neither: answering without them would be a different call, so they are refused by name.
        if case .bool(true)? = root["background"] { throw .invalidValue("background", "background responses are not supported.") }
        if root["conversation"] != nil {
            throw .invalidValue("conversation", "conversation objects are not supported; use previous_response_id.")
        }
        if let instructions = try root.string("instructions"), !instructions.isEmpty { request.system = [.text(instructions)] }
        if let m = try root.int("max_output_tokens") {
            guard m >= 1 else { throw .invalidValue("max_output_tokens", "must be at least 1.") }
            request.sampling.maxTokens = m
        }
        if let t = try root.double("temperature") {
            guard (0...2).contains(t) else { throw .invalidValue("temperature", "must be between 0 and 2.") }
            request.sampling.temperature = t
        }
        if let p = try root.double("top_p") {
            guard (0...1).contains(p) else { throw .invalidValue("top_p", "must be between 0 and 1.") }
            request.sampling.topP = p
        }
        if let tools = try root.array("tools") {
            request.tools = try tools.enumerated().map { i, raw throws(APIError) in try tool(raw, path: "tools[\(i)]") }
        }
        request.toolChoice = try toolChoice(root["tool_choice"])
        request.parallelToolCalls = try root.bool("parallel_tool_calls")
        if let text = try root.object("text") {
            if let format = try text.object("format") { request.responseFormat = try responseFormat(format) }
            extensions.merge(text.unknown(["format"], prefix: "text")) { a, _ in a }
        }
        if let reasoning = try root.object("reasoning") {
            if let effort = try reasoning.string("effort") {
                guard let e = Generation.ReasoningRequest.Effort(rawValue: effort) else {
                    throw .invalidValue("reasoning.effort", "must be one of minimal, low, medium, high.")
                }
                request.reasoning = .effort(e)
            }
            extensions.merge(reasoning.unknown(["effort"], prefix: "reasoning")) { a, _ in a }
        }
        if let metadata = try root.object("metadata") {
            for (key, value) in metadata.members {
                guard case .string = value else { throw .invalidType(metadata.name(key), expected: "string") }
            }
            request.metadata = metadata.members
        }
        request.user = try root.string("user")
        request.store = try root.bool("store")
        request.previousResponseID = try root.string("previous_response_id")
        request.stream = try root.bool("stream") ?? false
        request.extensions = extensions
        try request.checkToolChoice(field: "tool_choice")
        return request
    }

    static func appendItem(
        _ raw: JSONValue, path: String, to messages: inout [Generation.Message], callNames: inout [String: String]
    ) throws(APIError) {
        let item = try JSONFields(raw, path: path)
        let type = try item.string("type") ?? (item["role"] != nil ? "message" : nil)
        switch type {
        case "message":
            let roleName = try item.requiredString("role")
            let role: Generation.Role
            switch roleName {
            case "user": role = .user
            case "assistant": role = .assistant
            case "system", "developer": role = .system
            default: throw .invalidValue(item.name("role"), "'\(roleName)' is not one of user, assistant, system, developer.")
            }
            var parts: [Generation.ContentPart] = []
            switch item["content"] {
            case .string(let s): parts = [.text(s)]
            case .array(let rawParts):
                for (j, rawPart) in rawParts.enumerated() {
                    parts.append(try contentPart(rawPart, path: item.element("content", j)))
                }
            case nil: throw .missingField(item.name("content"))
            default: throw .invalidType(item.name("content"), expected: "string or array of content parts")
            }
            append(Generation.Message(role: role, content: parts), to: &messages)
        case "function_call":
            let callID = try item.requiredString("call_id")
            let name = try item.requiredString("name")
            callNames[callID] = name
            let call = Generation.ToolCall(
                id: callID, name: name, arguments: try item.string("arguments") ?? "{}",
                extensions: item.unknown(["type", "call_id", "name", "arguments", "status"]))
            append(Generation.Message(role: .assistant, content: [.toolCall(call)]), to: &messages)
        case "function_call_output":
            let callID = try item.requiredString("call_id")
            var content: [Generation.ContentPart]
            switch item["output"] {
            case .string(let s): content = [.text(s)]
            case .array(let rawParts):
                content = []
                for (j, rawPart) in rawParts.enumerated() {
                    content.append(try contentPart(rawPart, path: item.element("output", j)))
                }
            case nil: throw .missingField(item.name("output"))
            default: throw .invalidType(item.name("output"), expected: "string or array of content parts")
            }
            let result = Generation.ToolResult(
                callID: callID, name: callNames[callID], content: content, extensions: item.unknown(["type", "call_id", "output", "status"]))
            if let last = messages.last, last.role == .tool {
                messages[messages.count - 1].content.append(.toolResult(result))
            } else {
                messages.append(Generation.Message(role: .tool, content: [.toolResult(result)]))
            }
        case "reasoning":
            var texts: [String] = []
            for (j, rawSummary) in (try item.array("summary") ?? []).enumerated() {
                let summary = try JSONFields(rawSummary, path: item.element("summary", j))
                texts.append(try summary.requiredString("text"))
            }
            let reasoning = Generation.Reasoning(
                text: texts.joined(separator: "\n\n"), signature: try item.string("encrypted_content"),
                extensions: item.unknown(["type", "summary", "encrypted_content"]))
            append(Generation.Message(role: .assistant, content: [.reasoning(reasoning)]), to: &messages)
        case let other:
            throw .invalidValue(
                item.name("type"),
                "'\(other ?? "")' is not a supported input item type (message, function_call, function_call_output, reasoning).")
        }
    }

    /// Appends a message, merging it into the previous one when both are assistant turns.
    static func append(_ message: Generation.Message, to messages: inout [Generation.Message]) {
        if message.role == .assistant, let last = messages.last, last.role == .assistant {
            messages[messages.count - 1].content += message.content
        } else {
            messages.append(message)
        }
    }

    static func contentPart(_ raw: JSONValue, path: String) throws(APIError) -> Generation.ContentPart {
        let part = try JSONFields(raw, path: path)
        let type = try part.requiredString("type")
        switch type {
        case "input_text", "output_text", "text":
            return .text(.init(try part.requiredString("text"), extensions: part.unknown(["type", "text", "annotations", "logprobs"])))
        case "input_image":
            guard let url = try part.string("image_url") else {
                throw .invalidValue(part.name("image_url"), "images must be given as a URL or data: URL (file_id is not supported).")
            }
            var image = Generation.Image(openAIURL: url, detail: try part.string("detail"))
            image.extensions = part.unknown(["type", "image_url", "detail"])
            return .image(image)
        case "refusal":
            return .text(.init(try part.requiredString("refusal")))
        default:
            throw .invalidValue(part.name("type"), "'\(type)' is not a supported content part type (input_text, input_image, output_text).")
        }
    }

    static func tool(_ raw: JSONValue, path: String) throws(APIError) -> Generation.Tool {
        let fields = try JSONFields(raw, path: path)
        let type = try fields.requiredString("type")
        guard type == "function" else {
            var tool = Generation.Tool(name: try fields.string("name") ?? type)
            tool.kind = type
            tool.extensions = ["definition": raw]
            return tool
        }
        let name = try fields.requiredString("name")
        if name.isEmpty { throw .invalidValue(fields.name("name"), "must not be empty.") }
        if let parameters = fields["parameters"], parameters.objectValue == nil {
            throw .invalidType(fields.name("parameters"), expected: "object")
        }
        var tool = Generation.Tool(
            name: name, description: try fields.string("description"), parameters: fields["parameters"], strict: try fields.bool("strict"))
        tool.extensions = fields.unknown(["type", "name", "description", "parameters", "strict"])
        return tool
    }

    static func toolChoice(_ value: JSONValue?) throws(APIError) -> Generation.ToolChoice? {
        switch value {
        case nil: return nil
        case .string("auto"): return .auto
        case .string("none"): return Generation.ToolChoice.none
        case .string("required"): return .any
        case .object:
            let fields = try JSONFields(value!, path: "tool_choice")
            guard try fields.requiredString("type") == "function" else {
                throw .invalidValue("tool_choice.type", "only 'function' tool choices are supported.")
            }
            return .tool(name: try fields.requiredString("name"))
        default:
            throw .invalidValue("tool_choice", "must be 'auto', 'none', 'required' or {\"type\":\"function\",\"name\":…}.")
        }
    }

    static func responseFormat(_ format: JSONFields) throws(APIError) -> Generation.ResponseFormat {
        switch try format.requiredString("type") {
        case "text": return .text
        case "json_object": return .jsonObject
        case "json_schema":
            guard let schema = format["schema"] else { throw .missingField(format.name("schema")) }
            return .jsonSchema(
                name: try format.requiredString("name"), schema: schema, strict: try format.bool("strict"),
                description: try format.string("description"))
        default:
            throw .invalidValue(format.name("type"), "must be one of text, json_object, json_schema.")
        }
    }
}
