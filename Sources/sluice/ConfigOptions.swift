import ArgumentParser
import SluiceServer

/// The configuration flags `serve` and `check-config` share; each overrides `SLUICE_*`, the config file and `.env`.
struct ConfigOptions: ParsableArguments {
    @Option(help: "Config file (YAML or JSON).") var config: String?
    @Option(help: "Bind address (default 127.0.0.1).") var host: String?
    @Option(help: "Listen port (default 8080).") var port: String?
    @Option(help: "Upstream base URL (default http://127.0.0.1:11434).") var upstream: String?
    @Option(name: .customLong("upstream-kind"), help: "ollama, openai or anthropic (default ollama).") var upstreamKind: String?
    @Option(name: .customLong("upstream-api-key"), help: "API key sent to the upstream.") var upstreamAPIKey: String?
    @Option(help: "sqlite:PATH or postgres://user:pass@host:port/db.") var database: String?
    @Option(name: .customLong("master-key"), help: "Admin key.") var masterKey: String?
    @Option(help: "auto, required or off.") var auth: String?
    @Flag(name: .customLong("allow-insecure"), help: "Allow a non-loopback bind with authentication off.") var allowInsecure = false
    @Option(name: .customLong("rate-limit-rps"), help: "Global requests per second (0 = off).") var rateLimitRPS: String?
    @Option(name: .customLong("rate-limit-burst"), help: "Burst of the global limit.") var rateLimitBurst: String?
    @Option(name: .customLong("ip-rate-limit-rpm"), help: "Requests per minute per client IP (0 = off).") var ipRateLimitRPM: String?
    @Option(name: .customLong("trusted-proxies"), help: "Comma list of proxies whose X-Forwarded-For is honoured.") var trustedProxies: String?
    @Option(name: .customLong("cache-ttl"), help: "Cache entry lifetime, 0 disables (default 300s).") var cacheTTL: String?
    @Option(name: .customLong("cache-max-bytes"), help: "Cache memory bound (default 64MiB).") var cacheMaxBytes: String?
    @Option(name: .customLong("cache-scope"), help: "global (entries shared by all keys) or key.") var cacheScope: String?
    @Option(name: .customLong("cache-deterministic-only"), help: "Only cache requests with temperature 0 or a seed (default false).") var cacheDeterministicOnly: String?
    @Option(name: .customLong("max-body-bytes"), help: "Largest request body (default 4MiB).") var maxBodyBytes: String?
    @Option(name: .customLong("upstream-timeout"), help: "Total upstream time limit (default 300s).") var upstreamTimeout: String?
    @Option(name: .customLong("connect-timeout"), help: "Upstream connect time limit (default 5s).") var connectTimeout: String?
    @Option(name: .customLong("idle-timeout"), help: "Longest wait between streamed chunks (default 60s).") var idleTimeout: String?
    @Option(name: .customLong("cors-origins"), help: "Comma list of allowed origins, or *.") var corsOrigins: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.") var logLevel: String?
    @Option(name: .customLong("log-file"), help: "Write JSON log lines to this file (mode 0600).") var logFile: String?
    @Option(name: .customLong("log-bodies"), help: "Log request and response bodies (default false).") var logBodies: String?
    @Option(name: .customLong("store-bodies"), help: "Store bodies with usage records (default false).") var storeBodies: String?
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain for HTTPS.") var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for HTTPS.") var tlsKey: String?
    @Option(name: .customLong("shutdown-grace"), help: "How long shutdown waits for in-flight requests (default 10s).") var shutdownGrace: String?
    @Option(name: .customLong("retention-days"), help: "Delete usage records older than this many days (0 = keep; default 90).") var retentionDays: String?
    @Option(name: .customLong("response-retention"), help: "How long responses stored for previous_response_id are kept (default 30d).") var responseRetention: String?
    @Option(name: .customLong("record-usage"), help: "Write a usage record for every request (default true).") var recordUsage: String?
    @Option(name: .customLong("reference-model"), help: "Hosted model local traffic is priced against for savings (default gpt-4o-mini).") var referenceModel: String?
    @Option(name: .customLong("breaker-failures"), help: "Consecutive upstream failures that open its circuit breaker (default 3).") var breakerFailures: String?
    @Option(name: .customLong("breaker-cooldown"), help: "How long an open breaker waits before a trial request (default 10s).") var breakerCooldown: String?
    @Option(name: .customLong("rollup-retention-days"), help: "Hourly usage rollups older than this many days are deleted; 0 keeps all (default 400).") var rollupRetentionDays: String?
    @Option(name: .customLong("budget-webhook"), help: "URL that soft budget alerts (--budget-alert) are POSTed to as JSON, once per period.") var budgetWebhook: String?
    @Option(name: .customLong("rate-limit-sync-interval"), help: "With PostgreSQL: time between exchanges of shared rate-limit leases, 10ms to 250ms (default 250ms).") var rateLimitSyncInterval: String?
    @Option(name: .customLong("probe-interval"), help: "Time between background probes of every upstream; 0 disables (default 10s).") var probeInterval: String?
    @Option(name: .customLong("upstream-max-inflight"), help: "Requests in flight per upstream, streams included; 0 = no cap (default 256).") var upstreamMaxInflight: String?
    @Option(name: .customLong("upstream-queue"), help: "Requests that may wait for a busy upstream, in total (default 512).") var upstreamQueue: String?
    @Option(name: .customLong("upstream-queue-timeout"), help: "How long a waiting request waits before 503 (default 10s).") var upstreamQueueTimeout: String?
    @Option(name: .customLong("client-header-timeout"), help: "Time a client has to send a request head; then 408 and close (default 10s).") var clientHeaderTimeout: String?
    @Option(name: .customLong("client-body-timeout"), help: "Longest gap between two reads of a request body; then 408 and close (default 30s).") var clientBodyTimeout: String?
    @Option(name: .customLong("client-idle-timeout"), help: "How long a kept-alive connection may wait for its next request (default 75s).") var clientIdleTimeout: String?
    @Option(name: .customLong("max-connections"), help: "Client connections open at once; more are closed at accept (default: from the file-descriptor limit).") var maxConnections: String?

    @Option(name: .customLong("client-write-timeout"), help: "Close a client that accepts no byte of an answer for this long, cancelling the upstream call (default 30s).") var clientWriteTimeout: String?
    @Option(name: .customLong("cache-coalesce-wait"), help: "How long a request waits for an identical one in flight before calling on its own (default 30s).") var cacheCoalesceWait: String?
    @Option(name: .customLong("max-buffered-bytes"), help: "Bytes of upstream answers held in memory at once, all requests together; past it, 503 (default 256MiB).") var maxBufferedBytes: String?
    @Option(name: .customLong("affinity-ttl"), help: "How long a conversation stays with the upstream of its last turn (default 30m).") var affinityTTL: String?
    @Option(name: .customLong("context-policy"), help: "A prompt longer than its model's context: warn, reject or raise (default warn).") var contextPolicy: String?
    @Option(name: .customLong("context-max"), help: "The largest num_ctx the raise context policy sets (default 131072).") var contextMax: String?
    @Option(name: .customLong("overflow-after"), help: "How long a request waits for a local upstream before a hosted overflow one may take it (default 2s).") var overflowAfter: String?
    @Option(name: .customLong("batch-share"), help: "Share of an upstream's in-flight slots batch keys may hold at once (default 0.5).") var batchShare: String?
    @Option(name: .customLong("affinity-max"), help: "Conversations remembered for affinity, least recently used out first (default 10000).") var affinityMax: String?

    /// The flags that were given, by option name.
    var flags: [String: String] {
        var out: [String: String] = [:]
        let pairs: [(String, String?)] = [
            ("config", config), ("host", host), ("port", port), ("upstream", upstream), ("upstream-kind", upstreamKind),
            ("upstream-api-key", upstreamAPIKey), ("database", database), ("master-key", masterKey), ("auth", auth),
            ("rate-limit-rps", rateLimitRPS), ("rate-limit-burst", rateLimitBurst), ("ip-rate-limit-rpm", ipRateLimitRPM),
            ("trusted-proxies", trustedProxies), ("cache-ttl", cacheTTL), ("cache-max-bytes", cacheMaxBytes), ("cache-scope", cacheScope),
            ("cache-deterministic-only", cacheDeterministicOnly),
            ("max-body-bytes", maxBodyBytes), ("upstream-timeout", upstreamTimeout), ("connect-timeout", connectTimeout),
            ("idle-timeout", idleTimeout), ("cors-origins", corsOrigins), ("log-level", logLevel), ("log-file", logFile),
            ("log-bodies", logBodies), ("store-bodies", storeBodies), ("tls-cert", tlsCert), ("tls-key", tlsKey),
            ("shutdown-grace", shutdownGrace), ("retention-days", retentionDays), ("response-retention", responseRetention),
            ("reference-model", referenceModel),
            ("breaker-failures", breakerFailures), ("breaker-cooldown", breakerCooldown), ("probe-interval", probeInterval),
            ("upstream-max-inflight", upstreamMaxInflight), ("upstream-queue", upstreamQueue), ("upstream-queue-timeout", upstreamQueueTimeout),
            ("record-usage", recordUsage),
            ("client-header-timeout", clientHeaderTimeout), ("client-body-timeout", clientBodyTimeout),
            ("client-idle-timeout", clientIdleTimeout), ("max-connections", maxConnections),
            ("client-write-timeout", clientWriteTimeout), ("cache-coalesce-wait", cacheCoalesceWait), ("max-buffered-bytes", maxBufferedBytes),
            ("affinity-ttl", affinityTTL), ("affinity-max", affinityMax), ("context-policy", contextPolicy), ("context-max", contextMax),
            ("overflow-after", overflowAfter), ("batch-share", batchShare),
            ("rate-limit-sync-interval", rateLimitSyncInterval), ("budget-webhook", budgetWebhook),
            ("rollup-retention-days", rollupRetentionDays),
        ]
        for (name, value) in pairs { if let value { out[name] = value } }
        if allowInsecure { out["allow-insecure"] = "true" }
        return out
    }

    func load() throws -> GatewayConfiguration {
        do {
            return try ConfigurationLoader(flags: flags).load()
        } catch {
            throw ConfigurationFailure(message: error.description)
        }
    }
}
