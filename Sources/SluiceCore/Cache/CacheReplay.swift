import Foundation
import NIOCore
import NIOFoundationCompat

/// Renders a cached answer in the format the current request asked for.
public enum CacheReplay {
    /// The whole answer as one JSON body.
    public static func body(_ g: CachedGeneration, format: AnswerFormat, model: String, identity: ResponseIdentity, createdAt: String) -> ByteBuffer {
        if let template = g.template, template.format == format, template.model == model, ReplayTemplate.isPlain(identity.id) {
            return template.render(identity)
        }
        let encoder = WireJSON.encoder()
        let value: any Encodable
        switch format {
        case .openAIChat:
            let message = ChatMessage(
                role: "assistant", content: g.toolCalls.isEmpty || !g.text.isEmpty ? .text(g.text) : nil,
                toolCalls: g.toolCalls.isEmpty ? nil : g.toolCalls, reasoningContent: g.reasoning)
            value = ChatCompletionResponse(
                id: identity.id, created: identity.created, model: model,
                choices: [.init(index: 0, message: message, finishReason: g.finishReason)], usage: g.usage)
        case .openAICompletion:
            value = CompletionResponse(
                id: identity.id, created: identity.created, model: model,
                choices: [.init(text: g.text, index: 0, finishReason: g.finishReason)], usage: g.usage)
        case .ollamaChat:
            value = ollamaChatFinal(g, model: model, createdAt: createdAt, content: g.text, includeCalls: true)
        case .ollamaGenerate:
            var r = Ollama.GenerateResponse(model: model, createdAt: createdAt, response: g.text, done: true)
            r.doneReason = g.finishReason == "length" ? "length" : "stop"
            r.promptEvalCount = g.usage?.promptTokens
            r.evalCount = g.usage?.completionTokens
            value = r
        }
        return (try? encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator())) ?? ByteBuffer()
    }

    /// The answer as a stream, one frame per original piece, ending as a live stream would.
    public static func frames(
        _ g: CachedGeneration, format: AnswerFormat, model: String, identity: ResponseIdentity, createdAt: String, includeUsage: Bool
    ) -> [ByteBuffer] {
        let encoder = WireJSON.encoder()
        var frames: [ByteBuffer] = []
        func sse(_ value: some Encodable) {
            var out = ByteBuffer()
            if let json = try? encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator()) {
                SSEEncoder.writeData(json, into: &out)
            }
            frames.append(out)
        }
        func ndjson(_ value: some Encodable) {
            guard var json = try? encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator()) else { return }
            json.writeString("\n")
            frames.append(json)
        }
        let pieces = g.pieces.isEmpty ? [""] : g.pieces
        switch format {
        case .openAIChat:
            if let reasoning = g.reasoning {
                let delta = ChatCompletionChunk.Delta(role: "assistant", reasoningContent: reasoning)
                sse(ChatCompletionChunk(id: identity.id, created: identity.created, model: model, choices: [.init(delta: delta)]))
            }
            for (i, piece) in pieces.enumerated() where i == 0 || !piece.isEmpty {
                let delta = ChatCompletionChunk.Delta(role: i == 0 ? "assistant" : nil, content: piece)
                sse(ChatCompletionChunk(id: identity.id, created: identity.created, model: model, choices: [.init(delta: delta)]))
            }
            if !g.toolCalls.isEmpty {
                let deltas = g.toolCalls.enumerated().map {
                    ChatCompletionChunk.ToolCallDelta(index: $0.offset, id: $0.element.id, type: "function", function: $0.element.function)
                }
                sse(ChatCompletionChunk(id: identity.id, created: identity.created, model: model, choices: [.init(delta: .init(toolCalls: deltas))]))
            }
            sse(ChatCompletionChunk(id: identity.id, created: identity.created, model: model, choices: [.init(delta: .init(), finishReason: g.finishReason)]))
            if includeUsage {
                sse(ChatCompletionChunk(id: identity.id, created: identity.created, model: model, choices: [], usage: g.usage ?? Usage(promptTokens: 0, completionTokens: 0)))
            }
            frames.append(ByteBuffer(string: "data: [DONE]\n\n"))
        case .openAICompletion:
            for piece in pieces where !piece.isEmpty {
                sse(CompletionResponse(id: identity.id, created: identity.created, model: model, choices: [.init(text: piece, index: 0, finishReason: nil)], usage: nil))
            }
            sse(CompletionResponse(id: identity.id, created: identity.created, model: model, choices: [.init(text: "", index: 0, finishReason: g.finishReason)], usage: nil))
            if includeUsage {
                sse(CompletionResponse(id: identity.id, created: identity.created, model: model, choices: [], usage: g.usage ?? Usage(promptTokens: 0, completionTokens: 0)))
            }
            frames.append(ByteBuffer(string: "data: [DONE]\n\n"))
        case .ollamaChat:
            if let reasoning = g.reasoning {
                ndjson(Ollama.ChatResponse(model: model, createdAt: createdAt, message: .init(role: "assistant", content: "", thinking: reasoning), done: false))
            }
            for piece in pieces where !piece.isEmpty {
                ndjson(Ollama.ChatResponse(model: model, createdAt: createdAt, message: .init(role: "assistant", content: piece), done: false))
            }
            if !g.toolCalls.isEmpty {
                ndjson(Ollama.ChatResponse(model: model, createdAt: createdAt, message: .init(role: "assistant", content: "", toolCalls: ollamaCalls(g)), done: false))
            }
            ndjson(ollamaChatFinal(g, model: model, createdAt: createdAt, content: "", includeCalls: false))
        case .ollamaGenerate:
            for piece in pieces where !piece.isEmpty {
                ndjson(Ollama.GenerateResponse(model: model, createdAt: createdAt, response: piece, done: false))
            }
            var final = Ollama.GenerateResponse(model: model, createdAt: createdAt, response: "", done: true)
            final.doneReason = g.finishReason == "length" ? "length" : "stop"
            final.promptEvalCount = g.usage?.promptTokens
            final.evalCount = g.usage?.completionTokens
            ndjson(final)
        }
        return frames
    }

    /// Renders the parts of an OpenAI body that are the same on every replay; nil for formats without a template.
    ///
    /// With sorted keys the body is `{"choices":…,"created":N,"id":"…","model":…,"object":…,"usage":…}`: only
    /// `created` and `id` change, and both sit between the choices and the model.
    public static func template(_ g: CachedGeneration, format: AnswerFormat, model: String) -> ReplayTemplate? {
        let encoder = WireJSON.encoder()
        let choices: Data
        let object: String
        do {
            switch format {
            case .openAIChat:
                let message = ChatMessage(
                    role: "assistant", content: g.toolCalls.isEmpty || !g.text.isEmpty ? .text(g.text) : nil,
                    toolCalls: g.toolCalls.isEmpty ? nil : g.toolCalls, reasoningContent: g.reasoning)
                choices = try encoder.encode([ChatCompletionResponse.Choice(index: 0, message: message, finishReason: g.finishReason)])
                object = "chat.completion"
            case .openAICompletion:
                choices = try encoder.encode([CompletionResponse.Choice(text: g.text, index: 0, finishReason: g.finishReason)])
                object = "text_completion"
            case .ollamaChat, .ollamaGenerate:
                return nil
            }
            var head = Array(#"{"choices":"#.utf8)
            head += choices
            head += #","created":"#.utf8
            var tail = Array(#"","model":"#.utf8)
            tail += try encoder.encode(model)
            tail += #","object":"#.utf8
            tail += try encoder.encode(object)
            if let usage = g.usage {
                tail += #","usage":"#.utf8
                tail += try encoder.encode(usage)
            }
            tail.append(UInt8(ascii: "}"))
            return ReplayTemplate(format: format, model: model, head: head, tail: tail)
        } catch {
            return nil
        }
    }

    static func ollamaCalls(_ g: CachedGeneration) -> [Ollama.ToolCall] {
        g.toolCalls.map { call in
            let arguments = (try? JSONDecoder().decode(JSONValue.self, from: Data(call.function.arguments.utf8))) ?? .object([:])
            return Ollama.ToolCall(function: .init(name: call.function.name, arguments: arguments))
        }
    }

    static func ollamaChatFinal(_ g: CachedGeneration, model: String, createdAt: String, content: String, includeCalls: Bool) -> Ollama.ChatResponse {
        let calls = includeCalls && !g.toolCalls.isEmpty ? ollamaCalls(g) : nil
        var r = Ollama.ChatResponse(
            model: model, createdAt: createdAt,
            message: .init(role: "assistant", content: content, toolCalls: calls, thinking: includeCalls ? g.reasoning : nil), done: true)
        r.doneReason = g.finishReason == "length" ? "length" : "stop"
        r.promptEvalCount = g.usage?.promptTokens
        r.evalCount = g.usage?.completionTokens
        return r
    }
}

/// A whole-body OpenAI replay with everything but the response id and creation time already encoded.
public struct ReplayTemplate: Sendable, Equatable {
    let format: AnswerFormat
    let model: String
    /// `{"choices":[…],"created":`
    let head: [UInt8]
    /// `","model":…,"object":…,"usage":{…}}`, closing the id's string first.
    let tail: [UInt8]

    /// Whether an id can be written into JSON as it is.
    static func isPlain(_ id: String) -> Bool {
        id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"):
                true
            default: false
            }
        }
    }

    func render(_ identity: ResponseIdentity) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(head.count + tail.count + identity.id.utf8.count + 32)
        buffer.writeBytes(head)
        buffer.writeString(String(identity.created))
        buffer.writeString(#","id":""#)
        buffer.writeString(identity.id)
        buffer.writeBytes(tail)
        return buffer
    }
}
