/// The canonical conversation model every client dialect decodes into and every upstream kind is served from.
///
/// A dialect decoder (Anthropic Messages, OpenAI Responses, OpenAI chat, Ollama chat) turns its body into a
/// `Generation.Request`; an upstream encoder turns that into its own body. Answers come back as a
/// `Generation.Answer` or a stream of `Generation.Delta`s, which the client dialect's encoders write out.
/// Fields a dialect has and the model does not are kept in `extensions` bags, never dropped.
public enum Generation {}

extension Generation {
    /// The client surface a request was decoded from; extensions are only meaningful in the dialect they came from.
    public enum Dialect: String, Sendable, Hashable {
        case anthropicMessages
        case openAIResponses
        case openAIChat
        case ollamaChat

        /// Where this dialect asks for structured output, for errors that name it.
        public var responseFormatField: String {
            switch self {
            case .openAIResponses: "text.format"
            case .openAIChat: "response_format"
            case .ollamaChat: "format"
            case .anthropicMessages: "output_format"
            }
        }
    }

    /// Fields of a dialect the model does not name, keyed by their JSON path in the source body
    /// (`service_tier`, `text.verbosity`, `cache_control`), values as sent. Re-emitted only to the same dialect.
    public typealias Extensions = [String: JSONValue]

    /// One generation request: who to ask, what was said, and how to answer.
    public struct Request: Sendable, Equatable {
        /// The model name as the client sent it (before any virtual-model mapping).
        public var model: String
        /// System prompt parts, in order (Anthropic `system`, Responses `instructions`, chat `system` messages
        /// that lead the conversation). Text parts only; each may carry extensions such as `cache_control`.
        public var system: [ContentPart]
        /// The conversation after the system prompt, oldest first.
        public var messages: [Message]
        public var sampling: Sampling
        /// Tools the model may call; empty when none were offered.
        public var tools: [Tool]
        /// Nil: the dialect's default (auto when tools are offered).
        public var toolChoice: ToolChoice?
        /// Whether several tool calls may come in one turn; nil: the upstream's default.
        public var parallelToolCalls: Bool?
        public var responseFormat: ResponseFormat
        /// Nil: the client did not say, so the upstream's default applies.
        public var reasoning: ReasoningRequest?
        /// Opaque key/value metadata (Anthropic `metadata`, Responses `metadata`).
        public var metadata: [String: JSONValue]
        /// End-user id for abuse tracking (OpenAI `user`, Anthropic `metadata.user_id`).
        public var user: String?
        /// Responses `store`: whether the answer should be kept for `previous_response_id`.
        public var store: Bool?
        /// Responses `previous_response_id`: the conversation to continue; resolved by the server, not here.
        public var previousResponseID: String?
        public var stream: Bool
        /// The dialect this request was decoded from.
        public var origin: Dialect
        /// Top-level fields the model does not name, by JSON path.
        public var extensions: Extensions
        /// What the gateway tells an Ollama upstream that no client dialect says (a virtual model's or the context
        /// guard's `options.num_ctx`, `keep_alive`, `think`), as Ollama's own fields; other upstreams ignore it.
        public var ollama: [String: JSONValue] = [:]

        public init(model: String, messages: [Message], origin: Dialect) {
            self.model = model
            self.system = []
            self.messages = messages
            self.sampling = Sampling()
            self.tools = []
            self.responseFormat = .text
            self.metadata = [:]
            self.stream = false
            self.origin = origin
            self.extensions = [:]
        }

        /// The system prompt as one string, parts joined by blank lines, for upstreams that take a single string.
        public var systemText: String? {
            let texts = system.compactMap(\.text)
            return texts.isEmpty ? nil : texts.joined(separator: "\n\n")
        }
    }

    /// Sampling and length controls; nil means "not given", so the upstream's default applies.
    public struct Sampling: Sendable, Equatable {
        /// 0...2 for OpenAI, 0...1 for Anthropic.
        public var temperature: Double?
        /// Nucleus sampling mass, 0...1.
        public var topP: Double?
        /// Only the K most likely tokens (Anthropic, Ollama); OpenAI upstreams do not take it.
        public var topK: Int?
        /// Cap on generated tokens (Anthropic `max_tokens`, Responses `max_output_tokens`, chat
        /// `max_completion_tokens`/`max_tokens`, Ollama `num_predict`).
        public var maxTokens: Int?
        /// Sequences that end generation when produced; not part of the output.
        public var stopSequences: [String]
        public var seed: Int?
        public var presencePenalty: Double?
        public var frequencyPenalty: Double?

