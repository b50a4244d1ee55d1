extension Generation {
    /// A complete (non-streamed) answer from an upstream.
    public struct Answer: Sendable, Equatable {
        /// The upstream's id, or one the gateway made; dialect encoders add their prefix (`msg_`, `resp_`) when missing.
        public var id: String
        public var model: String
        /// Text, reasoning and tool-call parts in the order the model produced them.
        public var content: [ContentPart]
        public var stopReason: StopReason
        /// The stop sequence that ended generation, when `stopReason` is `.stopSequence` and the upstream said which.
        public var stopSequence: String?
        public var usage: Usage

        public init(
            id: String, model: String, content: [ContentPart], stopReason: StopReason, stopSequence: String? = nil,
            usage: Usage = Usage()
        ) {
            self.id = id
            self.model = model
            self.content = content
            self.stopReason = stopReason
            self.stopSequence = stopSequence
            self.usage = usage
        }

        /// All text parts joined.
        public var text: String { content.compactMap(\.text).joined() }

        /// The tool calls, in order.
        public var toolCalls: [ToolCall] {
            content.compactMap { if case .toolCall(let call) = $0 { call } else { nil } }
        }
    }

    /// Why generation ended.
    public enum StopReason: Sendable, Equatable {
        /// The model finished its turn (Anthropic `end_turn`, OpenAI `stop`, Ollama `stop`).
        case endTurn
        /// The token cap was hit (Anthropic `max_tokens`, OpenAI `length`).
        case maxTokens
        /// A stop sequence was produced (Anthropic `stop_sequence`; OpenAI reports it as `stop`).
        case stopSequence
        /// The model called tools and waits for their results (Anthropic `tool_use`, OpenAI `tool_calls`).
        case toolUse
        /// Output was withheld by a content filter (OpenAI `content_filter`, Anthropic `refusal`).
        case contentFilter
        /// The upstream failed while generating.
        case error
        /// A reason this model does not know, as the upstream spelled it (Anthropic `pause_turn`).
        case other(String)
    }

    /// Token counts of one exchange. Zero where the upstream did not say.
    public struct Usage: Sendable, Equatable {
        /// All input tokens, cached ones included (OpenAI's `prompt_tokens` convention; Anthropic's `input_tokens`
        /// excludes cache reads and writes, so its decoder adds them).
        public var promptTokens: Int
        /// Generated tokens, reasoning included.
        public var completionTokens: Int
        /// Input tokens read from the upstream's prompt cache (Anthropic `cache_read_input_tokens`, OpenAI
        /// `cached_tokens`); part of `promptTokens`.
        public var cachedPromptTokens: Int
        /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`); part of `promptTokens`.
        public var cacheCreationTokens: Int
        /// Tokens of reasoning (OpenAI `reasoning_tokens`); part of `completionTokens`.
        public var reasoningTokens: Int

        public init(
            promptTokens: Int = 0, completionTokens: Int = 0, cachedPromptTokens: Int = 0, cacheCreationTokens: Int = 0,
            reasoningTokens: Int = 0
        ) {
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
            self.cachedPromptTokens = cachedPromptTokens
            self.cacheCreationTokens = cacheCreationTokens
            self.reasoningTokens = reasoningTokens
        }

        /// Input tokens neither read from nor written to the cache: Anthropic's `input_tokens`.
        public var uncachedPromptTokens: Int { max(0, promptTokens - cachedPromptTokens - cacheCreationTokens) }

        /// The accounting view the gateway records.
        public var openAI: SluiceCore.Usage {
            SluiceCore.Usage(
                promptTokens: promptTokens, completionTokens: completionTokens, cachedTokens: cachedPromptTokens,
                cacheWriteTokens: cacheCreationTokens, reasoningTokens: reasoningTokens)
        }
    }
}
