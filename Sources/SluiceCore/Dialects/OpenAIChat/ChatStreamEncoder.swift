import NIOCore

extension OpenAIChat {
    /// Canonical deltas in, `chat.completion.chunk` SSE events out, ending in `data: [DONE]`: the chat surface
    /// served from an upstream of another dialect.
    ///
    /// Chunks have the key order `WireJSON` writes (sorted), so they read like the gateway's other chat streams.
    /// Reasoning goes out as `delta.reasoning_content` (DeepSeek, vLLM) and `delta.reasoning` (Ollama's own `/v1`).
    public struct StreamEncoder: GenerationStreamEncoder {
        public let contentType = "text/event-stream"
        private let identity: ResponseIdentity
        private let model: String
        private let includeUsage: Bool
        private var started = false
        private var finished = false
        /// Canonical tool-call index → the index this stream gave it (calls are numbered in order of appearance).
        private var calls: [Int: Int] = [:]

        public init(model: String, identity: ResponseIdentity, includeUsage: Bool) {
            self.model = model
            self.identity = identity
            self.includeUsage = includeUsage
        }

        public var isFinished: Bool { finished }

        /// Appends the chunks `delta` calls for.
        public mutating func write(_ delta: Generation.Delta, into out: inout ByteBuffer) {
            guard !finished else { return }
            switch delta {
            case .messageStart:
                return
            case .text(let text):
                guard !text.isEmpty else { return }
                let role = takeRole()
                chunk(into: &out) {
                    $0.writeStaticString(#"{"content":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString(role ? #","role":"assistant"}"# : "}")
                }
            case .reasoning(let text):
                guard !text.isEmpty else { return }
                let role = takeRole()
                // Both names, as ``ChatMessage`` writes them: `reasoning_content` (DeepSeek, vLLM) and `reasoning` (Ollama's /v1).
                chunk(into: &out) {
                    $0.writeStaticString(#"{"reasoning":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString(#","reasoning_content":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString(role ? #","role":"assistant"}"# : "}")
                }
            case .reasoningSignature, .partStop:
                return
            case .toolCallStart(let call, let callID, let name):
                start(into: &out)
                guard calls[call] == nil else { return }
                let index = calls.count
                calls[call] = index
                chunk(into: &out) {
                    $0.writeStaticString(#"{"tool_calls":[{"function":{"arguments":"","name":"#)
                    $0.writeJSONString(name)
                    $0.writeStaticString(#"},"id":"#)
                    $0.writeJSONString(callID)
                    $0.writeStaticString(#","index":"#)
                    $0.writeJSONInt(index)
                    $0.writeStaticString(#","type":"function"}]}"#)
                }
            case .toolCallArguments(let call, let fragment):
                guard !fragment.isEmpty else { return }
                start(into: &out)
                if calls[call] == nil { write(.toolCallStart(index: call, id: "call_\(call)", name: ""), into: &out) }
                let index = calls[call]!
                chunk(into: &out) {
                    $0.writeStaticString(#"{"tool_calls":[{"function":{"arguments":"#)
                    $0.writeJSONString(fragment)
                    $0.writeStaticString(#"},"index":"#)
                    $0.writeJSONInt(index)
                    $0.writeStaticString("}]}")
                }
            case .finish(let reason, _, let usage):
                start(into: &out)
                let finish = calls.isEmpty || reason != .endTurn ? finishReason(reason) : "tool_calls"
                chunk(into: &out, finishReason: finish) { $0.writeStaticString("{}") }
                if includeUsage {
                    let usage = usage ?? Generation.Usage()
                    out.writeStaticString(#"data: {"choices":[],"#)
                    writeTail(into: &out)
                    out.writeStaticString(#","usage":{"completion_tokens":"#)
                    out.writeJSONInt(usage.completionTokens)
                    // The details only where there is something to say, as ``Usage`` encodes them.
                    if usage.reasoningTokens > 0 {
                        out.writeStaticString(#","completion_tokens_details":{"reasoning_tokens":"#)
                        out.writeJSONInt(usage.reasoningTokens)
                        out.writeStaticString("}")
                    }
                    out.writeStaticString(#","prompt_tokens":"#)
                    out.writeJSONInt(usage.promptTokens)
                    if usage.cachedPromptTokens > 0 {
                        out.writeStaticString(#","prompt_tokens_details":{"cached_tokens":"#)
                        out.writeJSONInt(usage.cachedPromptTokens)
                        out.writeStaticString("}")
                    }
                    out.writeStaticString(#","total_tokens":"#)
                    out.writeJSONInt(usage.promptTokens + usage.completionTokens)
                    out.writeStaticString("}}\n\n")
                }
                SSEEncoder.writeDone(into: &out)
                finished = true
            case .error(let error):
                var frame = sseFailureFrame(for: error)
                out.writeBuffer(&frame)
                finished = true
            }
        }

        /// The role rides on the first chunk that says something, as the gateway's other chat streams and its cache
        /// replay write it, so a replayed stream is the same chunks as the original.
        private mutating func takeRole() -> Bool {
            guard !started else { return false }
            started = true
            return true
        }

        /// Before a chunk that cannot carry the role (tool calls, the finish): an empty content chunk carries it.
        private mutating func start(into out: inout ByteBuffer) {
            guard takeRole() else { return }
            chunk(into: &out) { $0.writeStaticString(#"{"content":"","role":"assistant"}"#) }
        }

        /// `data: {"choices":[{"delta":<delta>,"finish_reason":…,"index":0}],"created":…,"id":…,"model":…,"object":…}`.
        private func chunk(into out: inout ByteBuffer, finishReason: String? = nil, _ delta: (inout ByteBuffer) -> Void) {
            out.writeStaticString(#"data: {"choices":[{"delta":"#)
            delta(&out)
            out.writeStaticString(#","finish_reason":"#)
            out.writeJSONStringOrNull(finishReason)
            out.writeStaticString(#","index":0}],"#)
            writeTail(into: &out)
            out.writeStaticString("}\n\n")
        }

        private func writeTail(into out: inout ByteBuffer) {
            out.writeStaticString(#""created":"#)
            out.writeJSONInt(identity.created)
            out.writeStaticString(#","id":"#)
            out.writeJSONString(identity.id)
            out.writeStaticString(#","model":"#)
            out.writeJSONString(model)
            out.writeStaticString(#","object":"chat.completion.chunk""#)
        }
    }
}
