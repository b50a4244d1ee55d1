import NIOCore
import Synchronization
import SluiceCore

/// What the handlers of one request learned about it, for logs, metrics and the usage record.
///
/// A reference type because the context is copied down the middleware chain, while the outer
/// middleware must see what the inner handlers wrote.
public final class RequestTrace: Sendable {
    /// The annotations; all optional because a request can fail before any is known.
    public struct Fields: Sendable {
        public var route: String?
        public var model: String?
        public var upstream: String?
        public var stream = false
        public var usage: Usage?
        /// True when `usage` was estimated because the upstream reported none.
        public var tokensEstimated = false
        public var errorCode: String?
        /// Set when a stream ended abnormally after its 200 status was sent.
        public var streamFailed = false
        public var clientDisconnected = false
        public var firstByteAt: ContinuousClock.Instant?
        public var cacheHit = false
        /// Something the client should know about how its request was served (`x-sluice-warning`).
        public var warning: String?
        /// Served by a hosted overflow upstream because no local one could take it in time.
        public var overflowed = false
        /// The authenticated API key's id, once auth has run.
        public var keyID: String?
        /// Set by ``BodyCaptureMiddleware`` when bodies are stored or logged.
        public var bodies: BodyCapture?
    }

    private let fields = Mutex(Fields())

    /// Decisions the exchange takes once per request and reads again at later steps (the cache front before
    /// decoding, the pass-through probe, the exchange itself), instead of taking them again.
    struct Decisions: Sendable {
        /// The upstreams serving `model` for this key, the name the client sent being `requested`.
        var route: (model: String, requested: String, servers: [Int])?
        /// The cache key of `body` among `upstreams` in `family`.
        var cacheKey: (family: String, upstreams: [Int], body: ByteBuffer, key: CacheKey)?
    }

    let decisions = Mutex(Decisions())

    public init() {}

    public func update(_ body: (inout Fields) -> Void) {
        fields.withLock { body(&$0) }
    }

    public var snapshot: Fields { fields.withLock { $0 } }
}

/// What a request and its response carried, sampled as they pass (see ``BodySample``).
public final class BodyCapture: Sendable {
    private let samples = Mutex((request: BodySample(), response: BodySample()))

    public init() {}

    public func request(_ chunk: ByteBuffer) { samples.withLock { $0.request.append(chunk) } }
    public func response(_ chunk: ByteBuffer) { samples.withLock { $0.response.append(chunk) } }

    public var texts: (request: String?, response: String?) {
        samples.withLock { ($0.request.text, $0.response.text) }
    }
}
