/// `POST /v1/chat/completions` request: the fields Sluice validates, translates or keys on.
///
/// Fields it does not know are not decoded here; for OpenAI upstreams the original bytes are forwarded,
/// so they reach the upstream untouched.
public struct ChatCompletionRequest: Codable, Sendable, Equatable {
    public var model: String
    public var messages: [ChatMessage]
    public var stream: Bool?
    public var streamOptions: StreamOptions?
    public var temperature: Double?
    public var topP: Double?
    public var maxTokens: Int?
    public var maxCompletionTokens: Int?
    public var n: Int?
    public var stop: StopSequences?
    public var seed: Int?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?
    public var tools: [Tool]?
    public var toolChoice: JSONValue?
    public var responseFormat: ResponseFormat?
    public var user: String?
    /// Decoded only to be checked: Ollama has no such controls, and OpenAI upstreams read them from the raw body.
    public var logitBias: [String: Double]?
    public var logprobs: Bool?
    public var topLogprobs: Int?
    public var parallelToolCalls: Bool?
    /// `none`, `minimal`, `low`, `medium` or `high`; becomes Ollama's `think`.
    public var reasoningEffort: String?
    /// Ollama's `keep_alive`, sent by the OpenAI SDK through `extra_body`: a translating gateway is the only place
    /// it can survive.
    public var keepAlive: JSONValue?
    /// Ollama `think` (`true`, `false` or an effort), for Ollama upstreams; wins over `reasoning_effort`.
    public var think: JSONValue?
    /// Ollama `options` (`num_ctx`, …) sent through `extra_body`; the OpenAI sampling fields win where both are given.
    public var options: [String: JSONValue]?
    /// Top-k sampling, which vLLM, llama.cpp and Ollama clients send (OpenAI's SDK through `extra_body`).
    public var topK: Int?
    /// What the gateway tells an Ollama upstream that the body does not say (a virtual model's defaults when the body
    /// also goes to a hosted upstream), as Ollama's own fields; never on the wire.
    public var ollama: [String: JSONValue] = [:]

    public init(model: String, messages: [ChatMessage], stream: Bool? = nil) {
        self.model = model
        self.messages = messages
        self.stream = stream
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, messages, stream, temperature, n, stop, seed, tools, user
        case topK = "top_k"
        case streamOptions = "stream_options"
        case topP = "top_p"
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
        case toolChoice = "tool_choice"
        case responseFormat = "response_format"
        case logitBias = "logit_bias"
        case logprobs
        case topLogprobs = "top_logprobs"
        case parallelToolCalls = "parallel_tool_calls"
        case reasoningEffort = "reasoning_effort"
        case keepAlive = "keep_alive"
        case think
        case options
    }

    public var isStreaming: Bool { stream ?? false }
    public var includeUsage: Bool { streamOptions?.includeUsage ?? false }
    /// The token cap the client asked for, under either of OpenAI's names.
    public var tokenLimit: Int? { maxCompletionTokens ?? maxTokens }
}

/// `stream_options` of a chat or completion request.
public struct StreamOptions: Codable, Sendable, Equatable {
    public var includeUsage: Bool?
    public init(includeUsage: Bool?) { self.includeUsage = includeUsage }
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
}

/// `stop`: one string or a list of strings.
public enum StopSequences: Codable, Sendable, Equatable, JSONTypeNamed {
    public static let jsonTypeName = "string or array of strings"

    case one(String)
    case many([String])

    public var values: [String] {
        switch self {
        case .one(let s): [s]
        case .many(let a): a
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .one(s)
        } else {
            self = .many(try c.decodeLastAlternative([String].self, of: Self.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .one(let s): try c.encode(s)
        case .many(let a): try c.encode(a)
        }
    }
}

/// `response_format`: `text`, `json_object` or `json_schema` (with its schema).
public struct ResponseFormat: Codable, Sendable, Equatable {
    public var type: String
    public var jsonSchema: JSONValue?
    public init(type: String, jsonSchema: JSONValue? = nil) {
        self.type = type
        self.jsonSchema = jsonSchema
    }
    enum CodingKeys: String, CodingKey {
        case type
        case jsonSchema = "json_schema"
    }
}

/// A tool the model may call; only `function` tools exist today.
public struct Tool: Codable, Sendable, Equatable {
    public var type: String
    public var function: FunctionDefinition

    public init(function: FunctionDefinition) {
        self.type = "function"
        self.function = function
    }
}

/// A callable function's name, description and JSON-Schema parameters.
public struct FunctionDefinition: Codable, Sendable, Equatable {
    public var name: String
    public var description: String?
    public var parameters: JSONValue?
    public var strict: Bool?

    public init(name: String, description: String? = nil, parameters: JSONValue? = nil) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }
}

/// One message of a conversation.
public struct ChatMessage: Codable, Sendable, Equatable {
    public var role: String
    public var content: MessageContent?
    public var name: String?
    public var toolCalls: [ToolCall]?
    public var toolCallID: String?
    /// The model's reasoning, as DeepSeek, vLLM and LiteLLM name it (`reasoning_content`); Ollama's own `/v1` calls
    /// it `reasoning`. Read from either, written as both so every client finds it.
    public var reasoningContent: String?

