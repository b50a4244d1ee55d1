import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import SluiceCore
import Synchronization

/// Options of `sluice mock-upstream`.
public struct MockUpstreamOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 11434
    /// Delay before each answer starts.
    public var latencyMs = 0
    /// Pace of streamed chunks; 0 sends them as fast as possible.
    public var tokensPerSecond = 0.0
    /// When set, every generating request answers this HTTP status (a failing upstream, for routing tests).
    public var failStatus: Int?
    /// Models listed and served; nil keeps `MockBehaviour.models`.
    public var models: [String]?

    public init() {}
}

/// Counters the tests read through `GET /mock/stats`.
final class MockStats: Sendable {
    struct Values: Sendable {
        var requests: [String: Int] = [:]
        var streamsStarted = 0
        var streamsCompleted = 0
        var streamsCancelled = 0
    }

    let values = Mutex(Values())

    func count(_ path: String) { values.withLock { $0.requests[path, default: 0] += 1 } }
    func update(_ body: (inout Values) -> Void) { values.withLock { body(&$0) } }

    var json: JSONValue {
        values.withLock { v in
            [
                "requests": .object(v.requests.mapValues { .int($0) }),
                "streams_started": .int(v.streamsStarted), "streams_completed": .int(v.streamsCompleted),
                "streams_cancelled": .int(v.streamsCancelled),
            ]
        }
    }
}

/// The thrown error that makes Hummingbird drop a connection mid-answer.
struct MockConnectionDrop: Error {}

/// Builds the fake Ollama + OpenAI server.
public func buildMockUpstream(options: MockUpstreamOptions, logger: Logger) -> some ApplicationProtocol {
    let mock = MockServer(options: options)
    let router = Router()
    router.add(middleware: MockCountingMiddleware(stats: mock.stats, failStatus: options.failStatus))
    mock.addRoutes(to: router)
    return Application(
        router: router,
        configuration: .init(address: .hostname(options.host, port: options.port), serverName: "sluice-mock-upstream"),
        logger: logger)
}

/// The routes that generate; probes (`/api/version`, model lists) keep answering, like a sick but reachable server.
let mockGeneratingPaths: Set<String> = [
    "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
]

struct MockCountingMiddleware<Context: RequestContext>: RouterMiddleware {
    let stats: MockStats
    let failStatus: Int?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if !request.uri.path.hasPrefix("/mock/") { stats.count(request.uri.path) }
        if let failStatus, mockGeneratingPaths.contains(request.uri.path) {
            return Response(
                status: .init(code: failStatus), headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"error":"mock fail-status"}"#)))
        }
        return try await next(request, context)
    }
}

struct MockServer: Sendable {
    let options: MockUpstreamOptions
    let stats = MockStats()

    static let encoder = WireJSON.encoder()

    var models: [String] { options.models ?? MockBehaviour.models }

