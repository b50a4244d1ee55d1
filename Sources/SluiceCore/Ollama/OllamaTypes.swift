/// Ollama's native wire types (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`).
public enum Ollama {}

extension Ollama {
    /// Sampling and length options Ollama takes under `options`.
    public struct Options: Codable, Sendable, Equatable {
        public var temperature: Double?
        public var topP: Double?
        public var topK: Int?
        public var seed: Int?
        public var stop: [String]?
        public var numPredict: Int?
        public var presencePenalty: Double?
        public var frequencyPenalty: Double?
        /// Every other Ollama option (`num_ctx`, `repeat_penalty`, …) as the client gave it; the typed fields above
        /// win where both name the same option.
        public var extra: [String: JSONValue] = [:]

        public init() {}

        enum CodingKeys: String, CodingKey {
            case temperature, seed, stop
            case topP = "top_p"
            case topK = "top_k"
            case numPredict = "num_predict"
            case presencePenalty = "presence_penalty"
            case frequencyPenalty = "frequency_penalty"
        }

        public var isEmpty: Bool { self == Options() }

        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
            topP = try c.decodeIfPresent(Double.self, forKey: .topP)
            topK = try c.decodeIfPresent(Int.self, forKey: .topK)
            seed = try c.decodeIfPresent(Int.self, forKey: .seed)
            stop = try c.decodeIfPresent([String].self, forKey: .stop)
            numPredict = try c.decodeIfPresent(Int.self, forKey: .numPredict)
            presencePenalty = try c.decodeIfPresent(Double.self, forKey: .presencePenalty)
            frequencyPenalty = try c.decodeIfPresent(Double.self, forKey: .frequencyPenalty)
            let all = try decoder.container(keyedBy: AnyKey.self)
            for key in all.allKeys where CodingKeys(stringValue: key.stringValue) == nil {
                extra[key.stringValue] = try all.decode(JSONValue.self, forKey: key)
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var all = encoder.container(keyedBy: AnyKey.self)
            for (key, value) in extra where CodingKeys(stringValue: key) == nil {
                try all.encode(value, forKey: AnyKey(stringValue: key))
            }
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(temperature, forKey: .temperature)
            try c.encodeIfPresent(topP, forKey: .topP)
            try c.encodeIfPresent(topK, forKey: .topK)
            try c.encodeIfPresent(seed, forKey: .seed)
            try c.encodeIfPresent(stop, forKey: .stop)
            try c.encodeIfPresent(numPredict, forKey: .numPredict)
            try c.encodeIfPresent(presencePenalty, forKey: .presencePenalty)
            try c.encodeIfPresent(frequencyPenalty, forKey: .frequencyPenalty)
        }
    }

    /// A chat message; tool calls carry their arguments as a JSON object, not a string.
    public struct Message: Codable, Sendable, Equatable {
        public var role: String
        public var content: String
        /// The model's reasoning, sent by thinking models when the request asked for it (`think`).
        public var thinking: String?
        public var images: [String]?
        public var toolCalls: [ToolCall]?
        public var toolName: String?

        public init(
            role: String, content: String, images: [String]? = nil, toolCalls: [ToolCall]? = nil, toolName: String? = nil,
            thinking: String? = nil
        ) {
            self.role = role
            self.content = content
            self.images = images
            self.toolCalls = toolCalls
            self.toolName = toolName
            self.thinking = thinking
        }

        enum CodingKeys: String, CodingKey {
            case role, content, images, thinking
            case toolCalls = "tool_calls"
            case toolName = "tool_name"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            role = try c.decode(String.self, forKey: .role)
            content = try c.decodeIfPresent(String.self, forKey: .content) ?? ""
            thinking = try c.decodeIfPresent(String.self, forKey: .thinking)
            images = try c.decodeIfPresent([String].self, forKey: .images)
            toolCalls = try c.decodeIfPresent([ToolCall].self, forKey: .toolCalls)
            toolName = try c.decodeIfPresent(String.self, forKey: .toolName)
        }
    }

    /// A tool call as Ollama sends it.
    public struct ToolCall: Codable, Sendable, Equatable {
        public var function: Function

        /// The called function and its arguments object.
        public struct Function: Codable, Sendable, Equatable {
            public var name: String
            public var arguments: JSONValue
            public init(name: String, arguments: JSONValue) {
                self.name = name
                self.arguments = arguments
            }
        }

        public init(function: Function) { self.function = function }
    }

    /// `POST /api/chat` request.
    public struct ChatRequest: Codable, Sendable, Equatable {
        public var model: String
        public var messages: [Message]
        public var tools: [Tool]?
        public var format: JSONValue?
        public var options: Options?
        public var stream: Bool?
        public var keepAlive: JSONValue?
        /// `true`/`false`, or an effort (`"low"`, `"medium"`, `"high"`) for models that take one.
        public var think: JSONValue?

        public init(model: String, messages: [Message], stream: Bool? = nil) {
            self.model = model
            self.messages = messages
            self.stream = stream
        }

        enum CodingKeys: String, CodingKey {
            case model, messages, tools, format, options, stream, think
            case keepAlive = "keep_alive"
        }

        /// Ollama streams unless told not to.
        public var isStreaming: Bool { stream ?? true }
    }

