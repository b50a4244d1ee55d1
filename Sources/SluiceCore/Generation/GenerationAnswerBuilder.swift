extension Generation {
    /// Rebuilds a complete answer from the deltas of a stream, so a streamed answer can be cached and replayed
    /// in any dialect, streamed or not.
    ///
    /// Text and reasoning deltas that follow each other join one part; tool calls are kept by index. Only a stream
    /// that reached `finish` yields an answer: a truncated one is never cached.
    public struct AnswerBuilder: Sendable {
        private var id: String?
        private var model: String?
        private var content: [ContentPart] = []
        private var callPositions: [Int: Int] = [:]
        private var finished: (StopReason, String?, Usage?)?
        private var startUsage: Usage?
        private var failed = false

        public init() {}

        public mutating func observe(_ delta: Delta) {
            switch delta {
            case .messageStart(let id, let model, let usage):
                self.id = id
                self.model = model
                startUsage = usage
            case .text(let text):
                if case .text(var last)? = content.last {
                    last.text += text
                    content[content.count - 1] = .text(last)
                } else {
                    content.append(.text(text))
                }
            case .reasoning(let text):
                if case .reasoning(var last)? = content.last {
                    last.text += text
                    content[content.count - 1] = .reasoning(last)
                } else {
                    content.append(.reasoning(Reasoning(text: text)))
                }
            case .reasoningSignature(let signature):
                if let index = content.lastIndex(where: { if case .reasoning = $0 { true } else { false } }),
                    case .reasoning(var reasoning) = content[index]
                {
                    reasoning.signature = signature
                    content[index] = .reasoning(reasoning)
                }
            case .toolCallStart(let index, let id, let name):
                callPositions[index] = content.count
                content.append(.toolCall(ToolCall(id: id, name: name, arguments: "")))
            case .toolCallArguments(let index, let text):
                guard let position = callPositions[index], case .toolCall(var call) = content[position] else { return }
                call.arguments += text
                content[position] = .toolCall(call)
            case .partStop:
                break
            case .finish(let reason, let stopSequence, let usage):
                finished = (reason, stopSequence, usage)
            case .error:
                failed = true
            }
        }

        /// The answer, once the stream finished cleanly; nil before that or after a failure.
        public var answer: Answer? {
            guard !failed, let (reason, stopSequence, usage) = finished else { return nil }
            return Answer(
                id: id ?? "", model: model ?? "", content: content, stopReason: reason, stopSequence: stopSequence,
                usage: usage ?? startUsage ?? Usage())
        }
    }
}

extension Generation.Answer {
    /// The answer as the deltas of a stream, for replaying a cached answer to a streaming client.
    public var deltas: [Generation.Delta] {
        var out: [Generation.Delta] = [.messageStart(id: id, model: model, usage: usage)]
        var callIndex = 0
        for part in content {
            switch part {
            case .text(let text): out.append(.text(text.text))
            case .reasoning(let reasoning):
                out.append(.reasoning(reasoning.text))
                if let signature = reasoning.signature { out.append(.reasoningSignature(signature)) }
            case .toolCall(let call):
                out.append(.toolCallStart(index: callIndex, id: call.id, name: call.name))
                out.append(.toolCallArguments(index: callIndex, call.arguments))
                callIndex += 1
            case .image, .toolResult:
                continue
            }
            out.append(.partStop)
        }
        out.append(.finish(stopReason, stopSequence: stopSequence, usage: usage))
        return out
    }
}

extension Generation.Answer {
    /// Approximate memory held, for the cache's byte bound: the strings plus a fixed allowance per part.
    public var approximateBytes: Int {
        content.reduce(256 + id.utf8.count + model.utf8.count) { total, part in
            switch part {
            case .text(let text): total + text.text.utf8.count + 64
            case .reasoning(let reasoning): total + reasoning.text.utf8.count + (reasoning.signature?.utf8.count ?? 0) + 64
            case .toolCall(let call): total + call.id.utf8.count + call.name.utf8.count + call.arguments.utf8.count + 64
            case .image, .toolResult: total + 64
            }
        }
    }
}