    public init(
        role: String, content: MessageContent?, toolCalls: [ToolCall]? = nil, toolCallID: String? = nil, reasoningContent: String? = nil
    ) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.reasoningContent = reasoningContent
    }

    enum CodingKeys: String, CodingKey {
        case role, content, name, reasoning
        case toolCalls = "tool_calls"
        case toolCallID = "tool_call_id"
        case reasoningContent = "reasoning_content"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        role = try c.decode(String.self, forKey: .role)
        content = try c.decodeIfPresent(MessageContent.self, forKey: .content)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        toolCalls = try c.decodeIfPresent([ToolCall].self, forKey: .toolCalls)
        toolCallID = try c.decodeIfPresent(String.self, forKey: .toolCallID)
        reasoningContent = try c.decodeIfPresent(String.self, forKey: .reasoningContent) ?? c.decodeIfPresent(String.self, forKey: .reasoning)
    }

    // `content` is always written, as null when absent: OpenAI clients expect the key.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(role, forKey: .role)
        try c.encode(content, forKey: .content)
        try c.encodeIfPresent(name, forKey: .name)
        try c.encodeIfPresent(toolCalls, forKey: .toolCalls)
        try c.encodeIfPresent(toolCallID, forKey: .toolCallID)
        try c.encodeIfPresent(reasoningContent, forKey: .reasoningContent)
        try c.encodeIfPresent(reasoningContent, forKey: .reasoning)
    }
}

/// Message content: a plain string, or a list of typed parts (text, image_url, ...).
public enum MessageContent: Codable, Sendable, Equatable, JSONTypeNamed {
    public static let jsonTypeName = "string or array of content parts"

    case text(String)
    case parts([ContentPart])

    /// The text of the content, parts joined by newlines.
    public var text: String {
        switch self {
        case .text(let s): s
        case .parts(let parts): parts.compactMap(\.text).joined(separator: "\n")
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .text(s)
        } else {
            self = .parts(try c.decodeLastAlternative([ContentPart].self, of: Self.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .text(let s): try c.encode(s)
        case .parts(let p): try c.encode(p)
        }
    }
}

/// A typed part of a message's content.
public struct ContentPart: Codable, Sendable, Equatable {
    public var type: String
    public var text: String?
    public var imageURL: ImageURL?
    /// A `refusal` part's text, as an assistant turn in the history carries it.
    public var refusal: String?

    /// `image_url.url`: an http(s) URL or a `data:` URL.
    public struct ImageURL: Codable, Sendable, Equatable {
        public var url: String
        public var detail: String?
    }

    enum CodingKeys: String, CodingKey {
        case type, text, refusal
        case imageURL = "image_url"
    }
}

/// A function call the assistant asked for; `arguments` is a JSON document in a string, as OpenAI sends it.
public struct ToolCall: Codable, Sendable, Equatable {
    public var id: String
    public var type: String
    public var function: FunctionCall

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.type = "function"
        self.function = FunctionCall(name: name, arguments: arguments)
    }
}

/// The function name and JSON-encoded arguments of a tool call.
public struct FunctionCall: Codable, Sendable, Equatable {
    public var name: String
    public var arguments: String
    public init(name: String, arguments: String) {
        self.name = name
        self.arguments = arguments
    }
}

/// Token counts of one call.
public struct Usage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int
    /// `prompt_tokens_details`: how many prompt tokens the upstream read from its prompt cache.
    public var promptTokensDetails: PromptTokensDetails?
    /// `completion_tokens_details`: how many completion tokens were reasoning.
    public var completionTokensDetails: CompletionTokensDetails?
    /// Prompt tokens written to the upstream's prompt cache (Anthropic `cache_creation_input_tokens`), which are
    /// priced apart; not an OpenAI field, so never on the wire.
    public var cacheWriteTokens = 0

