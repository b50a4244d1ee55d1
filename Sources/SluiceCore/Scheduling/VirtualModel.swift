/// A model name clients use, mapped to an upstream model with defaults (the `models:` section of the config file).
///
/// A plain alias is a virtual model without defaults.
public struct VirtualModel: Sendable, Equatable {
    /// The name clients send.
    public var name: String
    /// The upstream's name for the model.
    public var model: String
    /// Ollama's context window (`options.num_ctx`); also the limit the context guard checks prompts against.
    public var numCtx: Int?
    /// How long Ollama keeps the model loaded after a request (`30m`, or seconds as a number).
    public var keepAlive: JSONValue?
    /// Ollama's `think`: `true`, `false`, or an effort (`low`, `medium`, `high`).
    public var think: JSONValue?
    public var temperature: Double?
    public var maxTokens: Int?
    /// Put before the request's own system prompt (or as the system prompt, when it has none).
    public var systemPrefix: String?
    /// False pins the defaults: they replace what the client sent instead of filling in what it left out.
    public var overridable = true
    /// Loaded when the gateway starts and kept loaded; its upstreams count as ready only once it is.
    public var warm = false

    public init(name: String, model: String) {
        self.name = name
        self.model = model
    }

    /// Whether it sets anything beyond the name.
    public var hasDefaults: Bool {
        numCtx != nil || keepAlive != nil || think != nil || temperature != nil || maxTokens != nil || systemPrefix != nil
    }
}

/// The JSON shape of a request body, which says where each setting lives in it.
public enum RequestShape: Sendable {
    case openAIChat, openAICompletion, ollamaChat, ollamaGenerate, anthropicMessages, openAIResponses

    /// Whether the shape carries Ollama's own fields (`options`, `keep_alive`, `think`) to an Ollama upstream.
    public var carriesOllamaFields: Bool {
        switch self {
        case .openAIChat, .ollamaChat, .ollamaGenerate: true
        case .openAICompletion, .anthropicMessages, .openAIResponses: false
        }
    }

    /// Whether sampling settings sit in `options` (Ollama native) rather than at the top level.
    var nativeOptions: Bool { self == .ollamaChat || self == .ollamaGenerate }
}

extension VirtualModel {
    /// Writes the model's name and defaults into a request body of `shape`.
    ///
    /// - Parameter ollama: whether the model is served by Ollama upstreams only; Ollama's own fields (`num_ctx`,
    ///   `keep_alive`, `think`) are set only then, since an OpenAI-compatible server would refuse them.
    public func apply(to body: inout [String: JSONValue], shape: RequestShape, ollama: Bool) {
        body["model"] = .string(model)
        var editor = BodyEditor(body: body, overridable: overridable)
        if let temperature {
            editor.set(shape.nativeOptions ? ["options", "temperature"] : ["temperature"], .double(temperature))
        }
        if let maxTokens {
            switch shape {
            case .ollamaChat, .ollamaGenerate: editor.set(["options", "num_predict"], .int(maxTokens))
            case .openAIResponses: editor.set(["max_output_tokens"], .int(maxTokens))
            case .openAIChat:
                // Either name is the client's choice; a pinned default replaces both.
                // A null is the client leaving it out, as the SDKs write unset fields.
                if !overridable || ((body["max_tokens"] ?? .null) == .null && (body["max_completion_tokens"] ?? .null) == .null) {
                    editor.body["max_completion_tokens"] = nil
                    editor.body["max_tokens"] = .int(maxTokens)
                }
            case .openAICompletion, .anthropicMessages: editor.set(["max_tokens"], .int(maxTokens))
            }
        }
        if ollama, shape.carriesOllamaFields {
            if let numCtx { editor.set(["options", "num_ctx"], .int(numCtx)) }
            if let keepAlive { editor.set(["keep_alive"], keepAlive) }
            // The client's own reasoning setting, in whatever form its dialect has, is what `think` defaults.
            if let think, !overridable || !Self.asksForReasoning(body, shape: shape) { editor.body["think"] = think }
        }
        if let systemPrefix { Self.prefixSystem(&editor.body, with: systemPrefix, shape: shape) }
        body = editor.body
    }

