import NIOCore

extension AnthropicMessages {
    /// Canonical deltas in, Anthropic's named SSE events out
    /// (https://docs.anthropic.com/en/docs/build-with-claude/streaming):
    /// `message_start`, `ping`, then per content block `content_block_start` / `content_block_delta`* /
    /// `content_block_stop`, then `message_delta` and `message_stop`.
    ///
    /// Blocks are opened and closed here, whatever order deltas come in: a delta of another kind than the open
    /// block closes it first, so every `content_block_delta` names a started, unstopped block, and indexes count
    /// up from 0 without gaps. Arguments for a tool call whose block already closed cannot be sent any more and
    /// are dropped (upstreams stream one call at a time, so this does not happen in practice).
    public struct StreamEncoder: GenerationStreamEncoder {
        public let contentType = "text/event-stream"
        private let id: String
        private let model: String
        private var started = false
        private var finished = false
        private var open: OpenBlock?
        private var nextIndex = 0
        /// Tool-call index → block index, for calls whose block is open or was.
        private var toolBlocks: [Int: Int] = [:]
        private var promptUsage: Generation.Usage?

        private enum OpenBlock: Equatable {
            case text(Int)
            case thinking(Int)
            case toolUse(Int, call: Int)

            var index: Int {
                switch self {
                case .text(let i), .thinking(let i), .toolUse(let i, _): i
                }
            }
        }

        /// `id` becomes the message id (`msg_` added when missing); `model` is what the client asked for.
        public init(id: String, model: String) {
            self.id = prefixed(id, "msg_")
            self.model = model
        }

        /// True once `message_stop` or an `error` event was written: nothing more will be.
        public var isFinished: Bool { finished }

