import Foundation
import NIOCore
import NIOFoundationCompat

/// A cached answer in a delivery-neutral form, so a streamed request can replay an entry a plain one made, and back.
public enum CachedAnswer: Sendable, Equatable {
    case generation(CachedGeneration)
    /// Answers that never stream (embeddings), kept as the bytes that were sent.
    case raw([UInt8])
    /// An answer of the canonical model (Anthropic Messages, Responses), re-encoded for each replay, streamed or not.
    case canonical(Generation.Answer)

    /// Approximate memory held, for the cache's byte bound.
    public var cost: Int {
        switch self {
        case .generation(let g): g.cost
        case .raw(let bytes): bytes.count + 64
        case .canonical(let answer): answer.approximateBytes
        }
    }

    public var usage: Usage? {
        switch self {
        case .generation(let g): g.usage
        case .canonical(let answer): answer.usage.openAI
        case .raw: nil
        }
    }
}

/// The content of one generated answer: its text in the pieces it streamed in, tool calls, finish reason and usage.
public struct CachedGeneration: Sendable, Equatable {
    public var pieces: [String]
    public var toolCalls: [ToolCall]
    public var finishReason: String
    public var usage: Usage?
    /// The model's reasoning before its answer (Ollama `thinking`, OpenAI `reasoning_content`), replayed with it.
    public var reasoning: String?
    /// The unchanging bytes of a whole-body OpenAI replay, rendered once when the answer is stored.
    public var template: ReplayTemplate?

    public init(pieces: [String], toolCalls: [ToolCall] = [], finishReason: String, usage: Usage?, reasoning: String? = nil) {
        self.pieces = pieces
        self.toolCalls = toolCalls
        self.finishReason = finishReason
        self.usage = usage
        self.reasoning = reasoning
    }

    /// The same answer with its replay template rendered for `format` and `model`, ready to be stored.
    public func withTemplate(format: AnswerFormat, model: String) -> CachedGeneration {
        var copy = self
        copy.template = CacheReplay.template(self, format: format, model: model)
        return copy
    }

    public var text: String { pieces.joined() }

    var cost: Int {
        // Strings plus a fixed allowance for the array and struct overhead of each piece.
        128 + (reasoning?.utf8.count ?? 0) + (template.map { $0.head.count + $0.tail.count + 64 } ?? 0)
            + pieces.reduce(0) { $0 + $1.utf8.count + 32 }
            + toolCalls.reduce(0) { $0 + $1.id.utf8.count + $1.function.name.utf8.count + $1.function.arguments.utf8.count + 64 }
    }
}

/// The delivery formats an answer can be collected from and replayed in.
public enum AnswerFormat: Sendable {
    case openAIChat
    case openAICompletion
    case ollamaChat
    case ollamaGenerate
}

/// Watches the bytes sent to a client and rebuilds the answer they carry, for caching.
///
/// Only a stream that ended properly (`[DONE]` or `done: true`) yields an answer: truncated streams are never cached.
public struct AnswerCollector: Sendable {
    public let format: AnswerFormat
    public let streaming: Bool
    private var lines = LineSplitter()
    private var sse = SSEDecoder()
    private var pieces: [String] = []
    private var reasoning = ""
    private var toolCalls: [Int: ToolCall] = [:]
    private var finishReason: String?
    private var usage: Usage?
    private var complete = false
    private var failed = false
    private var body = ByteBuffer()

    public init(format: AnswerFormat, streaming: Bool) {
        self.format = format
        self.streaming = streaming
    }

    public mutating func observe(_ bytes: ByteBuffer) {
        guard !failed else { return }
        guard streaming else {
            var bytes = bytes
            body.writeBuffer(&bytes)
            return
        }
        switch format {
        case .openAIChat, .openAICompletion:
            guard let events = try? sse.feed(bytes) else { return fail() }
            for event in events {
                if event.event == "error" { return fail() }
                if event.data == "[DONE]" {
                    complete = true
                    continue
                }
                observeOpenAIChunk(Data(event.data.utf8))
            }
        case .ollamaChat, .ollamaGenerate:
            lines.append(bytes)
            while let line = try? lines.nextLine() {
                observeOllamaLine(line)
            }
        }
    }

