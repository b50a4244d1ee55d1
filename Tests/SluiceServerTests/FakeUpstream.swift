import AsyncHTTPClient
import Logging
import NIOCore
import SluiceCore
import SluiceServer
import SluiceUpstream
import Synchronization

/// An in-memory upstream whose answers a test scripts.
struct FakeUpstream: UpstreamProvider {
    enum Behaviour: Sendable {
        /// Answers with this chat text (streamed as one chunk per word when asked to stream).
        case answer(String)
        case fail(APIError)
        /// Streams these NDJSON lines, then ends (possibly without a `done` line).
        case streamLines([String])
        /// Streams whatever this body yields, so a test controls when the stream moves and ends.
        case streamBody(HTTPClientResponse.Body)
    }

    var endpoint = UpstreamEndpoint(name: "fake", baseURL: "http://fake.invalid", kind: .ollama)
    var behaviour: Behaviour
    var probeError: APIError?
    /// While on, probes fail as if the upstream were down; tests flip it to take the upstream down and up.
    var probeDown: FakeSwitch?
    /// Counts probes, for tests of how often the gateway probes.
    var probeCount: FakeCounter?
    /// Counts native (`/api/*`) calls, for tests of where they are routed; the gateway's own `/api/ps` reads of what
    /// is loaded are not counted.
    var nativeCount: FakeCounter?
    /// Bodies of native GET routes by path (`/api/tags`), instead of a version answer.
    var nativeAnswers: [String: String] = [:]

    init(_ behaviour: Behaviour, probeError: APIError? = nil) {
        self.behaviour = behaviour
        self.probeError = probeError
    }

    func chatCompletions(_ request: ChatCompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        switch behaviour {
        case .fail(let error):
            throw error
        case .answer(let text):
            if request.isStreaming {
                let words = text.split(separator: " ").map { #"{"model":"m","message":{"role":"assistant","content":"\#($0) "},"done":false}"# }
                return stream(words + [#"{"model":"m","done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":2}"#], request: request, identity: identity)
            }
            var answer = Ollama.ChatResponse(model: request.model, createdAt: nil, message: .init(role: "assistant", content: text), done: true)
            answer.promptEvalCount = 1
            answer.evalCount = 2
            let body = try WireJSON.encoder().encodeAsByteBuffer(
                OpenAIChat.chatResponse(OllamaChat.canonicalAnswer(answer, identity: identity), identity: identity), allocator: .init())
            return .complete(body: body, usage: Usage(promptTokens: 1, completionTokens: 2))
        case .streamLines(let lines):
            return stream(lines, request: request, identity: identity)
        case .streamBody(let body):
            return .stream(
                UpstreamStream(body: body, translator: Self.chatTranslator(request, identity: identity)))
        }
    }

    /// Ollama NDJSON relayed as chat chunks, the way ``OllamaUpstream`` relays it.
    static func chatTranslator(_ request: ChatCompletionRequest, identity: ResponseIdentity) -> any StreamTranslator {
        canonicalTranslator(
            decoder: OllamaChat.StreamDecoder(identity: identity),
            encoder: OpenAIChat.StreamEncoder(model: request.model, identity: identity, includeUsage: request.includeUsage))
    }

    private func stream(_ lines: [String], request: ChatCompletionRequest, identity: ResponseIdentity) -> UpstreamReply {
        let chunks = lines.map { ByteBuffer(string: $0 + "\n") }
        return .stream(
            UpstreamStream(
                body: .stream(chunks.async),
                translator: Self.chatTranslator(request, identity: identity)))
    }

    func completions(_ request: CompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply {
        throw APIError.upstreamFailed()
    }

    func embeddings(_ request: EmbeddingsRequest, rawBody: ByteBuffer, logger: Logger) async throws -> UpstreamReply {
        .complete(body: ByteBuffer(string: #"{"object":"list","data":[],"model":"e","usage":{"prompt_tokens":0,"total_tokens":0}}"#), usage: nil)
    }

    func models(created: Int, logger: Logger) async throws -> ModelList {
        ModelList(data: [Model(id: "llama3.2:latest", created: created, ownedBy: "ollama")])
    }

    func native(_ request: NativeRequest, logger: Logger) async throws -> UpstreamReply {
        if request.path != "/api/ps" { nativeCount?.increment() }
        if case .fail(let error) = behaviour { throw error }
        return .complete(body: ByteBuffer(string: nativeAnswers[request.path] ?? #"{"version":"fake"}"#), usage: nil)
    }

    func probe(logger: Logger) async throws {
        probeCount?.increment()
        if let probeError { throw probeError }
        if probeDown?.isOn == true { throw APIError.upstreamUnavailable() }
    }
}

/// A flag shared between a test and the fakes it drives.
final class FakeSwitch: Sendable {
    private let value: Mutex<Bool>
    init(_ on: Bool = false) { value = Mutex(on) }
    var isOn: Bool {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// A count shared between a test and the fakes it drives.
final class FakeCounter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// Keeps the records a test's requests produced.
final class CollectingRecorder: UsageRecorder {
    let records = Mutex<[UsageRecord]>([])
    func record(_ record: UsageRecord) { records.withLock { $0.append(record) } }
    var all: [UsageRecord] { records.withLock { $0 } }
}