    public init(promptTokens: Int, completionTokens: Int, cachedTokens: Int = 0, cacheWriteTokens: Int = 0, reasoningTokens: Int = 0) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = promptTokens + completionTokens
        self.promptTokensDetails = cachedTokens > 0 ? PromptTokensDetails(cachedTokens: cachedTokens) : nil
        self.completionTokensDetails = reasoningTokens > 0 ? CompletionTokensDetails(reasoningTokens: reasoningTokens) : nil
        self.cacheWriteTokens = cacheWriteTokens
    }

    /// Prompt tokens read from the upstream's prompt cache; part of `promptTokens`.
    public var cachedTokens: Int { promptTokensDetails?.cachedTokens ?? 0 }
    /// Completion tokens spent on reasoning; part of `completionTokens`.
    public var reasoningTokens: Int { completionTokensDetails?.reasoningTokens ?? 0 }

    /// OpenAI `usage.prompt_tokens_details`; fields Sluice does not use (`audio_tokens`) are not kept.
    public struct PromptTokensDetails: Codable, Sendable, Equatable {
        public var cachedTokens: Int?

        public init(cachedTokens: Int?) { self.cachedTokens = cachedTokens }

        enum CodingKeys: String, CodingKey {
            case cachedTokens = "cached_tokens"
        }
    }

    /// OpenAI `usage.completion_tokens_details`.
    public struct CompletionTokensDetails: Codable, Sendable, Equatable {
        public var reasoningTokens: Int?

        public init(reasoningTokens: Int?) { self.reasoningTokens = reasoningTokens }

        enum CodingKeys: String, CodingKey {
            case reasoningTokens = "reasoning_tokens"
        }
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
        case promptTokensDetails = "prompt_tokens_details"
        case completionTokensDetails = "completion_tokens_details"
    }
}

/// A complete (non-streamed) chat completion.
public struct ChatCompletionResponse: Codable, Sendable, Equatable {
    public var id: String
    public var object: String = "chat.completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?

    /// One alternative answer.
    public struct Choice: Codable, Sendable, Equatable {
        public var index: Int
        public var message: ChatMessage
        public var finishReason: String?

        public init(index: Int, message: ChatMessage, finishReason: String?) {
            self.index = index
            self.message = message
            self.finishReason = finishReason
        }

        enum CodingKeys: String, CodingKey {
            case index, message
            case finishReason = "finish_reason"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(message, forKey: .message)
            try c.encode(finishReason, forKey: .finishReason)
        }
    }

    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage?) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}

/// One `data:` event of a streamed chat completion.
public struct ChatCompletionChunk: Codable, Sendable, Equatable {
    public var id: String
    public var object: String = "chat.completion.chunk"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?

    /// The change one choice went through in this chunk.
    public struct Choice: Codable, Sendable, Equatable {
        public var index: Int
        public var delta: Delta
        public var finishReason: String?

        public init(index: Int = 0, delta: Delta, finishReason: String? = nil) {
            self.index = index
            self.delta = delta
            self.finishReason = finishReason
        }

        enum CodingKeys: String, CodingKey {
            case index, delta
            case finishReason = "finish_reason"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(delta, forKey: .delta)
            try c.encode(finishReason, forKey: .finishReason)
        }
    }

    /// New content, role or tool-call fragments.
    public struct Delta: Codable, Sendable, Equatable {
        public var role: String?
        public var content: String?
        public var toolCalls: [ToolCallDelta]?
        /// More of the model's reasoning; written as `reasoning_content` and `reasoning`, as on ``ChatMessage``.
        public var reasoningContent: String?

        public init(role: String? = nil, content: String? = nil, toolCalls: [ToolCallDelta]? = nil, reasoningContent: String? = nil) {
            self.role = role
            self.content = content
            self.toolCalls = toolCalls
            self.reasoningContent = reasoningContent
        }

        enum CodingKeys: String, CodingKey {
            case role, content, reasoning
            case toolCalls = "tool_calls"
            case reasoningContent = "reasoning_content"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            role = try c.decodeIfPresent(String.self, forKey: .role)
            content = try c.decodeIfPresent(String.self, forKey: .content)
            toolCalls = try c.decodeIfPresent([ToolCallDelta].self, forKey: .toolCalls)
            reasoningContent = try c.decodeIfPresent(String.self, forKey: .reasoningContent) ?? c.decodeIfPresent(String.self, forKey: .reasoning)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(role, forKey: .role)
            try c.encodeIfPresent(content, forKey: .content)
            try c.encodeIfPresent(toolCalls, forKey: .toolCalls)
            try c.encodeIfPresent(reasoningContent, forKey: .reasoningContent)
            try c.encodeIfPresent(reasoningContent, forKey: .reasoning)
        }
    }

    /// A tool call, or a fragment of one, inside a streamed delta.
    public struct ToolCallDelta: Codable, Sendable, Equatable {
        public var index: Int
        public var id: String?
        public var type: String?
        public var function: FunctionCall?

        public init(index: Int, id: String?, type: String?, function: FunctionCall?) {
            self.index = index
            self.id = id
            self.type = type
            self.function = function
        }
    }

    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage? = nil) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}