    /// The collected answer, or nil when the answer was incomplete, failed or could not be read.
    public mutating func answer() -> CachedGeneration? {
        guard !failed else { return nil }
        if !streaming {
            switch format {
            case .openAIChat:
                guard let r = try? JSONDecoder().decode(ChatCompletionResponse.self, from: body), r.choices.count == 1 else { return nil }
                let choice = r.choices[0]
                return CachedGeneration(
                    pieces: [choice.message.content?.text ?? ""], toolCalls: choice.message.toolCalls ?? [],
                    finishReason: choice.finishReason ?? "stop", usage: r.usage, reasoning: choice.message.reasoningContent)
            case .openAICompletion:
                guard let r = try? JSONDecoder().decode(CompletionResponse.self, from: body), r.choices.count == 1 else { return nil }
                return CachedGeneration(pieces: [r.choices[0].text], finishReason: r.choices[0].finishReason ?? "stop", usage: r.usage)
            case .ollamaChat, .ollamaGenerate:
                observeOllamaLine(body)
            }
        } else if let rest = lines.remainder() {
            observeOllamaLine(rest)
        }
        guard complete else { return nil }
        let calls = toolCalls.keys.sorted().compactMap { toolCalls[$0] }
        return CachedGeneration(
            pieces: pieces, toolCalls: calls, finishReason: finishReason ?? "stop", usage: usage, reasoning: reasoning.isEmpty ? nil : reasoning)
    }

    private mutating func fail() { failed = true }

    private struct OpenAIChunk: Decodable {
        struct Choice: Decodable {
            var text: String?
            var delta: ChatCompletionChunk.Delta?
            var finishReason: String?
            enum CodingKeys: String, CodingKey {
                case text, delta
                case finishReason = "finish_reason"
            }
        }
        var choices: [Choice]?
        var usage: Usage?
        var error: JSONValue?
    }

    private mutating func observeOpenAIChunk(_ data: Data) {
        guard let chunk = try? JSONDecoder().decode(OpenAIChunk.self, from: data), chunk.error == nil else { return fail() }
        if let u = chunk.usage { usage = u }
        guard let choices = chunk.choices else { return }
        if choices.count > 1 { return fail() }
        guard let choice = choices.first else { return }
        if let text = choice.text, !text.isEmpty { pieces.append(text) }
        if let content = choice.delta?.content, !content.isEmpty { pieces.append(content) }
        if let thought = choice.delta?.reasoningContent { reasoning += thought }
        for call in choice.delta?.toolCalls ?? [] {
            var merged = toolCalls[call.index] ?? ToolCall(id: call.id ?? "", name: "", arguments: "")
            if let id = call.id { merged.id = id }
            if let f = call.function {
                merged.function.name += f.name
                merged.function.arguments += f.arguments
            }
            toolCalls[call.index] = merged
        }
        if let reason = choice.finishReason { finishReason = reason }
    }

    private struct OllamaLine: Decodable {
        var message: Ollama.Message?
        var response: String?
        var done: Bool?
        var doneReason: String?
        var promptEvalCount: Int?
        var evalCount: Int?
        var error: String?
        enum CodingKeys: String, CodingKey {
            case message, response, done, error
            case doneReason = "done_reason"
            case promptEvalCount = "prompt_eval_count"
            case evalCount = "eval_count"
        }
    }

    private mutating func observeOllamaLine(_ line: ByteBuffer) {
        guard line.readableBytesView.contains(where: { $0 != 0x20 }) else { return }
        guard let parsed = try? JSONDecoder().decode(OllamaLine.self, from: line), parsed.error == nil else { return fail() }
        if let text = parsed.message?.content ?? parsed.response, !text.isEmpty { pieces.append(text) }
        if let thought = parsed.message?.thinking { reasoning += thought }
        for call in parsed.message?.toolCalls ?? [] {
            let i = toolCalls.count
            toolCalls[i] = ToolCall(
                id: "call_\(i)", name: call.function.name, arguments: OllamaChat.encodeArguments(call.function.arguments))
        }
        if parsed.done == true {
            complete = true
            finishReason = OllamaResponseTranslation.finishReason(parsed.doneReason, hasToolCalls: !toolCalls.isEmpty)
            usage = OllamaResponseTranslation.usage(prompt: parsed.promptEvalCount, completion: parsed.evalCount)
        }
    }
}
