import Logging
import NIOCore
import SluiceCore
import SluiceUpstream

/// The validated settings of one gateway process.
public struct GatewayConfiguration: Sendable {
    /// How API keys are enforced.
    public enum AuthMode: String, Sendable, CaseIterable {
        case auto, required, off
    }

    public var host = "127.0.0.1"
    public var port = 8080
    public var upstreams: [UpstreamEndpoint] = [UpstreamEndpoint(name: "default", baseURL: "http://127.0.0.1:11434", kind: .ollama)]
    public var database = "sqlite:./sluice.db"
    public var masterKey: String?
    public var auth = AuthMode.auto
    public var allowInsecure = false
    public var rateLimitRPS = 0.0
    public var rateLimitBurst = 0
    public var ipRateLimitRPM = 0
    /// Time between exchanges of shared rate-limit leases with PostgreSQL (see ``SharedRateLimiter``).
    public var rateLimitSyncInterval = Duration.milliseconds(250)
    /// Hourly usage rollups older than this many days are deleted; 0 keeps them all.
    public var rollupRetentionDays = 400
    /// Where soft budget alerts are POSTed as JSON, once per period; nil: logged and counted only.
    public var budgetWebhook: String?
    public var trustedProxies: [String] = []
    public var cacheTTL = Duration.seconds(300)
    public var cacheMaxBytes = 64 * 1024 * 1024
    /// `global` shares entries between keys; `key` gives each API key its own.
    public var cacheScope = CacheScope.global
    /// When on, sampled requests (temperature above 0 without a seed) are not cached.
    public var cacheDeterministicOnly = false
    /// Whether usage records are written to the store; off keeps limits and budgets but no history.
    public var recordUsage = true
    public var maxBodyBytes = 4 * 1024 * 1024
    public var upstreamTimeout = Duration.seconds(300)
    public var connectTimeout = Duration.seconds(5)
    public var idleTimeout = Duration.seconds(60)
    public var corsOrigins: [String] = []
    public var logLevel = Logger.Level.info
    public var logFile: String?
    public var logBodies = false
    public var storeBodies = false
    public var tlsCert: String?
    public var tlsKey: String?
    public var shutdownGrace = Duration.seconds(10)
    /// From accept (or the first byte of a later request) until the request head is complete; then 408 and close.
    public var clientHeaderTimeout = Duration.seconds(10)
    /// The longest gap between two reads of a request body; then 408 and close.
    public var clientBodyTimeout = Duration.seconds(30)
    /// How long a kept-alive connection may wait for its next request before it is closed.
    public var clientIdleTimeout = Duration.seconds(75)
    /// Client connections open at once; more are closed as soon as they are accepted. The default leaves room under
    /// the file-descriptor limit for an upstream connection per client and the store.
    public var maxConnections = ConnectionLimits.defaultMaxConnections()
    /// How long a client may accept no byte of an answer before its connection is closed and the upstream call
    /// cancelled (`client-write-timeout`).
    public var clientWriteTimeout = Duration.seconds(30)
    /// How long a request coalesced behind an identical one waits for it before making its own call
    /// (`cache-coalesce-wait`).
    public var cacheCoalesceWait = Duration.seconds(30)
    /// Bytes of non-streamed upstream answers held in memory at once, over all requests (`max-buffered-bytes`);
    /// a call that would pass it is shed with 503 instead of growing the process.
    public var maxBufferedBytes = 256 * 1_048_576
    /// Usage records older than this many days are deleted; 0 keeps them forever.
    public var retentionDays = 90
    /// How long a Responses API answer made with `store: true` can be read and continued (`previous_response_id`)
    /// before it expires and retention deletes it (`response-retention`). Each response's expiry is fixed when it is
    /// saved, so changing this affects later responses only.
    public var responseRetention = Duration.seconds(30 * 86_400)
    /// The hosted model local traffic is compared with, to report what running locally saved.
    public var referenceModel = "gpt-4o-mini"
    /// Consecutive failures that open an upstream's circuit breaker.
    public var breakerFailures = 3
    /// How long an open breaker keeps traffic away before a trial request.
    public var breakerCooldown = Duration.seconds(10)
    /// Time between background probes of every upstream; zero turns the prober off.
    public var probeInterval = Duration.seconds(10)
    /// Requests in flight per upstream (streams until they end); 0 means no cap.
    public var upstreamMaxInflight = 256
    /// Requests that may wait for a slot when every upstream they could use is full, all upstreams together.
    public var upstreamQueue = 512
    /// How long a request waits for a slot before it gets 503.
    public var upstreamQueueTimeout = Duration.seconds(10)
    /// How long a request that may overflow waits for a local upstream before a hosted overflow one may take it.
    public var overflowAfter = Duration.seconds(2)
    /// The share of an upstream's in-flight slots batch keys may hold at once (`batch-share`).
    public var batchShare = 0.5
    /// Price overrides from the config file, by model name.
    public var prices: [String: ModelPrice] = [:]
    /// Model names clients may use for another model (`gpt-4o-mini: llama3.2`), from the config file.
    public var aliases: [String: String] = [:]
    /// Virtual models (`models:` in the config file): the names clients send, each an upstream model with defaults.
    public var virtualModels: [String: VirtualModel] = [:]
    /// What to do with a prompt longer than its model's context (`context-policy`).
    public var contextPolicy = ContextPolicy.warn
    /// The largest `num_ctx` the `raise` context policy sets (`context-max`).
    public var contextMax = 131_072
    /// How long a conversation stays with the upstream that served its last turn (`affinity-ttl`).
    public var affinityTTL = Duration.seconds(1_800)
    /// Conversations the affinity table remembers at most, least recently used out first (`affinity-max`).
    public var affinityMax = 10_000