    /// The canonical name of a served model, accepting names without `:latest`.
    func resolve(_ model: String) -> String? {
        models.first { $0 == model || $0 == model + ":latest" }
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("mock/stats") { _, _ in try json(stats.json) }
        router.post("mock/reset") { _, _ in
            stats.update { $0 = .init() }
            return try json(["ok": true] as JSONValue)
        }
        router.get("api/version") { _, _ in try json(["version": "0.9.0-sluice-mock"] as JSONValue) }
        router.get("api/tags") { _, _ in
            try json(
                Ollama.TagsResponse(
                    models: models.map {
                        Ollama.ModelTag(name: $0, modifiedAt: "2026-01-01T00:00:00Z", size: 1_000_000, digest: String(repeating: "0", count: 64))
                    }))
        }
        router.get("api/ps") { _, _ in try json(["models": .array([])] as JSONValue) }
        router.post("api/show") { request, context in
            let body = try await request.decode(as: JSONValue.self, context: context)
            guard let model = body["model"]?.stringValue ?? body["name"]?.stringValue, let name = resolve(model) else {
                return try ollamaNotFound(body["model"]?.stringValue ?? "")
            }
            let show: JSONValue = [
                "modelfile": .string("FROM \(name)"), "parameters": "", "template": "{{ .Prompt }}",
                "details": ["format": "gguf", "family": "mock", "parameter_size": "1B", "quantization_level": "Q4_0"],
                "model_info": ["general.architecture": "mock"], "capabilities": ["completion", "tools"],
                "modified_at": "2026-01-01T00:00:00Z",
            ]
            return try json(show)
        }
        router.post("api/chat") { request, context in try await ollamaChat(request, context: context) }
        router.post("api/generate") { request, context in try await ollamaGenerate(request, context: context) }
        router.post("api/embed") { request, context in
            let body = try await request.decode(as: Ollama.EmbedRequest.self, context: context)
            guard resolve(body.model) != nil else { return try ollamaNotFound(body.model) }
            try await delayFirstByte()
            return try json(
                Ollama.EmbedResponse(
                    model: body.model, embeddings: body.input.values.map(MockBehaviour.embedding),
                    promptEvalCount: MockBehaviour.tokenCount(body.input.values)))
        }
        router.post("api/embeddings") { request, context in
            let body = try await request.decode(as: JSONValue.self, context: context)
            let model = body["model"]?.stringValue ?? ""
            guard resolve(model) != nil else { return try ollamaNotFound(model) }
            let vector = MockBehaviour.embedding(of: body["prompt"]?.stringValue ?? "").map { JSONValue.double($0) }
            return try json(["embedding": .array(vector)] as JSONValue)
        }
        router.get("v1/models") { _, _ in
            try json(ModelList(data: models.map { Model(id: $0, created: 1_767_225_600, ownedBy: "mock") }))
        }
        router.post("v1/chat/completions") { request, context in try await openAIChat(request, context: context) }
        router.post("v1/completions") { request, context in try await openAICompletion(request, context: context) }
        router.post("v1/embeddings") { request, context in
            let body = try await request.decode(as: EmbeddingsRequest.self, context: context)
            guard resolve(body.model) != nil else { return try openAINotFound(body.model) }
            try await delayFirstByte()
            return try json(
                EmbeddingsResponse(
                    data: body.input.values.enumerated().map {
                        .init(index: $0.offset, embedding: .init(MockBehaviour.embedding(of: $0.element), encodingFormat: body.encodingFormat))
                    },
                    model: body.model, usage: .init(promptTokens: MockBehaviour.tokenCount(body.input.values))))
        }
    }

    // MARK: Ollama

    func ollamaChat(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let body = try await request.decode(as: Ollama.ChatRequest.self, context: context)
        guard resolve(body.model) != nil else { return try ollamaNotFound(body.model) }
        let lastUser = body.messages.last { $0.role == "user" }?.content ?? ""
        let triggers = MockBehaviour.Triggers(lastUser)
        if triggers.error { return try failure() }
        try await delayFirstByte()
        let promptTokens = MockBehaviour.tokenCount(body.messages.map(\.content))
        let isJSON = body.format != nil
        let text = isJSON ? MockBehaviour.jsonReply : MockBehaviour.replyText(to: lastUser)
        let toolCall = MockBehaviour.toolCall(for: body.tools ?? [])
        let pieces = toolCall == nil ? (isJSON ? [text] : MockBehaviour.pieces(of: text)) : []
        let created = "2026-01-01T00:00:00Z"
        func final(_ message: Ollama.Message) -> Ollama.ChatResponse {
            var r = Ollama.ChatResponse(model: body.model, createdAt: created, message: message, done: true)
            r.doneReason = "stop"
            r.promptEvalCount = promptTokens
            r.evalCount = toolCall == nil ? max(1, pieces.count) : 1
            r.totalDuration = 1_000_000
            return r
        }
        let toolCalls = toolCall.map { [Ollama.ToolCall(function: .init(name: $0.name, arguments: $0.arguments))] }
        guard body.isStreaming else {
            if triggers.die { return dropConnection() }
            return try json(final(Ollama.Message(role: "assistant", content: toolCall == nil ? text : "", toolCalls: toolCalls)))
        }
        var lines = pieces.map {
            Ollama.ChatResponse(model: body.model, createdAt: created, message: .init(role: "assistant", content: $0), done: false)
        }
        if let toolCalls {
            lines.append(Ollama.ChatResponse(model: body.model, createdAt: created, message: .init(role: "assistant", content: "", toolCalls: toolCalls), done: false))
        }
        let frames = try lines.map(ndjson) + [ndjson(final(Ollama.Message(role: "assistant", content: "")))]
        return stream(frames, contentType: "application/x-ndjson", triggers: triggers)
    }

