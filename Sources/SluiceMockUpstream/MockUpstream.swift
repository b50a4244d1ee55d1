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
    /// When set, the Anthropic routes answer 401 unless `x-api-key` carries this key; nil accepts any key or none.
    public var anthropicAPIKey: String?
    /// Models loaded at start, reported by `/api/ps`.
    public var loaded: [String] = []
    /// Time to load a model that is not loaded.
    public var loadMs = 0
    /// Models held at once (0: no bound); loading another unloads the least recently used.
    public var maxLoaded = 0
    /// The context length `/api/ps` and `/api/show` report (0: none).
    public var contextLength = 0
    /// Time to process each earlier chat message not in the prompt cache.
    public var promptCacheMissMs = 0
    /// Answer `/api/ps` 404, as a server that does not say what it has loaded (benchmark baselines).
    public var hideLoaded = false

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

/// The last requests the mock received, for tests that check what the gateway sent (`GET /mock/requests`).
final class MockRecorder: Sendable {
    struct Entry: Sendable {
        var path: String
        var headers: [String: String]
        /// Kept raw and parsed only when read, so recording costs the benchmarks next to nothing.
        var body: ByteBuffer
    }

    static let capacity = 50
    /// The headers recorded; credentials only as "set".
    static let headers: [(name: HTTPField.Name, secret: Bool)] = [
        (HTTPField.Name("anthropic-version")!, false), (HTTPField.Name("anthropic-beta")!, false),
        (HTTPField.Name("x-api-key")!, true), (.authorization, true), (.contentType, false),
    ]

    let entries = Mutex<[Entry]>([])

    func record(path: String, headers: HTTPFields, body: ByteBuffer) {
        var recorded: [String: String] = [:]
        for (name, secret) in Self.headers {
            let values = headers[values: name]
            if !values.isEmpty { recorded[name.canonicalName] = secret ? "set" : values.joined(separator: ", ") }
        }
        let entry = Entry(path: path, headers: recorded, body: body)
        entries.withLock {
            $0.append(entry)
            if $0.count > Self.capacity { $0.removeFirst($0.count - Self.capacity) }
        }
    }

    func reset() { entries.withLock { $0.removeAll() } }

    /// Oldest first: `[{"path", "headers", "body"}]`, the body parsed as JSON or null.
    var json: JSONValue {
        .array(
            entries.withLock { $0 }.map { entry in
                let body = entry.body.readableBytes == 0 ? nil : try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: entry.body))
                return ["path": .string(entry.path), "headers": .object(entry.headers.mapValues(JSONValue.string)), "body": body ?? .null]
            })
    }
}

/// The thrown error that makes Hummingbird drop a connection mid-answer.
struct MockConnectionDrop: Error {}

/// Builds the fake Ollama + OpenAI + Anthropic Messages server.
public func buildMockUpstream(options: MockUpstreamOptions, logger: Logger) -> some ApplicationProtocol {
    let mock = MockServer(options: options)
    let router = Router()
    router.add(middleware: MockCountingMiddleware(stats: mock.stats, recorder: mock.recorder, failStatus: options.failStatus))
    mock.addRoutes(to: router)
    return Application(
        router: router,
        configuration: .init(address: .hostname(options.host, port: options.port), serverName: "sluice-mock-upstream"),
        logger: logger)
}

/// The routes that generate; probes (`/api/version`, model lists) keep answering, like a sick but reachable server.
let mockGeneratingPaths: Set<String> = [
    "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
    "/v1/messages",
]