    /// Its Ollama settings (`options.num_ctx`, `keep_alive`, `think`) as Ollama's own fields, for a request whose
    /// body does not take them to the Ollama upstream (``Generation/Request/ollama``): a dialect that cannot carry
    /// them, or a chat body that also goes to a hosted upstream. The client's values in `body` win unless pinned.
    public func ollamaSettings(for body: [String: JSONValue], shape: RequestShape) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        let options = body["options"]?.objectValue ?? [:]
        if let numCtx, !overridable || options["num_ctx"] == nil { out["options"] = ["num_ctx": .int(numCtx)] }
        if let keepAlive, !overridable || body["keep_alive"] == nil { out["keep_alive"] = keepAlive }
        if let think, !overridable || !Self.asksForReasoning(body, shape: shape) { out["think"] = think }
        return out
    }

    /// Whether the client set reasoning itself: chat's `reasoning_effort` (or Ollama's `think` through `extra_body`),
    /// Ollama's `think`, Anthropic's `thinking`, Responses' `reasoning.effort`.
    static func asksForReasoning(_ body: [String: JSONValue], shape: RequestShape) -> Bool {
        switch shape {
        case .openAIChat: body["reasoning_effort"] != nil || body["think"] != nil
        case .ollamaChat, .ollamaGenerate: body["think"] != nil
        case .anthropicMessages: body["thinking"] != nil
        case .openAIResponses: body["reasoning"]?["effort"] != nil
        case .openAICompletion: false
        }
    }

    /// Puts `prefix` before the system prompt, wherever the shape keeps it.
    static func prefixSystem(_ body: inout [String: JSONValue], with prefix: String, shape: RequestShape) {
        func joined(_ existing: JSONValue?) -> JSONValue {
            switch existing {
            case .string(let text)? where !text.isEmpty: .string(prefix + "\n\n" + text)
            case .array(let blocks)? where !blocks.isEmpty: .array([["type": "text", "text": .string(prefix)]] + blocks)
            default: .string(prefix)
            }
        }
        switch shape {
        case .anthropicMessages, .ollamaGenerate: body["system"] = joined(body["system"])
        case .openAIResponses: body["instructions"] = joined(body["instructions"])
        case .openAIChat, .ollamaChat:
            var messages = body["messages"]?.arrayValue ?? []
            if case .object(var first)? = messages.first, let role = first["role"]?.stringValue, role == "system" || role == "developer",
                first["content"]?.stringValue != nil
            {
                first["content"] = joined(first["content"])
                messages[0] = .object(first)
            } else {
                messages.insert(["role": "system", "content": .string(prefix)], at: 0)
            }
            body["messages"] = .array(messages)
        case .openAICompletion:
            // A completion prompt is raw text (and fill-in-the-middle input): it has no system prompt to prefix.
            break
        }
    }
}

/// Sets values at paths of a JSON object, keeping the client's where defaults may be overridden.
struct BodyEditor {
    var body: [String: JSONValue]
    let overridable: Bool

    mutating func set(_ path: [String], _ value: JSONValue) {
        body = Self.setting(body, path[...], value, overridable: overridable)
    }

    static func setting(_ object: [String: JSONValue], _ path: ArraySlice<String>, _ value: JSONValue, overridable: Bool) -> [String: JSONValue] {
        var object = object
        guard let key = path.first else { return object }
        if path.count == 1 {
            if !overridable || object[key] == nil || object[key] == .null { object[key] = value }
        } else {
            let inner = object[key]?.objectValue ?? [:]
            object[key] = .object(setting(inner, path.dropFirst(), value, overridable: overridable))
        }
        return object
    }
}