    func ollamaGenerate(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let body = try await request.decode(as: Ollama.GenerateRequest.self, context: context)
        guard resolve(body.model) != nil else { return try ollamaNotFound(body.model) }
        let triggers = MockBehaviour.Triggers(body.prompt)
        if triggers.error { return try failure() }
        try await delayFirstByte()
        let text = body.format != nil ? MockBehaviour.jsonReply : MockBehaviour.replyText(to: body.prompt)
        let pieces = MockBehaviour.pieces(of: text)
        let created = "2026-01-01T00:00:00Z"
        var final = Ollama.GenerateResponse(model: body.model, createdAt: created, response: "", done: true)
        final.doneReason = "stop"
        final.promptEvalCount = MockBehaviour.tokenCount([body.prompt])
        final.evalCount = pieces.count
        guard body.isStreaming else {
            if triggers.die { return dropConnection() }
            final.response = text
            return try json(final)
        }
        let frames = try pieces.map { try ndjson(Ollama.GenerateResponse(model: body.model, createdAt: created, response: $0, done: false)) }
            + [ndjson(final)]
        return stream(frames, contentType: "application/x-ndjson", triggers: triggers)
    }

    // MARK: OpenAI

    func openAIChat(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let body = try await request.decode(as: ChatCompletionRequest.self, context: context)
        guard resolve(body.model) != nil else { return try openAINotFound(body.model) }
        let lastUser = body.messages.last { $0.role == "user" }?.content?.text ?? ""
        let triggers = MockBehaviour.Triggers(lastUser)
        if triggers.error { return try failure() }
        try await delayFirstByte()
        let isJSON = body.responseFormat.map { $0.type != "text" } ?? false
        let text = isJSON ? MockBehaviour.jsonReply : MockBehaviour.replyText(to: lastUser)
        let toolCall = MockBehaviour.toolCall(for: body.tools ?? []).map {
            ToolCall(id: "call_mock_0", name: $0.name, arguments: String(decoding: try! Self.encoder.encode($0.arguments), as: UTF8.self))
        }
        let pieces = toolCall == nil ? (isJSON ? [text] : MockBehaviour.pieces(of: text)) : []
        let usage = Usage(promptTokens: MockBehaviour.tokenCount(body.messages.map { $0.content?.text ?? "" }), completionTokens: max(1, pieces.count))
        let id = "chatcmpl-mock"
        let created = 1_767_225_600
        let finish = toolCall == nil ? "stop" : "tool_calls"
        guard body.isStreaming else {
            if triggers.die { return dropConnection() }
            let message = ChatMessage(role: "assistant", content: toolCall == nil ? .text(text) : nil, toolCalls: toolCall.map { [$0] })
            return try json(ChatCompletionResponse(id: id, created: created, model: body.model, choices: [.init(index: 0, message: message, finishReason: finish)], usage: usage))
        }
        var chunks: [ChatCompletionChunk] = [.init(id: id, created: created, model: body.model, choices: [.init(delta: .init(role: "assistant", content: ""))])]
        chunks += pieces.map { .init(id: id, created: created, model: body.model, choices: [.init(delta: .init(content: $0))]) }
        if let toolCall {
            chunks.append(.init(id: id, created: created, model: body.model, choices: [.init(delta: .init(toolCalls: [.init(index: 0, id: toolCall.id, type: "function", function: toolCall.function)]))]))
        }
        chunks.append(.init(id: id, created: created, model: body.model, choices: [.init(delta: .init(), finishReason: finish)]))
        if body.includeUsage { chunks.append(.init(id: id, created: created, model: body.model, choices: [], usage: usage)) }
        return stream(try chunks.map(sse) + [ByteBuffer(string: "data: [DONE]\n\n")], contentType: "text/event-stream", triggers: triggers)
    }

