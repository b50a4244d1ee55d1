import NIOCore

extension OpenAIChat {
    /// An OpenAI-compatible upstream's `chat.completion.chunk` SSE stream in, canonical deltas out.
    ///
    /// `delta.reasoning_content` / `delta.reasoning` (the fields vLLM, DeepSeek and Ollama's OpenAI endpoint use)
    /// become reasoning. The finish is held until `[DONE]`, because the usage chunk comes after the chunk with
    /// `finish_reason`.
    public struct StreamDecoder: GenerationStreamDecoder {
        private var sse = SSEDecoder()
        private var started = false
        private var knownCalls: Set<Int> = []
        private var finishReason: String?
        private var usage: Generation.Usage?
        public private(set) var isComplete = false

        public init() {}

        /// Feeds upstream bytes; appends the deltas of the events they completed.
        public mutating func decode(_ input: ByteBuffer, into deltas: inout [Generation.Delta]) throws(APIError) {
            let events = try sse.upstreamEvents(input)
            for event in events where !isComplete {
                if event.data == "[DONE]" {
                    isComplete = true
                    if !started { deltas.append(.messageStart(id: nil, model: nil, usage: nil)) }
                    deltas.append(.finish(canonicalStopReason(finishReason), stopSequence: nil, usage: usage))
                    continue
                }
                guard let chunk = JSONValue(jsonText: event.data) else { throw .malformedStream }
                if event.event == "error" || chunk["error"] != nil {
                    isComplete = true
                    let message = chunk["error"]?["message"]?.stringValue ?? "unknown error"
                    deltas.append(.error(.upstreamFailed("The upstream failed mid-stream: \(message)")))
                    continue
                }
                handle(chunk, into: &deltas)
            }
        }

        /// The upstream body ended; throws when it ended before `[DONE]`.
        public func finish(into deltas: inout [Generation.Delta]) throws(APIError) {
            if !isComplete { throw .truncatedStream }
        }

        private mutating func handle(_ chunk: JSONValue, into deltas: inout [Generation.Delta]) {
            if !started {
                started = true
                deltas.append(.messageStart(id: chunk["id"]?.stringValue, model: chunk["model"]?.stringValue, usage: nil))
            }
            if case .object(let u)? = chunk["usage"] {
                var counts = Generation.Usage(promptTokens: count(u["prompt_tokens"]), completionTokens: count(u["completion_tokens"]))
                counts.cachedPromptTokens = count(u["prompt_tokens_details"]?["cached_tokens"])
                counts.reasoningTokens = count(u["completion_tokens_details"]?["reasoning_tokens"])
                usage = counts
            }
            guard let choice = chunk["choices"]?.arrayValue?.first else { return }
            if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
            guard let delta = choice["delta"] else { return }
            if let reasoning = (delta["reasoning_content"] ?? delta["reasoning"])?.stringValue, !reasoning.isEmpty {
                deltas.append(.reasoning(reasoning))
            }
            if let text = delta["content"]?.stringValue, !text.isEmpty { deltas.append(.text(text)) }
            for call in delta["tool_calls"]?.arrayValue ?? [] {
                guard case .int(let index)? = call["index"] else { continue }
                if !knownCalls.contains(index) {
                    knownCalls.insert(index)
                    deltas.append(
                        .toolCallStart(
                            index: index, id: call["id"]?.stringValue ?? "call_\(index)", name: call["function"]?["name"]?.stringValue ?? ""))
                }
                if let fragment = call["function"]?["arguments"]?.stringValue, !fragment.isEmpty {
                    deltas.append(.toolCallArguments(index: index, fragment))
                }
            }
        }

        private func count(_ value: JSONValue?) -> Int {
            if case .int(let i)? = value { return i }
            return 0
        }
    }
}
