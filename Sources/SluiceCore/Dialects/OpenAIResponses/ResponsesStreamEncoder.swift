import NIOCore

extension OpenAIResponses {
    /// Canonical deltas in, the Responses API's semantic SSE events out
    /// (https://platform.openai.com/docs/api-reference/responses-streaming), each framed `event: NAME\ndata: JSON\n\n`
    /// and numbered by `sequence_number` from 0:
    ///
    /// `response.created`, `response.in_progress`; per output item `response.output_item.added`, then for a message
    /// `response.content_part.added`, `response.output_text.delta`*, `response.output_text.done`,
    /// `response.content_part.done`; for a function call `response.function_call_arguments.delta`* and `.done`; for
    /// reasoning `response.reasoning_summary_part.added`, `response.reasoning_summary_text.delta`*, `.done`,
    /// `response.reasoning_summary_part.done`; then `response.output_item.done`. The stream ends with
    /// `response.completed`, `response.incomplete` (token cap or content filter) or `response.failed`.
    ///
    /// Items open and close here whatever order deltas come in, as in the Anthropic encoder. Their text is kept
    /// until the item is done, since the `.done` events and the final response repeat it in full.
    public struct StreamEncoder: GenerationStreamEncoder {
        public let contentType = "text/event-stream"
        private let header: ResponseHeader
        private var sequence = 0
        private var started = false
        private var finished = false
        private var items: [OutputItem] = []
        /// Whether the last item in `items` is still open.
        private var lastOpen = false
        /// The open item's text (message text, reasoning summary or call arguments) so far, appended in place and
        /// stored into the item when it closes: rebuilding the item's string per delta would copy it every time.
        private var openText = ""
        /// Tool-call index → output index.
        private var calls: [Int: Int] = [:]
        private var startUsage: Generation.Usage?

        /// `id` becomes the response id (`resp_` added when missing); `createdAt` is Unix seconds.
        public init(id: String, model: String, createdAt: Int) {
            header = ResponseHeader(id: prefixed(id, "resp_"), model: model, createdAt: createdAt)
        }

        /// True once a terminal event was written: nothing more will be.
        public var isFinished: Bool { finished }