        public init(
            temperature: Double? = nil, topP: Double? = nil, topK: Int? = nil, maxTokens: Int? = nil, stopSequences: [String] = []
        ) {
            self.temperature = temperature
            self.topP = topP
            self.topK = topK
            self.maxTokens = maxTokens
            self.stopSequences = stopSequences
        }
    }

    /// A tool the model may call.
    public struct Tool: Sendable, Equatable {
        public var name: String
        public var description: String?
        /// JSON Schema of the arguments object (Anthropic `input_schema`, OpenAI `parameters`).
        public var parameters: JSONValue?
        /// OpenAI `strict`: arguments must match the schema exactly.
        public var strict: Bool?
        /// Nil for a plain function tool. Otherwise the dialect's own tool type (Anthropic `web_search_20250305`,
        /// Responses `web_search`), its full definition in `extensions["definition"]`: only the origin dialect
        /// can serve it.
        public var kind: String?
        /// Per-tool fields the model does not name (Anthropic `cache_control`).
        public var extensions: Extensions

        public init(name: String, description: String? = nil, parameters: JSONValue? = nil, strict: Bool? = nil) {
            self.name = name
            self.description = description
            self.parameters = parameters
            self.strict = strict
            self.kind = nil
            self.extensions = [:]
        }
    }

    /// Whether and which tool the model must call.
    public enum ToolChoice: Sendable, Equatable {
        /// The model decides.
        case auto
        /// The model must call some tool (Anthropic `any`, OpenAI `required`).
        case any
        /// The model must not call a tool.
        case none
        /// The model must call this tool.
        case tool(name: String)
    }

    /// The shape the answer text must take.
    public enum ResponseFormat: Sendable, Equatable {
        case text
        /// Any JSON object.
        case jsonObject
        /// JSON matching `schema`; `name` and `strict` as OpenAI takes them.
        case jsonSchema(name: String, schema: JSONValue, strict: Bool?, description: String?)
    }

    /// What the client asked of the model's reasoning ("thinking").
    public enum ReasoningRequest: Sendable, Equatable {
        /// No reasoning (Anthropic `thinking.type: disabled`, Ollama `think: false`).
        case off
        /// A qualitative effort (OpenAI `reasoning.effort`).
        case effort(Effort)
        /// A budget in tokens (Anthropic `thinking.budget_tokens`, at least 1024 there).
        case budget(tokens: Int)

        public enum Effort: String, Sendable, Equatable, CaseIterable {
            case minimal, low, medium, high
        }

        /// The budget an effort stands for, for upstreams that only take budgets. A fraction of `maxTokens` so the
        /// budget leaves room for the answer, never below Anthropic's minimum of 1024.
        public func budgetTokens(maxTokens: Int?) -> Int? {
            switch self {
            case .off: return nil
            case .budget(let tokens): return tokens
            case .effort(let effort):
                let cap = maxTokens ?? 8192
                let share: Double =
                    switch effort {
                    case .minimal: 0.1
                    case .low: 0.25
                    case .medium: 0.5
                    case .high: 0.8
                    }
                return max(1024, Int(Double(cap) * share))
            }
        }

        /// The effort a budget stands for, for upstreams that only take efforts.
        public func effort(maxTokens: Int?) -> Effort? {
            switch self {
            case .off: return nil
            case .effort(let e): return e
            case .budget(let tokens):
                let share = Double(tokens) / Double(max(1, maxTokens ?? 8192))
                return share < 0.3 ? .low : share < 0.65 ? .medium : .high
            }
        }
    }
}

extension Generation.Request {
    /// A 400 naming `field` when the tool choice names a tool the request does not offer: every upstream refuses
    /// it, so the refusal does not depend on which one the request reaches.
    public func checkToolChoice(field: String) throws(APIError) {
        guard case .tool(let name)? = toolChoice, !tools.contains(where: { $0.name == name }) else { return }
        throw .invalidValue(field, "names '\(name)', which is not in tools.")
    }
}