struct MockCountingMiddleware<Context: RequestContext>: RouterMiddleware {
    let stats: MockStats
    let recorder: MockRecorder
    let failStatus: Int?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var request = request
        if !request.uri.path.hasPrefix("/mock/") {
            stats.count(request.uri.path)
            // Collecting keeps the body in the request, so the handler still reads it. The gateway's polls of what is
            // loaded are not recorded: they would push what tests look for out of the bounded log.
            let body = try await request.collectBody(upTo: .max)
            if request.uri.path != "/api/ps" { recorder.record(path: request.uri.path, headers: request.headers, body: body) }
        }
        if let failStatus, mockGeneratingPaths.contains(request.uri.path) {
            if request.uri.path.hasPrefix("/v1/messages") { return MockServer.anthropicError(status: failStatus, message: "mock fail-status") }
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
    let recorder = MockRecorder()
    let residency: MockResidency

    init(options: MockUpstreamOptions) {
        self.options = options
        self.residency = MockResidency(
            settings: .init(
                loaded: options.loaded, loadMs: options.loadMs, maxLoaded: options.maxLoaded, contextLength: options.contextLength,
                promptCacheMissMs: options.promptCacheMissMs))
    }

    static let encoder = WireJSON.encoder()

    var models: [String] { options.models ?? MockBehaviour.models }

    /// The canonical name of a served model, accepting names without `:latest`.
    func resolve(_ model: String) -> String? {
        models.first { $0 == model || $0 == model + ":latest" }
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("mock/stats") { _, _ in
            guard case .object(var members) = stats.json, case .object(let more) = residency.statsJSON else { return try json(stats.json) }
            members.merge(more) { a, _ in a }
            return try json(JSONValue.object(members))
        }
        router.get("mock/requests") { _, _ in try json(recorder.json) }
        router.post("mock/reset") { _, _ in
            stats.update { $0 = .init() }
            residency.resetCounters()
            recorder.reset()
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
        router.get("api/ps") { _, _ in
            guard !options.hideLoaded else { throw HTTPError(.notFound) }
            return try json(residency.psJSON)
        }
        router.post("api/show") { request, context in
            let body = try await request.decode(as: JSONValue.self, context: context)
            guard let model = body["model"]?.stringValue ?? body["name"]?.stringValue, let name = resolve(model) else {
                return try ollamaNotFound(body["model"]?.stringValue ?? "")
            }
            let show: JSONValue = [
                "modelfile": .string("FROM \(name)"), "parameters": "", "template": "{{ .Prompt }}",
                "details": ["format": "gguf", "family": "mock", "parameter_size": "1B", "quantization_level": "Q4_0"],
                "model_info": options.contextLength > 0
                    ? ["general.architecture": "mock", "mock.context_length": .int(options.contextLength)] : ["general.architecture": "mock"],
                "capabilities": ["completion", "tools"],
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
        router.post("v1/messages") { request, context in try await anthropicMessages(request, context: context) }
        router.post("v1/messages/count_tokens") { request, context in try await anthropicCountTokens(request, context: context) }
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
        let transcript = body.messages.map { (role: $0.role, content: $0.content) }
        try await residency.use(resolve(body.model) ?? body.model)
        try await residency.processPrompt(transcript)
        let promptTokens = MockBehaviour.tokenCount(body.messages.map(\.content))
        let isJSON = body.format != nil
        let text = isJSON ? MockBehaviour.jsonReply : MockBehaviour.replyText(to: lastUser)
        // Any tools get a call (the mock's behaviour before `[[tool]]`, which tests rely on), except right after a tool
        // result: then the model answers, so an agent loop (Claude Code, Codex) ends its turn as with a real model.
        let toolCall = body.messages.last?.role == "tool" ? nil : MockBehaviour.toolCall(for: body.tools ?? [])
        let pieces = toolCall == nil ? (isJSON ? [text] : MockBehaviour.pieces(of: text)) : []
        let thinking = triggers.think ? MockBehaviour.thinkingText(about: lastUser) : nil
        let thinkingPieces = thinking.map(MockBehaviour.pieces) ?? []
        residency.remember(transcript, answer: text)
        let created = "2026-01-01T00:00:00Z"
        func final(_ message: Ollama.Message) -> Ollama.ChatResponse {
            var r = Ollama.ChatResponse(model: body.model, createdAt: created, message: message, done: true)
            r.doneReason = "stop"
            r.promptEvalCount = promptTokens
            r.evalCount = (toolCall == nil ? max(1, pieces.count) : 1) + thinkingPieces.count
            r.totalDuration = 1_000_000
            return r
        }
        let toolCalls = toolCall.map { [Ollama.ToolCall(function: .init(name: $0.name, arguments: $0.arguments))] }
        guard body.isStreaming else {
            if triggers.die { return dropConnection() }
            return try json(final(Ollama.Message(role: "assistant", content: toolCall == nil ? text : "", toolCalls: toolCalls, thinking: thinking)))
        }
        // Like Ollama: the thinking comes first, in lines of its own with empty content.
        var lines = thinkingPieces.map {
            Ollama.ChatResponse(model: body.model, createdAt: created, message: .init(role: "assistant", content: "", thinking: $0), done: false)
        }
        lines += pieces.map {
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
        try await residency.use(resolve(body.model) ?? body.model)
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
        let transcript = body.messages.map { (role: $0.role, content: $0.content?.text ?? "") }
        try await residency.use(resolve(body.model) ?? body.model)
        try await residency.processPrompt(transcript)
        let isJSON = body.responseFormat.map { $0.type != "text" } ?? false
        let text = isJSON ? MockBehaviour.jsonReply : MockBehaviour.replyText(to: lastUser)
        residency.remember(transcript, answer: text)
        // As on `/api/chat`: any tools get a call, except right after a tool result.
        let toolCall = (body.messages.last?.role == "tool" ? nil : MockBehaviour.toolCall(for: body.tools ?? [])).map {
            ToolCall(id: "call_mock_0", name: $0.name, arguments: String(decoding: try! Self.encoder.encode($0.arguments), as: UTF8.self))
        }
        let pieces = toolCall == nil ? (isJSON ? [text] : MockBehaviour.pieces(of: text)) : []
        let reasoning = triggers.think ? MockBehaviour.thinkingText(about: lastUser) : nil
        let reasoningPieces = reasoning.map(MockBehaviour.pieces) ?? []
        // Like OpenAI: cached tokens are part of the prompt tokens, reasoning tokens part of the completion tokens.
        let cached = triggers.cached ? MockBehaviour.cachedPromptTokens : 0
        let usage = Usage(
            promptTokens: MockBehaviour.tokenCount(body.messages.map { $0.content?.text ?? "" }) + cached,
            completionTokens: max(1, pieces.count) + reasoningPieces.count, cachedTokens: cached, reasoningTokens: reasoningPieces.count)
        let id = "chatcmpl-mock"
        let created = 1_767_225_600
        let finish = toolCall == nil ? "stop" : "tool_calls"
        guard body.isStreaming else {
            if triggers.die { return dropConnection() }
            let message = ChatMessage(role: "assistant", content: toolCall == nil ? .text(text) : nil, toolCalls: toolCall.map { [$0] })
            let response = ChatCompletionResponse(id: id, created: created, model: body.model, choices: [.init(index: 0, message: message, finishReason: finish)], usage: usage)
            guard let reasoning else { return try json(response) }
            // `reasoning_content` on the message, as DeepSeek, vLLM and llama.cpp send it.
            return try json(try jsonValue(response).editingFirstChoice { $0["message"] = $0["message"]?.setting("reasoning_content", .string(reasoning)) })
        }
        func chunk(_ delta: JSONValue) throws -> ByteBuffer {
            try sse(try jsonValue(ChatCompletionChunk(id: id, created: created, model: body.model, choices: [.init(delta: .init())])).editingFirstChoice { $0["delta"] = delta })
        }
        var frames = [try sse(ChatCompletionChunk(id: id, created: created, model: body.model, choices: [.init(delta: .init(role: "assistant", content: ""))]))]
        frames += try reasoningPieces.map { try chunk(["reasoning_content": .string($0)]) }
        frames += try pieces.map { try sse(ChatCompletionChunk(id: id, created: created, model: body.model, choices: [.init(delta: .init(content: $0))])) }
        if let toolCall {
            // Like OpenAI: the first delta names the call with empty arguments, the arguments follow in pieces.
            let start = ChatCompletionChunk.ToolCallDelta(index: 0, id: toolCall.id, type: "function", function: .init(name: toolCall.function.name, arguments: ""))
            frames.append(try sse(ChatCompletionChunk(id: id, created: created, model: body.model, choices: [.init(delta: .init(toolCalls: [start]))])))
            frames += try MockBehaviour.argumentPieces(of: toolCall.function.arguments).map {
                try chunk(["tool_calls": [["index": 0, "function": ["arguments": .string($0)]]]])
            }
        }
        frames.append(try sse(ChatCompletionChunk(id: id, created: created, model: body.model, choices: [.init(delta: .init(), finishReason: finish)])))
        if body.includeUsage { frames.append(try sse(ChatCompletionChunk(id: id, created: created, model: body.model, choices: [], usage: usage))) }
        if !triggers.noDone { frames.append(ByteBuffer(string: "data: [DONE]\n\n")) }
        return stream(frames, contentType: "text/event-stream", triggers: triggers)
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
                    if triggers.stall, i == 2 { try await Task.sleep(for: .seconds(30)) }
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

    /// A value as the mock would send it, to add fields its wire types lack.
    func jsonValue(_ value: some Encodable) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Self.encoder.encode(value))
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

extension JSONValue {
    /// This object with `key` set to `value`; other values unchanged.
    func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(var members) = self else { return self }
        members[key] = value
        return .object(members)
    }

    /// This OpenAI answer or chunk with its first choice edited.
    func editingFirstChoice(_ edit: (inout [String: JSONValue]) -> Void) -> JSONValue {
        guard case .object(var members) = self, case .array(var choices)? = members["choices"], case .object(var choice)? = choices.first
        else { return self }
        edit(&choice)
        choices[0] = .object(choice)
        members["choices"] = .array(choices)
        return .object(members)
    }
}
