import Foundation
import NIOCore
import NIOFoundationCompat

extension OllamaChat {
    /// An Ollama `/api/chat` NDJSON stream in, canonical deltas out: `message.thinking` as reasoning,
    /// `message.content` as text, each of `message.tool_calls` (sent whole, never in fragments) as a call start,
    /// its arguments and a part stop, and the `done` line as the finish with Ollama's counts.
    public struct StreamDecoder: GenerationStreamDecoder {
        private let identity: ResponseIdentity
        private var lines = LineSplitter()
        private var started = false
        private var toolCount = 0
        public private(set) var isComplete = false

        /// `identity` names the tool calls (`call_<id suffix>_<n>`), as the chat translator does.
        public init(identity: ResponseIdentity) {
            self.identity = identity
        }

        /// Feeds upstream bytes; appends the deltas of the lines they completed.
        public mutating func decode(_ input: ByteBuffer, into deltas: inout [Generation.Delta]) throws(APIError) {
            lines.append(input)
            while true {
                let line: ByteBuffer?
                do {
                    line = try lines.nextLine()
                } catch {
                    throw .malformedStream
                }
                guard let line else { return }
                try handle(line, into: &deltas)
            }
        }

        /// The upstream body ended: handles a last line without a newline, and throws when there was no `done` line.
        public mutating func finish(into deltas: inout [Generation.Delta]) throws(APIError) {
            if let rest = lines.remainder() { try handle(rest, into: &deltas) }
            if !isComplete { throw .truncatedStream }
        }

        private mutating func handle(_ line: ByteBuffer, into deltas: inout [Generation.Delta]) throws(APIError) {
            guard !isComplete, line.readableBytesView.contains(where: { $0 != 0x20 && $0 != 0x09 }) else { return }
            let response: Ollama.ChatResponse
            do {
                response = try JSONDecoder().decode(Ollama.ChatResponse.self, from: line)
            } catch {
                throw .malformedStream
            }
            if let message = response.error {
                isComplete = true
                deltas.append(.error(.upstreamFailed("The upstream failed mid-stream: \(message)")))
                return
            }
            if !started {
                started = true
                deltas.append(.messageStart(id: identity.id, model: response.model.isEmpty ? nil : response.model, usage: nil))
            }
            if let thinking = response.message?.thinking, !thinking.isEmpty { deltas.append(.reasoning(thinking)) }
            if let content = response.message?.content, !content.isEmpty { deltas.append(.text(content)) }
            for call in response.message?.toolCalls ?? [] {
                let index = toolCount
                toolCount += 1
                deltas.append(.toolCallStart(index: index, id: OllamaResponseTranslation.toolCallID(identity, index), name: call.function.name))
                deltas.append(.toolCallArguments(index: index, encodeArguments(call.function.arguments)))
                deltas.append(.partStop)
            }
            guard response.done else { return }
            isComplete = true
            deltas.append(
                .finish(
                    stopReason(response.doneReason, hasToolCalls: toolCount > 0), stopSequence: nil,
                    usage: Generation.Usage(promptTokens: response.promptEvalCount ?? 0, completionTokens: response.evalCount ?? 0)))
        }
    }
}
