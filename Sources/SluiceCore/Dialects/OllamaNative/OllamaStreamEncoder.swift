import NIOCore

extension OllamaChat {
    /// Canonical deltas in, `/api/chat` NDJSON lines out: the Ollama surface served from an upstream of another
    /// dialect. Ollama sends each tool call whole, with its arguments as an object, so argument fragments are held
    /// until the call's part ends and the call goes out in one line.
    public struct StreamEncoder: GenerationStreamEncoder {
        public let contentType = "application/x-ndjson"
        private let model: String
        private let createdAt: String
        private var pending: (name: String, arguments: String)?
        private var finished = false

        /// `createdAt` is the RFC 3339 time stamped on every line, as Ollama does.
        public init(model: String, createdAt: String) {
            self.model = model
            self.createdAt = createdAt
        }

        public var isFinished: Bool { finished }

        /// Appends the lines `delta` calls for.
        public mutating func write(_ delta: Generation.Delta, into out: inout ByteBuffer) {
            guard !finished else { return }
            switch delta {
            case .messageStart, .reasoningSignature:
                return
            case .text(let text):
                flushCall(into: &out)
                guard !text.isEmpty else { return }
                line(into: &out) {
                    $0.writeStaticString(#""content":"#)
                    $0.writeJSONString(text)
                }
            case .reasoning(let text):
                flushCall(into: &out)
                guard !text.isEmpty else { return }
                line(into: &out) {
                    $0.writeStaticString(#""content":"","thinking":"#)
                    $0.writeJSONString(text)
                }
            case .toolCallStart(_, _, let name):
                flushCall(into: &out)
                pending = (name, "")
            case .toolCallArguments(_, let fragment):
                pending?.arguments += fragment
            case .partStop:
                flushCall(into: &out)
            case .finish(let reason, _, let usage):
                flushCall(into: &out)
                let usage = usage ?? Generation.Usage()
                out.writeStaticString(#"{"model":"#)
                out.writeJSONString(model)
                out.writeStaticString(#","created_at":"#)
                out.writeJSONString(createdAt)
                out.writeStaticString(#","message":{"role":"assistant","content":""},"done":true,"done_reason":"#)
                out.writeJSONString(reason == .maxTokens ? "length" : "stop")
                out.writeStaticString(#","prompt_eval_count":"#)
                out.writeJSONInt(usage.promptTokens)
                out.writeStaticString(#","eval_count":"#)
                out.writeJSONInt(usage.completionTokens)
                out.writeStaticString("}\n")
                finished = true
            case .error(let error):
                var frame = ndjsonFailureFrame(for: error)
                out.writeBuffer(&frame)
                finished = true
            }
        }

        private mutating func flushCall(into out: inout ByteBuffer) {
            guard let call = pending else { return }
            pending = nil
            line(into: &out) {
                $0.writeStaticString(#""content":"","tool_calls":[{"function":{"name":"#)
                $0.writeJSONString(call.name)
                $0.writeStaticString(#","arguments":"#)
                $0.writeJSONValue(JSONValue(jsonText: call.arguments) ?? [:])
                $0.writeStaticString("}}]")
            }
        }

        private func line(into out: inout ByteBuffer, _ message: (inout ByteBuffer) -> Void) {
            out.writeStaticString(#"{"model":"#)
            out.writeJSONString(model)
            out.writeStaticString(#","created_at":"#)
            out.writeJSONString(createdAt)
            out.writeStaticString(#","message":{"role":"assistant","#)
            message(&out)
            out.writeStaticString(#"},"done":false}"#)
            out.writeStaticString("\n")
        }
    }
}
