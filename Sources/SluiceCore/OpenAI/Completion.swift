/// `POST /v1/completions` request (legacy text completion).
public struct CompletionRequest: Codable, Sendable, Equatable {
    public var model: String
    public var prompt: Prompt
    public var suffix: String?
    public var stream: Bool?
    public var streamOptions: StreamOptions?
    public var temperature: Double?
    public var topP: Double?
    public var maxTokens: Int?
    public var n: Int?
    public var stop: StopSequences?
    public var seed: Int?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?
    public var echo: Bool?
    public var user: String?
    /// Decoded only to be checked: Ollama has no such controls, and OpenAI upstreams read them from the raw body.
    public var logitBias: [String: Double]?
    public var logprobs: Int?
    public var bestOf: Int?

    public init(model: String, prompt: Prompt, stream: Bool? = nil) {
        self.model = model
        self.prompt = prompt
        self.stream = stream
    }

    enum CodingKeys: String, CodingKey {
        case model, prompt, suffix, stream, temperature, n, stop, seed, echo, user
        case streamOptions = "stream_options"
        case topP = "top_p"
        case maxTokens = "max_tokens"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
        case logitBias = "logit_bias"
        case logprobs
        case bestOf = "best_of"
    }

    public var isStreaming: Bool { stream ?? false }
    public var includeUsage: Bool { streamOptions?.includeUsage ?? false }
}

/// A completion prompt: one string or several (token-array prompts are not supported by Ollama).
public enum Prompt: Codable, Sendable, Equatable, JSONTypeNamed {
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

/// A complete text completion, or (with `object` = `text_completion` too) one streamed chunk of it.
public struct CompletionResponse: Codable, Sendable, Equatable {
    public var id: String
    public var object: String = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?

    /// One alternative completion text.
    public struct Choice: Codable, Sendable, Equatable {
        public var text: String
        public var index: Int
        public var finishReason: String?
        public var logprobs: JSONValue?

        public init(text: String, index: Int, finishReason: String?) {
            self.text = text
            self.index = index
            self.finishReason = finishReason
        }

        enum CodingKeys: String, CodingKey {
            case text, index, logprobs
            case finishReason = "finish_reason"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(text, forKey: .text)
            try c.encode(index, forKey: .index)
            try c.encode(finishReason, forKey: .finishReason)
            try c.encode(logprobs ?? .null, forKey: .logprobs)
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
