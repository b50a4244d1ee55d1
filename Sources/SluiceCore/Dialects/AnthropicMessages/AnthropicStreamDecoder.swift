import NIOCore

extension AnthropicMessages {
    /// An Anthropic upstream's SSE stream in, canonical deltas out.
    ///
    /// Bytes may be split anywhere, a multi-byte character included: `SSEDecoder` frames on newline bytes and only
    /// complete lines become text. Unknown event types are skipped, as Anthropic's versioning policy asks.
    public struct StreamDecoder: GenerationStreamDecoder {
        private var sse = SSEDecoder()
        /// Block index → tool-call index, for routing `input_json_delta`s.
        private var toolCalls: [Int: Int] = [:]
        private var toolCount = 0
        private var usage: Generation.Usage?
        private var stopReason: String?
        private var stopSequence: String?
        public private(set) var isComplete = false

        public init() {}

        /// Feeds upstream bytes; appends the deltas they completed.
        public mutating func decode(_ input: ByteBuffer, into deltas: inout [Generation.Delta]) throws(APIError) {
            let events = try sse.upstreamEvents(input)
            for event in events where !isComplete {
                try handle(event, into: &deltas)
            }
        }

        /// The upstream body ended; throws when it ended before `message_stop`.
        public func finish(into deltas: inout [Generation.Delta]) throws(APIError) {
            if !isComplete { throw .truncatedStream }
        }

        private mutating func handle(_ event: ServerSentEvent, into deltas: inout [Generation.Delta]) throws(APIError) {
            guard let value = JSONValue(jsonText: event.data), let fields = try? JSONFields(value, path: "") else {
                throw .malformedStream
            }
            do {
                try handle(type: try fields.string("type") ?? event.event ?? "", fields, into: &deltas)
            } catch {
                throw .malformedStream
            }
        }

        private mutating func handle(type: String, _ fields: JSONFields, into deltas: inout [Generation.Delta]) throws(APIError) {
            switch type {
            case "message_start":
                guard let message = try fields.object("message") else { throw .malformedStream }
                usage = try AnthropicMessages.usage(message.object("usage"))
                deltas.append(.messageStart(id: try message.string("id"), model: try message.string("model"), usage: usage))
            case "content_block_start":
                let index = try fields.int("index") ?? 0
                guard let block = try fields.object("content_block") else { throw .malformedStream }
                switch try block.string("type") {
                case "text":
                    if let text = try block.string("text"), !text.isEmpty { deltas.append(.text(text)) }
                case "thinking":
                    if let text = try block.string("thinking"), !text.isEmpty { deltas.append(.reasoning(text)) }
                case "tool_use":
                    toolCalls[index] = toolCount
                    deltas.append(.toolCallStart(index: toolCount, id: try block.requiredString("id"), name: try block.requiredString("name")))
                    if case .object(let input)? = block["input"], !input.isEmpty {
                        deltas.append(.toolCallArguments(index: toolCount, JSONValue.object(input).jsonText))
                    }
                    toolCount += 1
                default:
                    break
                }
            case "content_block_delta":
                let index = try fields.int("index") ?? 0
                guard let delta = try fields.object("delta") else { throw .malformedStream }
                switch try delta.string("type") {
                case "text_delta": deltas.append(.text(try delta.requiredString("text")))
                case "thinking_delta": deltas.append(.reasoning(try delta.requiredString("thinking")))
                case "signature_delta": deltas.append(.reasoningSignature(try delta.requiredString("signature")))
                case "input_json_delta":
                    guard let call = toolCalls[index] else { throw .malformedStream }
                    let fragment = try delta.requiredString("partial_json")
                    if !fragment.isEmpty { deltas.append(.toolCallArguments(index: call, fragment)) }
                default:
                    break
                }
            case "content_block_stop":
                deltas.append(.partStop)
            case "message_delta":
                if let delta = try fields.object("delta") {
                    stopReason = try delta.string("stop_reason") ?? stopReason
                    stopSequence = try delta.string("stop_sequence") ?? stopSequence
                }
                if let final = try fields.object("usage") {
                    var merged = usage ?? Generation.Usage()
                    merged.completionTokens = try final.int("output_tokens") ?? merged.completionTokens
                    if final["input_tokens"] != nil || final["cache_read_input_tokens"] != nil {
                        let read = try final.int("cache_read_input_tokens") ?? merged.cachedPromptTokens
                        let created = try final.int("cache_creation_input_tokens") ?? merged.cacheCreationTokens
                        let input = try final.int("input_tokens") ?? merged.uncachedPromptTokens
                        merged.promptTokens = input + read + created
                        merged.cachedPromptTokens = read
                        merged.cacheCreationTokens = created
                    }
                    usage = merged
                }
            case "message_stop":
                isComplete = true
                deltas.append(.finish(canonicalStopReason(stopReason), stopSequence: stopSequence, usage: usage))
            case "error":
                isComplete = true
                let error = try fields.object("error")
                let message = try error?.string("message") ?? "unknown error"
                var failure = APIError.upstreamFailed("The upstream failed mid-stream: \(message)")
                if try error?.string("type") == "overloaded_error" { failure.status = 503 }
                deltas.append(.error(failure))
            default:
                // `ping` and event types added after this was written.
                break
            }
        }
    }
}