    /// One `/api/chat` answer, or one NDJSON line of a streamed one.
    public struct ChatResponse: Codable, Sendable, Equatable {
        public var model: String
        public var createdAt: String?
        public var message: Message?
        public var done: Bool
        public var doneReason: String?
        public var promptEvalCount: Int?
        public var evalCount: Int?
        public var totalDuration: Int?
        public var error: String?

        public init(model: String, createdAt: String?, message: Message?, done: Bool) {
            self.model = model
            self.createdAt = createdAt
            self.message = message
            self.done = done
        }

        enum CodingKeys: String, CodingKey {
            case model, message, done, error
            case createdAt = "created_at"
            case doneReason = "done_reason"
            case promptEvalCount = "prompt_eval_count"
            case evalCount = "eval_count"
            case totalDuration = "total_duration"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            model = try c.decodeIfPresent(String.self, forKey: .model) ?? ""
            createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
            message = try c.decodeIfPresent(Message.self, forKey: .message)
            done = try c.decodeIfPresent(Bool.self, forKey: .done) ?? false
            doneReason = try c.decodeIfPresent(String.self, forKey: .doneReason)
            promptEvalCount = try c.decodeIfPresent(Int.self, forKey: .promptEvalCount)
            evalCount = try c.decodeIfPresent(Int.self, forKey: .evalCount)
            totalDuration = try c.decodeIfPresent(Int.self, forKey: .totalDuration)
            error = try c.decodeIfPresent(String.self, forKey: .error)
        }
    }

    /// `POST /api/generate` request.
    public struct GenerateRequest: Codable, Sendable, Equatable {
        public var model: String
        public var prompt: String
        public var suffix: String?
        public var system: String?
        public var format: JSONValue?
        public var options: Options?
        public var stream: Bool?
        public var raw: Bool?

        public init(model: String, prompt: String, stream: Bool? = nil) {
            self.model = model
            self.prompt = prompt
            self.stream = stream
        }

        public var isStreaming: Bool { stream ?? true }
    }

    /// One `/api/generate` answer, or one NDJSON line of a streamed one.
    public struct GenerateResponse: Codable, Sendable, Equatable {
        public var model: String
        public var createdAt: String?
        public var response: String
        public var done: Bool
        public var doneReason: String?
        public var promptEvalCount: Int?
        public var evalCount: Int?
        public var error: String?

        public init(model: String, createdAt: String?, response: String, done: Bool) {
            self.model = model
            self.createdAt = createdAt
            self.response = response
            self.done = done
        }

        enum CodingKeys: String, CodingKey {
            case model, response, done, error
            case createdAt = "created_at"
            case doneReason = "done_reason"
            case promptEvalCount = "prompt_eval_count"
            case evalCount = "eval_count"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            model = try c.decodeIfPresent(String.self, forKey: .model) ?? ""
            createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
            response = try c.decodeIfPresent(String.self, forKey: .response) ?? ""
            done = try c.decodeIfPresent(Bool.self, forKey: .done) ?? false
            doneReason = try c.decodeIfPresent(String.self, forKey: .doneReason)
            promptEvalCount = try c.decodeIfPresent(Int.self, forKey: .promptEvalCount)
            evalCount = try c.decodeIfPresent(Int.self, forKey: .evalCount)
            error = try c.decodeIfPresent(String.self, forKey: .error)
        }
    }

    /// `POST /api/embed` request.
    public struct EmbedRequest: Codable, Sendable, Equatable {
        public var model: String
        public var input: EmbeddingInput
        public var truncate: Bool?
        public var options: Options?
        /// Output vector size, for models that can shorten theirs.
        public var dimensions: Int?
        public var keepAlive: JSONValue?

        enum CodingKeys: String, CodingKey {
            case model, input, truncate, options, dimensions
            case keepAlive = "keep_alive"
        }

        public init(model: String, input: EmbeddingInput) {
            self.model = model
            self.input = input
        }
    }

    /// `POST /api/embed` response.
    public struct EmbedResponse: Codable, Sendable, Equatable {
        public var model: String
        public var embeddings: [[Double]]
        public var promptEvalCount: Int?

        public init(model: String, embeddings: [[Double]], promptEvalCount: Int?) {
            self.model = model
            self.embeddings = embeddings
            self.promptEvalCount = promptEvalCount
        }

        enum CodingKeys: String, CodingKey {
            case model, embeddings
            case promptEvalCount = "prompt_eval_count"
        }
    }

    /// `GET /api/tags` response.
    public struct TagsResponse: Codable, Sendable, Equatable {
        public var models: [ModelTag]
        public init(models: [ModelTag]) { self.models = models }
    }

    /// One locally available model.
    public struct ModelTag: Codable, Sendable, Equatable {
        public var name: String
        public var model: String?
        public var modifiedAt: String?
        public var size: Int?
        public var digest: String?

        public init(name: String, modifiedAt: String?, size: Int?, digest: String?) {
            self.name = name
            self.model = name
            self.modifiedAt = modifiedAt
            self.size = size
            self.digest = digest
        }

        enum CodingKeys: String, CodingKey {
            case name, model, size, digest
            case modifiedAt = "modified_at"
        }
    }

    /// The error body Ollama answers with: `{"error":"..."}`.
    public struct ErrorResponse: Codable, Sendable, Equatable {
        public var error: String
        public init(error: String) { self.error = error }
    }
}
