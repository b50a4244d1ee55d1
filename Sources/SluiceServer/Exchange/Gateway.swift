import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import ServiceLifecycle
import SluiceCore
import SluiceStore
import SluiceUpstream

/// Handles API requests: decode and validate, answer from the cache or an upstream, relay the answer.
public struct Gateway: Sendable {
    let upstreams: [any UpstreamProvider]
    let metrics: GatewayMetrics
    let maxBodyBytes: Int
    let cache: ResponseCache?
    let cacheScope: GatewayConfiguration.CacheScope
    let cacheDeterministicOnly: Bool
    /// Model names clients may use for another model, e.g. `gpt-4o-mini` → `llama3.2`.
    let aliases: [String: String]
    /// Breakers and in-flight counts that route each attempt.
    let pool: UpstreamPool
    /// Bounds the bytes of non-streamed answers held at once; nil leaves them unbounded (tests, benchmarks).
    let bufferBudget: AnswerBufferBudget?
    /// How long a request coalesced behind an identical one waits for it before calling on its own.
    let coalesceWait: Duration
    /// Ends streams that would outlive the shutdown grace; nil lets them run until cancelled.
    let drain: ShutdownDrain?
    /// Where Responses API answers are kept for `previous_response_id`; nil when there is no store.
    let responseStore: (any GatewayStore)?
    /// How long a kept response can be continued.
    let responseRetention: Duration
    /// Conversation affinity and model residency: where each attempt would best go.
    let scheduler: Scheduler
    let now: @Sendable () -> Double

    public init(
        upstreams: [any UpstreamProvider], metrics: GatewayMetrics, maxBodyBytes: Int, cache: ResponseCache? = nil,
        cacheScope: GatewayConfiguration.CacheScope = .global, cacheDeterministicOnly: Bool = false,
        aliases: [String: String] = [:], limits: UpstreamLimits = .unlimited, now: @escaping @Sendable () -> Double
    ) {
        self.init(
            pool: UpstreamPool(upstreams: upstreams, metrics: metrics, limits: limits, now: now), maxBodyBytes: maxBodyBytes, cache: cache,
            cacheScope: cacheScope, cacheDeterministicOnly: cacheDeterministicOnly, aliases: aliases, now: now)
    }

    /// A gateway routing through `pool`, which the application shares with the background prober.
    init(
        pool: UpstreamPool, maxBodyBytes: Int, cache: ResponseCache?, cacheScope: GatewayConfiguration.CacheScope,
        cacheDeterministicOnly: Bool, aliases: [String: String], bufferBudget: AnswerBufferBudget? = nil,
        coalesceWait: Duration = .seconds(30), drain: ShutdownDrain? = nil, responseStore: (any GatewayStore)? = nil,
        responseRetention: Duration = .seconds(30 * 86_400), scheduler: Scheduler? = nil, now: @escaping @Sendable () -> Double
    ) {
        let upstreams = pool.upstreams
        let metrics = pool.metrics
        precondition(!upstreams.isEmpty, "a gateway needs at least one upstream")
        self.upstreams = upstreams
        self.metrics = metrics
        self.maxBodyBytes = maxBodyBytes
        self.cache = cache
        self.cacheScope = cacheScope
        self.cacheDeterministicOnly = cacheDeterministicOnly
        self.aliases = aliases
        self.pool = pool
        self.bufferBudget = bufferBudget
        self.coalesceWait = coalesceWait
        self.drain = drain
        self.responseStore = responseStore
        self.responseRetention = responseRetention
        self.scheduler = scheduler ?? Scheduler(pool: pool, residency: nil, now: now)
        self.now = now
    }

    /// What one API call is, as the shared serving path needs it.
    struct Call {
        var route: String
        /// Which answers a cache entry for this call may be shared with.
        var cacheFamily: String
        /// How the answer is collected for and replayed from the cache; nil keeps raw bytes (embeddings).
        var format: AnswerFormat?
        var body: ByteBuffer
        var model: String
        var streaming: Bool
        var includeUsage: Bool
        /// False when the request asks for something a cache must not answer (n > 1, sampling without a seed).
        var cacheable: Bool
        var idPrefix: String
        /// The canonical surface that answers this call (Anthropic Messages, Responses); nil for the chat-era routes.
        var surface: GenerationSurface? = nil
        /// Keeps the finished answer (stored Responses); a stream calls it before the client sees the answer's end.
        var keepAnswer: (@Sendable (Generation.Answer) async -> Void)? = nil
        /// Keeps a Response object relayed as it came (a Responses pass-through), so the gateway knows its owner.
        var keepResponse: (@Sendable (ByteBuffer) async -> Void)? = nil
        /// The upstream kinds that can serve this route; nil: every kind.
        var kinds: Set<UpstreamKind>? = nil
    }
}