        /// Appends the events `delta` calls for.
        public mutating func write(_ delta: Generation.Delta, into out: inout ByteBuffer) {
            guard !finished else { return }
            switch delta {
            case .messageStart(_, _, let usage):
                promptUsage = usage
                start(into: &out)
            case .text(let text):
                guard !text.isEmpty else { return }
                start(into: &out)
                let index = openText(into: &out)
                out.writeSSEEvent("content_block_delta") {
                    $0.writeStaticString(#"{"type":"content_block_delta","index":"#)
                    $0.writeJSONInt(index)
                    $0.writeStaticString(#","delta":{"type":"text_delta","text":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString("}}")
                }
            case .reasoning(let text):
                guard !text.isEmpty else { return }
                start(into: &out)
                let index = openThinking(into: &out)
                out.writeSSEEvent("content_block_delta") {
                    $0.writeStaticString(#"{"type":"content_block_delta","index":"#)
                    $0.writeJSONInt(index)
                    $0.writeStaticString(#","delta":{"type":"thinking_delta","thinking":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString("}}")
                }
            case .reasoningSignature(let signature):
                start(into: &out)
                let index = openThinking(into: &out)
                out.writeSSEEvent("content_block_delta") {
                    $0.writeStaticString(#"{"type":"content_block_delta","index":"#)
                    $0.writeJSONInt(index)
                    $0.writeStaticString(#","delta":{"type":"signature_delta","signature":"#)
                    $0.writeJSONString(signature)
                    $0.writeStaticString("}}")
                }
            case .toolCallStart(let call, let callID, let name):
                start(into: &out)
                guard toolBlocks[call] == nil else { return }
                openToolUse(call: call, id: callID, name: name, into: &out)
            case .toolCallArguments(let call, let fragment):
                start(into: &out)
                if toolBlocks[call] == nil {
                    // Arguments before their start: open the block with what is known.
                    openToolUse(call: call, id: "\(id.dropFirst(4))_\(call)", name: "", into: &out)
                }
                guard case .toolUse(let index, call)? = open, !fragment.isEmpty else { return }
                out.writeSSEEvent("content_block_delta") {
                    $0.writeStaticString(#"{"type":"content_block_delta","index":"#)
                    $0.writeJSONInt(index)
                    $0.writeStaticString(#","delta":{"type":"input_json_delta","partial_json":"#)
                    $0.writeJSONString(fragment)
                    $0.writeStaticString("}}")
                }
            case .partStop:
                close(into: &out)
            case .finish(let reason, let stopSequence, let usage):
                start(into: &out)
                close(into: &out)
                let usage = usage ?? promptUsage ?? Generation.Usage()
                out.writeSSEEvent("message_delta") {
                    $0.writeStaticString(#"{"type":"message_delta","delta":{"stop_reason":"#)
                    $0.writeJSONString(stopReason(reason))
                    $0.writeStaticString(#","stop_sequence":"#)
                    $0.writeJSONStringOrNull(reason == .stopSequence ? stopSequence : nil)
                    $0.writeStaticString(#"},"usage":"#)
                    writeUsage(usage, into: &$0)
                    $0.writeStaticString("}")
                }
                out.writeSSEEvent("message_stop") { $0.writeStaticString(#"{"type":"message_stop"}"#) }
                finished = true
            case .error(let error):
                writeErrorEvent(error, into: &out)
                finished = true
            }
        }

        /// The bytes that end this stream after a failure the deltas did not carry (a timeout, a dropped upstream).
        public mutating func fail(_ error: APIError, into out: inout ByteBuffer) {
            write(.error(error), into: &out)
        }

        /// A keep-alive `ping` event, for long silences.
        public func writePing(into out: inout ByteBuffer) {
            out.writeSSEEvent("ping") { $0.writeStaticString(#"{"type":"ping"}"#) }
        }

        private mutating func start(into out: inout ByteBuffer) {
            guard !started else { return }
            started = true
            let usage = promptUsage ?? Generation.Usage()
            out.writeSSEEvent("message_start") {
                $0.writeStaticString(#"{"type":"message_start","message":{"id":"#)
                $0.writeJSONString(id)
                $0.writeStaticString(#","type":"message","role":"assistant","model":"#)
                $0.writeJSONString(model)
                $0.writeStaticString(#","content":[],"stop_reason":null,"stop_sequence":null,"usage":"#)
                writeUsage(usage, into: &$0)
                $0.writeStaticString("}}")
            }
            writePing(into: &out)
        }

        private mutating func openText(into out: inout ByteBuffer) -> Int {
            if case .text(let index)? = open { return index }
            close(into: &out)
            let index = take()
            open = .text(index)
            out.writeSSEEvent("content_block_start") {
                $0.writeStaticString(#"{"type":"content_block_start","index":"#)
                $0.writeJSONInt(index)
                $0.writeStaticString(#","content_block":{"type":"text","text":""}}"#)
            }
            return index
        }

        private mutating func openThinking(into out: inout ByteBuffer) -> Int {
            if case .thinking(let index)? = open { return index }
            close(into: &out)
            let index = take()
            open = .thinking(index)
            out.writeSSEEvent("content_block_start") {
                $0.writeStaticString(#"{"type":"content_block_start","index":"#)
                $0.writeJSONInt(index)
                $0.writeStaticString(#","content_block":{"type":"thinking","thinking":"","signature":""}}"#)
            }
            return index
        }

        private mutating func openToolUse(call: Int, id callID: String, name: String, into out: inout ByteBuffer) {
            close(into: &out)
            let index = take()
            open = .toolUse(index, call: call)
            toolBlocks[call] = index
            out.writeSSEEvent("content_block_start") {
                $0.writeStaticString(#"{"type":"content_block_start","index":"#)
                $0.writeJSONInt(index)
                $0.writeStaticString(#","content_block":{"type":"tool_use","id":"#)
                $0.writeJSONString(toolUseID(callID))
                $0.writeStaticString(#","name":"#)
                $0.writeJSONString(name)
                $0.writeStaticString(#","input":{}}}"#)
            }
        }

        private mutating func close(into out: inout ByteBuffer) {
            guard let block = open else { return }
            open = nil
            out.writeSSEEvent("content_block_stop") {
                $0.writeStaticString(#"{"type":"content_block_stop","index":"#)
                $0.writeJSONInt(block.index)
                $0.writeStaticString("}")
            }
        }

        private mutating func take() -> Int {
            defer { nextIndex += 1 }
            return nextIndex
        }
    }
}
