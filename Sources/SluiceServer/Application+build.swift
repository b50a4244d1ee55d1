import HummingbirdCore
import HTTPTypes
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SluiceCore
import SluiceStore
import SluiceUpstream

/// What `buildApplication` may be handed instead of building it from the configuration (tests, benchmarks).
public struct ApplicationDependencies: Sendable {
    /// Where keys and usage records live.
    public enum StoreChoice: Sendable {
        /// Open the store the `database` setting names, migrate it, and record usage into it.
        case configured
        /// No store: keys come from `keys`, records go to `recorder` only.
        case none
        /// A store opened by the caller, which also runs it as a service.
        case given(any GatewayStore)
    }

    public var upstreams: [any UpstreamProvider]?
    /// Receives every priced record; nil means the store's batching writer.
    public var recorder: (any UsageRecorder)?
    public var store: StoreChoice
    /// The keys known when there is no store.
    public var keys: [APIKeyRecord]
    public var metrics: GatewayMetrics
    public var now: @Sendable () -> Double

    public init(
        upstreams: [any UpstreamProvider]? = nil,
        recorder: (any UsageRecorder)? = nil,
        store: StoreChoice = .configured,
        keys: [APIKeyRecord] = [],
        metrics: GatewayMetrics = GatewayMetrics(),
        now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.upstreams = upstreams
        self.recorder = recorder
        self.store = store
        self.keys = keys
        self.metrics = metrics
        self.now = now
    }
}

/// Builds the gateway application the binary runs and the tests drive.
///
/// Its services start in this order and stop in reverse, after the HTTP server has drained: the upstream client,
/// the store, the usage writer (so its final flush still has a store), the budget alerts, the key sync, retention,
/// the shared rate-limit exchange (PostgreSQL only; it hands its leases back on the way out), the upstream prober.
public func buildApplication(
    configuration: GatewayConfiguration,
    logger: Logger,
    dependencies: ApplicationDependencies = .init()
) throws -> some ApplicationProtocol {
    var services: [any Service] = []
    let upstreams: [any UpstreamProvider]
    if let given = dependencies.upstreams {
        upstreams = given
    } else {
        let client = HTTPClient(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            configuration: .upstream(timeouts: configuration.upstreamTimeouts))
        services.append(HTTPClientService(client: client))
        upstreams = configuration.upstreams.map { endpoint -> any UpstreamProvider in
            switch endpoint.kind {
            case .ollama: OllamaUpstream(endpoint: endpoint, client: client, timeouts: configuration.upstreamTimeouts)
            case .openai: OpenAIUpstream(endpoint: endpoint, client: client, timeouts: configuration.upstreamTimeouts)
            case .anthropic: AnthropicUpstream(endpoint: endpoint, client: client, timeouts: configuration.upstreamTimeouts)
            }
        }
    }

    let store: (any GatewayStore)?
    switch dependencies.store {
    case .configured:
        // The drivers' debug chatter (connection opened, statement run) is noise even at debug level.
        var storeLogger = logger
        storeLogger.logLevel = max(logger.logLevel, .info)
        let opened = try makeStore(url: configuration.database, logger: storeLogger)
        services.append(opened)
        store = opened
    case .none:
        store = nil
    case .given(let given):
        store = given
    }

    let directory = KeyDirectory(masterKey: configuration.masterKey, keys: dependencies.keys, loaded: store == nil)
    var recorder = dependencies.recorder ?? DiscardingUsageRecorder()
    var sync: KeyDirectorySync?
    if let store {
        if dependencies.recorder == nil, configuration.recordUsage {
            let writer = UsageWriter(store: store, logger: logger, metrics: dependencies.metrics)
            services.append(writer)
            recorder = writer
        }
        let alerts = BudgetAlerts(
            store: store, webhook: configuration.budgetWebhook, logger: logger, metrics: dependencies.metrics, now: dependencies.now)
        services.append(alerts)
        let keySync = KeyDirectorySync(directory: directory, store: store, logger: logger, alerts: alerts, now: dependencies.now)
        services.append(keySync)
        sync = keySync
        // Even with usage retention off (0 days), stored responses expire and are deleted.
        services.append(
            RetentionService(
                store: store, retentionDays: configuration.retentionDays, rollupRetentionDays: configuration.rollupRetentionDays,
                logger: logger, metrics: dependencies.metrics,
                now: dependencies.now))
    }

    let limiter = makeRequestLimiter(configuration: configuration, store: store, logger: logger, dependencies: dependencies, services: &services)
    let pool = UpstreamPool(upstreams: upstreams, metrics: dependencies.metrics, limits: configuration.upstreamLimits, now: dependencies.now)
    // Last in, so it stops first: no probe runs against an HTTP client that is shutting down.
    let probeResults = ProbeResults(maxAge: ProbeResults.maxAge(probeInterval: configuration.probeInterval))
    let residency = ModelResidency(pool: pool, logger: logger)
    services.append(residency)
    services.append(
        UpstreamProber(pool: pool, results: probeResults, residency: residency, interval: configuration.probeInterval, logger: logger))
    let scheduler = Scheduler(pool: pool, residency: residency, settings: configuration.schedulerSettings, now: dependencies.now)
    services.append(
        ModelWarmer(
            scheduler: scheduler, residency: residency, interval: configuration.probeInterval > .zero ? configuration.probeInterval : .seconds(10),
            logger: logger))
    let router = buildRouter(
        configuration: configuration, pool: pool, probeResults: probeResults, directory: directory, store: store, keySync: sync,
        limiter: limiter, recorder: recorder, dependencies: dependencies, scheduler: scheduler)
    let writeTimeoutClosed = dependencies.metrics.clientConnectionClosedCounter(reason: "write_timeout")
    let writeTimeout = TimeAmount.nanoseconds(configuration.clientWriteTimeout.nanoseconds)
    let http1 = HTTPServerBuilder.guardedHTTP1(
        limits: configuration.connectionLimits, metrics: dependencies.metrics,
        additionalChannelHandlers: { [ClientWriteTimeoutHandler(timeout: writeTimeout, logger: logger, closed: writeTimeoutClosed)] })
    let server: HTTPServerBuilder
    if let tls = try configuration.tlsConfiguration() {
        server = try .tls(http1, tlsConfiguration: tls)
    } else {
        server = http1
    }
    var app = Application(
        router: router, server: server,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sluice"),
        services: services, logger: logger)
    if let store, let sync {
        // Listen only once the schema is current and the keys are loaded, so no request meets a half-ready gateway.
        app.beforeServerStarts {
            do {
                try await store.migrate()
                try await sync.refresh()
                try await sync.refreshSpend()
            } catch {
                logger.critical("cannot prepare the database", metadata: ["error": "\(error)"])
                throw error
            }
        }
    }
    return app
}