        /// Appends the events `delta` calls for.
        public mutating func write(_ delta: Generation.Delta, into out: inout ByteBuffer) {
            guard !finished else { return }
            switch delta {
            case .messageStart(_, _, let usage):
                startUsage = usage
                start(into: &out)
            case .text(let text):
                guard !text.isEmpty else { return }
                start(into: &out)
                let index = openMessage(into: &out)
                openText += text
                Self.event("response.output_text.delta", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","content_index":0,"delta":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString(#","logprobs":[]"#)
                }
            case .reasoning(let text):
                guard !text.isEmpty else { return }
                start(into: &out)
                let index = openReasoning(into: &out)
                openText += text
                Self.event("response.reasoning_summary_text.delta", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","summary_index":0,"delta":"#)
                    $0.writeJSONString(text)
                }
            case .reasoningSignature(let signature):
                // Carried as the item's `encrypted_content`; the Responses stream has no event of its own for it.
                start(into: &out)
                let index = openReasoning(into: &out)
                if case .reasoning(let text, let previous) = items[index].kind {
                    items[index].kind = .reasoning(text: text, encrypted: (previous ?? "") + signature)
                }
            case .toolCallStart(let call, let callID, let name):
                start(into: &out)
                guard calls[call] == nil else { return }
                openCall(call, callID: callID, name: name, into: &out)
            case .toolCallArguments(let call, let fragment):
                start(into: &out)
                if calls[call] == nil { openCall(call, callID: header.itemID("call_", call), name: "", into: &out) }
                guard let index = calls[call], lastOpen, index == items.count - 1, !fragment.isEmpty else { return }
                openText += fragment
                Self.event("response.function_call_arguments.delta", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","delta":"#)
                    $0.writeJSONString(fragment)
                }
            case .partStop:
                close(into: &out)
            case .finish(let reason, _, let usage):
                start(into: &out)
                close(into: &out)
                let status = OpenAIResponses.status(reason)
                let incomplete = reason == .maxTokens || reason == .contentFilter
                let name: StaticString = incomplete ? "response.incomplete" : "response.completed"
                let usage = usage ?? startUsage ?? Generation.Usage()
                Self.event(name, next(), into: &out) {
                    $0.writeStaticString(#","response":"#)
                    writeResponse(header, status: status, stopReason: reason, items: items, usage: usage, error: nil, into: &$0)
                }
                finished = true
            case .error(let error):
                start(into: &out)
                storeOpenText()
                Self.event("response.failed", next(), into: &out) {
                    $0.writeStaticString(#","response":"#)
                    writeResponse(header, status: "failed", stopReason: nil, items: items, usage: startUsage, error: error, into: &$0)
                }
                finished = true
            }
        }

        /// The bytes that end this stream after a failure the deltas did not carry (a timeout, a dropped upstream).
        public mutating func fail(_ error: APIError, into out: inout ByteBuffer) {
            write(.error(error), into: &out)
        }

        private mutating func next() -> Int {
            defer { sequence += 1 }
            return sequence
        }

        /// `event: NAME\ndata: {"type":"NAME","sequence_number":N` + what `body` writes + `}`.
        private static func event(_ name: StaticString, _ number: Int, into out: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
            out.writeSSEEvent(name) {
                $0.writeStaticString(#"{"type":""#)
                $0.writeStaticString(name)
                $0.writeStaticString(#"","sequence_number":"#)
                $0.writeJSONInt(number)
                body(&$0)
                $0.writeStaticString("}")
            }
        }

        private func writeItemRef(_ index: Int, into out: inout ByteBuffer) {
            out.writeStaticString(#","item_id":"#)
            out.writeJSONString(items[index].id)
            out.writeStaticString(#","output_index":"#)
            out.writeJSONInt(index)
        }

        private mutating func start(into out: inout ByteBuffer) {
            guard !started else { return }
            started = true
            for name: StaticString in ["response.created", "response.in_progress"] {
                Self.event(name, next(), into: &out) {
                    $0.writeStaticString(#","response":"#)
                    writeResponse(header, status: "in_progress", stopReason: nil, items: [], usage: nil, error: nil, into: &$0)
                }
            }
        }

        private mutating func add(_ item: OutputItem, into out: inout ByteBuffer) -> Int {
            close(into: &out)
            items.append(item)
            lastOpen = true
            openText = ""
            let index = items.count - 1
            Self.event("response.output_item.added", next(), into: &out) {
                $0.writeStaticString(#","output_index":"#)
                $0.writeJSONInt(index)
                $0.writeStaticString(#","item":"#)
                writeItem(item, status: "in_progress", inProgress: true, into: &$0)
            }
            return index
        }

        private mutating func openMessage(into out: inout ByteBuffer) -> Int {
            if lastOpen, case .message = items[items.count - 1].kind { return items.count - 1 }
            let index = add(OutputItem(id: header.itemID("msg_", items.count), kind: .message(text: "")), into: &out)
            Self.event("response.content_part.added", next(), into: &out) {
                writeItemRef(index, into: &$0)
                $0.writeStaticString(#","content_index":0,"part":{"type":"output_text","annotations":[],"text":""}"#)
            }
            return index
        }

        private mutating func openReasoning(into out: inout ByteBuffer) -> Int {
            if lastOpen, case .reasoning = items[items.count - 1].kind { return items.count - 1 }
            let index = add(OutputItem(id: header.itemID("rs_", items.count), kind: .reasoning(text: "", encrypted: nil)), into: &out)
            Self.event("response.reasoning_summary_part.added", next(), into: &out) {
                writeItemRef(index, into: &$0)
                $0.writeStaticString(#","summary_index":0,"part":{"type":"summary_text","text":""}"#)
            }
            return index
        }

        private mutating func openCall(_ call: Int, callID: String, name: String, into out: inout ByteBuffer) {
            let item = OutputItem(
                id: header.itemID("fc_", items.count), kind: .functionCall(callID: prefixed(callID, "call_"), name: name, arguments: ""))
            calls[call] = add(item, into: &out)
        }

        private mutating func storeOpenText() {
            guard lastOpen else { return }
            let index = items.count - 1
            switch items[index].kind {
            case .message: items[index].kind = .message(text: openText)
            case .reasoning(_, let encrypted): items[index].kind = .reasoning(text: openText, encrypted: encrypted)
            case .functionCall(let callID, let name, _): items[index].kind = .functionCall(callID: callID, name: name, arguments: openText)
            }
        }

        private mutating func close(into out: inout ByteBuffer) {
            guard lastOpen else { return }
            storeOpenText()
            lastOpen = false
            let index = items.count - 1
            let item = items[index]
            switch item.kind {
            case .message(let text):
                Self.event("response.output_text.done", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","content_index":0,"text":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString(#","logprobs":[]"#)
                }
                Self.event("response.content_part.done", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","content_index":0,"part":{"type":"output_text","annotations":[],"text":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString("}")
                }
            case .functionCall(_, _, let arguments):
                Self.event("response.function_call_arguments.done", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","arguments":"#)
                    $0.writeJSONString(arguments)
                }
            case .reasoning(let text, _):
                Self.event("response.reasoning_summary_text.done", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","summary_index":0,"text":"#)
                    $0.writeJSONString(text)
                }
                Self.event("response.reasoning_summary_part.done", next(), into: &out) {
                    writeItemRef(index, into: &$0)
                    $0.writeStaticString(#","summary_index":0,"part":{"type":"summary_text","text":"#)
                    $0.writeJSONString(text)
                    $0.writeStaticString("}")
                }
            }
            Self.event("response.output_item.done", next(), into: &out) {
                $0.writeStaticString(#","output_index":"#)
                $0.writeJSONInt(index)
                $0.writeStaticString(#","item":"#)
                writeItem(item, status: "completed", into: &$0)
            }
        }
    }
}
