import AsyncHTTPClient
import Logging
import NIOCore
import SluiceCore

/// Which wire protocol an upstream speaks.
public enum UpstreamKind: String, Sendable, Codable, CaseIterable {
    case ollama
    case openai
    /// The Anthropic Messages API (`/v1/messages`, `x-api-key`, `anthropic-version`).
    case anthropic
}

/// Where an upstream is and how to talk to it.
public struct UpstreamEndpoint: Sendable, Equatable {
    public var name: String
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:11434`.
    public var baseURL: String
    public var kind: UpstreamKind
    /// Sent as `Authorization: Bearer …` (`x-api-key` to an Anthropic upstream); never logged or returned.
    public var apiKey: String?
    /// Models this upstream serves; empty means any.
    public var models: [String]
    public var weight: Int
    /// An `openai` upstream that serves the Responses API itself (`responses: true`): `/v1/responses` passes through
    /// to it unchanged, stored conversations included, instead of going through chat completions.
    public var servesResponses = false
    /// A hosted upstream used only when no local one can take a request within `overflow-after` (`overflow: true`).
    public var overflow = false
    /// What an overflow upstream charges, USD per million tokens; nil prices by model as any hosted call.
    public var price: ModelPrice?
    /// The names this upstream knows models by, by the name clients and local servers use (`qwen3-coder:30b` →
    /// `Qwen/Qwen3-Coder-30B-A3B-Instruct`), so a hosted overflow serves the same model under its own name.
    public var modelNames: [String: String] = [:]

    /// The name to send this upstream for `model`.
    public func upstreamName(for model: String) -> String {
        modelNames[model] ?? modelNames.first { UpstreamChooser.sameModel($0.key, model) }?.value ?? model
    }

    public init(name: String, baseURL: String, kind: UpstreamKind, apiKey: String? = nil, models: [String] = [], weight: Int = 1) {
        self.name = name
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.kind = kind
        self.apiKey = apiKey
        self.models = models
        self.weight = weight
    }
}

/// An upstream's answer: a complete JSON body, or a live stream to relay.
public enum UpstreamReply: Sendable {
    case complete(body: ByteBuffer, usage: Usage?)
    /// A complete answer the gateway encoded from a canonical answer, which is kept for the cache.
    case generated(body: ByteBuffer, answer: Generation.Answer)
    case stream(UpstreamStream)
}

/// A streamed upstream body and the translator that turns it into the client's format.
public struct UpstreamStream: Sendable {
    public var body: HTTPClientResponse.Body
    public var translator: any StreamTranslator

    public init(body: HTTPClientResponse.Body, translator: any StreamTranslator) {
        self.body = body
        self.translator = translator
    }
}

/// A request to Ollama's native API, forwarded as it came.
public struct NativeRequest: Sendable {
    public var method: HTTPMethodName
    public var path: String
    public var body: ByteBuffer?
    /// Whether the answer is an NDJSON stream (Ollama streams chat and generate unless `stream` is false).
    public var streams: Bool

    public init(method: HTTPMethodName, path: String, body: ByteBuffer?, streams: Bool) {
        self.method = method
        self.path = path
        self.body = body
        self.streams = streams
    }
}

/// The HTTP methods the native API uses.
public enum HTTPMethodName: String, Sendable {
    case get = "GET"
    case post = "POST"
    case head = "HEAD"
    case delete = "DELETE"
}

/// One upstream LLM server. Every error thrown is an `APIError` fit for the client.
///
/// The seam between the gateway and the network: tests and benchmarks substitute their own.
public protocol UpstreamProvider: Sendable {
    var endpoint: UpstreamEndpoint { get }

    /// `rawBody` is the client's original JSON, forwarded untouched where no translation is needed.
    func chatCompletions(_ request: ChatCompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply
    func completions(_ request: CompletionRequest, rawBody: ByteBuffer, identity: ResponseIdentity, logger: Logger) async throws -> UpstreamReply
    func embeddings(_ request: EmbeddingsRequest, rawBody: ByteBuffer, logger: Logger) async throws -> UpstreamReply
    func models(created: Int, logger: Logger) async throws -> ModelList
    /// Ollama's native API; upstreams that do not speak it throw a 404.
    func native(_ request: NativeRequest, logger: Logger) async throws -> UpstreamReply
    /// A cheap call that succeeds when the upstream answers.
    func probe(logger: Logger) async throws
}