/// The router with every route and middleware, on its own so route tests can use it without an application.
public func buildRouter(
    configuration: GatewayConfiguration,
    upstreams: [any UpstreamProvider],
    directory: KeyDirectory,
    store: (any GatewayStore)?,
    recorder: any UsageRecorder,
    dependencies: ApplicationDependencies
) -> Router<SluiceRequestContext> {
    let pool = UpstreamPool(upstreams: upstreams, metrics: dependencies.metrics, limits: configuration.upstreamLimits, now: dependencies.now)
    return buildRouter(configuration: configuration, pool: pool, directory: directory, store: store, recorder: recorder, dependencies: dependencies)
}

/// The router around a given upstream pool, which the application shares with its prober.
func buildRouter(
    configuration: GatewayConfiguration,
    pool: UpstreamPool,
    probeResults: ProbeResults? = nil,
    directory: KeyDirectory,
    store: (any GatewayStore)?,
    keySync: KeyDirectorySync? = nil,
    limiter: (any RequestLimiter)? = nil,
    recorder: any UsageRecorder,
    dependencies: ApplicationDependencies,
    scheduler: Scheduler? = nil
) -> Router<SluiceRequestContext> {
    let upstreams = pool.upstreams
    let metrics = dependencies.metrics
    let now = dependencies.now
    let cache =
        configuration.cacheTTL > .zero && configuration.cacheMaxBytes > 0
        ? ResponseCache(maxBytes: configuration.cacheMaxBytes, ttl: configuration.cacheTTL, metrics: metrics, now: now)
        : nil
    let gateway = Gateway(
        pool: pool, maxBodyBytes: configuration.maxBodyBytes, cache: cache, cacheScope: configuration.cacheScope,
        cacheDeterministicOnly: configuration.cacheDeterministicOnly, aliases: configuration.modelNames,
        bufferBudget: AnswerBufferBudget(limit: configuration.maxBufferedBytes), coalesceWait: configuration.cacheCoalesceWait,
        drain: ShutdownDrain(grace: configuration.shutdownGrace), responseStore: store,
        responseRetention: configuration.responseRetention,
        scheduler: scheduler ?? Scheduler(pool: pool, residency: nil, settings: configuration.schedulerSettings, now: now), now: now)
    let limiter =
        limiter
        ?? RateLimiter(
            globalRPS: configuration.rateLimitRPS, globalBurst: configuration.rateLimitBurst, ipRPM: configuration.ipRateLimitRPM,
            now: now())
    let localUpstreams = Set(upstreams.filter { $0.endpoint.kind == .ollama }.map(\.endpoint.name))
    var costs = CostCalculator(prices: PriceTable(overrides: configuration.prices), referenceModel: configuration.referenceModel)
    let overflowPrices = upstreams.compactMap { upstream in upstream.endpoint.price.map { (upstream.endpoint.name, $0) } }
    costs.upstreamPrices = Dictionary(overflowPrices, uniquingKeysWith: { first, _ in first })
    // Local answers save what the hosted overflow would have charged for them.
    costs.localComparisonPrices = upstreams.compactMap { upstream in
        guard upstream.endpoint.overflow, let price = upstream.endpoint.price else { return nil }
        // The local names it serves: its listed models, or the ones it knows under another name.
        return (upstream.endpoint.models.isEmpty ? Array(upstream.endpoint.modelNames.keys) : upstream.endpoint.models, price)
    }
    let calculator = costs
    let accounting = AccountingRecorder(
        next: recorder, limiter: limiter, directory: directory,
        pricer: { record in
            let local = record.upstream.map { localUpstreams.contains($0) } ?? false
            calculator.price(&record, isLocalUpstream: local)
        },
        now: now)
    let router = Router(context: SluiceRequestContext.self)
    // Outermost first. The edge sets the client address and request ID before anything logs, and puts the path in
    // its normal form before anything else reads it (limits, accounting, metrics), so each sees the form the router
    // matched; on the way out it adds the security headers to every answer. Errors become responses before
    // observation sees them, and access control, which decides from the matched route, runs on every API call
    // (cache hits included) with its rejections accounted.
    router.add(
        middleware: EdgeMiddleware(clientAddresses: ClientAddressResolver(trusted: configuration.trustedProxies.compactMap(IPRange.init))))
    router.add(
        middleware: ObservabilityMiddleware(
            metrics: metrics, recorder: accounting, storeBodies: configuration.storeBodies,
            logBodies: configuration.logBodies, now: now))
    if configuration.storeBodies || configuration.logBodies {
        router.add(middleware: BodyCaptureMiddleware())
    }
    if !configuration.corsOrigins.isEmpty {
        router.add(middleware: CORSGate(origins: configuration.corsOrigins))
    }
    router.add(
        middleware: ErrorMiddleware(maxBodyBytes: configuration.maxBodyBytes))
    let sessions = DashboardSessions(masterKey: configuration.masterKey, store: store, now: now)
    router.add(
        middleware: AccessMiddleware(
            directory: directory, limiter: limiter, authMode: configuration.auth, metrics: metrics, sessions: sessions,
            worstCase: worstCaseCost(pool: pool, calculator: calculator, localUpstreams: localUpstreams),
            reservationHold: configuration.reservationHold, maxBodyBytes: configuration.maxBodyBytes, now: now))
    APIRoutes(gateway: gateway).addRoutes(to: router)
    OperationsRoutes(
        upstreams: upstreams, pool: gateway.pool, metrics: metrics, probeTimeout: .seconds(2),
        probeResults: probeResults ?? ProbeResults(maxAge: ProbeResults.maxAge(probeInterval: configuration.probeInterval)),
        directory: directory, scheduler: gateway.scheduler
    ).addRoutes(to: router)
    AdminRoutes(directory: directory, store: store, configuration: configuration, keySync: keySync, now: now).addRoutes(to: router.group("admin"))
    DashboardRoutes(
        directory: directory, sessions: sessions, metrics: metrics, secureCookie: configuration.tlsCert != nil,
        loginAttempts: RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 10, now: now()), now: now)
        .addRoutes(to: router)
    return router
}