    public init() {}

    /// Whether cache entries are shared between API keys.
    public enum CacheScope: String, Sendable, CaseIterable {
        case global, key
    }

    /// The routing limits in the form the upstream pool takes.
    public var upstreamLimits: UpstreamLimits {
        var limits = UpstreamLimits()
        limits.breakerFailures = breakerFailures
        limits.breakerCooldown = breakerCooldown
        limits.maxInFlight = upstreamMaxInflight
        limits.queueCapacity = upstreamQueue
        limits.queueTimeout = upstreamQueueTimeout
        limits.overflowAfter = overflowAfter
        limits.batchShare = batchShare
        return limits
    }

    /// The scheduling settings in the form the scheduler takes.
    var schedulerSettings: Scheduler.Settings {
        Scheduler.Settings(
            affinityCapacity: affinityMax, affinityTTL: affinityTTL, virtualModels: virtualModels, contextPolicy: contextPolicy,
            contextMax: contextMax)
    }

    /// Every name that stands for another model: the aliases and the virtual models, one lookup for the gateway.
    var modelNames: [String: String] {
        aliases.merging(virtualModels.mapValues(\.model)) { alias, _ in alias }
    }

    /// The client connection limits in the form the server's connection guard takes.
    var connectionLimits: ConnectionLimits {
        ConnectionLimits(
            headerTimeout: clientHeaderTimeout, bodyTimeout: clientBodyTimeout, idleTimeout: clientIdleTimeout,
            maxConnections: maxConnections)
    }

    /// Upstream time limits in the form the HTTP client takes.
    public var upstreamTimeouts: UpstreamTimeouts {
        UpstreamTimeouts(total: .init(upstreamTimeout), idle: .init(idleTimeout), connect: .init(connectTimeout))
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

extension VirtualModel {
    /// As `check-config` and `/admin/config` show it.
    var summary: JSONValue {
        var out: [String: JSONValue] = ["model": .string(model), "override": .bool(overridable), "warm": .bool(warm)]
        if let numCtx { out["num_ctx"] = .int(numCtx) }
        if let keepAlive { out["keep_alive"] = keepAlive }
        if let think { out["think"] = think }
        if let temperature { out["temperature"] = .double(temperature) }
        if let maxTokens { out["max_tokens"] = .int(maxTokens) }
        if let systemPrefix { out["system"] = .string(systemPrefix) }
        return .object(out)
    }
}