    func openAICompletion(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let body = try await request.decode(as: CompletionRequest.self, context: context)
        guard resolve(body.model) != nil else { return try openAINotFound(body.model) }
        let prompt = body.prompt.values.first ?? ""
        let triggers = MockBehaviour.Triggers(prompt)
        if triggers.error { return try failure() }
        try await delayFirstByte()
        let text = MockBehaviour.replyText(to: prompt)
        let pieces = MockBehaviour.pieces(of: text)
        let usage = Usage(promptTokens: MockBehaviour.tokenCount([prompt]), completionTokens: pieces.count)
        let id = "cmpl-mock"
        let created = 1_767_225_600
        guard body.isStreaming else {
            if triggers.die { return dropConnection() }
            return try json(CompletionResponse(id: id, created: created, model: body.model, choices: [.init(text: text, index: 0, finishReason: "stop")], usage: usage))
        }
        var chunks = pieces.map { CompletionResponse(id: id, created: created, model: body.model, choices: [.init(text: $0, index: 0, finishReason: nil)], usage: nil) }
        chunks.append(CompletionResponse(id: id, created: created, model: body.model, choices: [.init(text: "", index: 0, finishReason: "stop")], usage: nil))
        if body.includeUsage { chunks.append(CompletionResponse(id: id, created: created, model: body.model, choices: [], usage: usage)) }
        return stream(try chunks.map(sse) + [ByteBuffer(string: "data: [DONE]\n\n")], contentType: "text/event-stream", triggers: triggers)
    }

    // MARK: Helpers

    func delayFirstByte() async throws {
        if options.latencyMs > 0 { try await Task.sleep(for: .milliseconds(options.latencyMs)) }
    }

    func stream(_ frames: [ByteBuffer], contentType: String, triggers: MockBehaviour.Triggers) -> Response {
        let gap: Duration? =
            triggers.slow ? .milliseconds(100) : options.tokensPerSecond > 0 ? .microseconds(Int64(1_000_000 / options.tokensPerSecond)) : nil
        let stats = self.stats
        stats.update { $0.streamsStarted += 1 }
        let frames = triggers.flood && frames.count > 1 ? Array(repeating: frames.dropLast(), count: 500).flatMap { $0 } + [frames.last!] : frames
        return Response(status: .ok, headers: [.contentType: contentType], body: .init { writer in
            do {
                for (i, frame) in frames.enumerated() {
                    if triggers.die, i == 3 { throw MockConnectionDrop() }
                    if i > 0, let gap { try await Task.sleep(for: gap) }
                    try await writer.write(frame)
                }
                try await writer.finish(nil)
                stats.update { $0.streamsCompleted += 1 }
            } catch is MockConnectionDrop {
                throw MockConnectionDrop()
            } catch {
                stats.update { $0.streamsCancelled += 1 }
                throw error
            }
        })
    }

    func dropConnection() -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init { _ in throw MockConnectionDrop() })
    }

    func json(_ value: some Encodable) throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: try Self.encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator())))
    }

    func ndjson(_ value: some Encodable) throws -> ByteBuffer {
        var buffer = try Self.encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator())
        buffer.writeString("\n")
        return buffer
    }

    func sse(_ value: some Encodable) throws -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        var json = try Self.encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator())
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }

    func failure() throws -> Response {
        var response = try json(Ollama.ErrorResponse(error: "mock failure"))
        response.status = .internalServerError
        return response
    }

    func ollamaNotFound(_ model: String) throws -> Response {
        var response = try json(Ollama.ErrorResponse(error: "model \"\(model)\" not found, try pulling it first"))
        response.status = .notFound
        return response
    }

    func openAINotFound(_ model: String) throws -> Response {
        var response = try json(APIError.modelNotFound(model).body)
        response.status = .notFound
        return response
    }
}
