import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOPosix
import ServiceLifecycle
import SluiceCore
import SluiceUpstream

/// What `buildApplication` may be handed instead of building it from the configuration (tests, benchmarks).
public struct ApplicationDependencies: Sendable {
    public var upstreams: [any UpstreamProvider]?
    public var recorder: any UsageRecorder
    public var metrics: GatewayMetrics
    public var now: @Sendable () -> Double

    public init(
        upstreams: [any UpstreamProvider]? = nil,
        recorder: any UsageRecorder = DiscardingUsageRecorder(),
        metrics: GatewayMetrics = GatewayMetrics(),
        now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.upstreams = upstreams
        self.recorder = recorder
        self.metrics = metrics
        self.now = now
    }
}

/// Builds the gateway application the binary runs and the tests drive.
public func buildApplication(
    configuration: GatewayConfiguration,
    logger: Logger,
    dependencies: ApplicationDependencies = .init()
) -> some ApplicationProtocol {
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
            }
        }
    }

    let router = buildRouter(configuration: configuration, upstreams: upstreams, dependencies: dependencies)
    return Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sluice"),
        services: services,
        logger: logger)
}

/// The router with every route and middleware, on its own so route tests can use it without an application.
public func buildRouter(
    configuration: GatewayConfiguration,
    upstreams: [any UpstreamProvider],
    dependencies: ApplicationDependencies
) -> Router<SluiceRequestContext> {
    let metrics = dependencies.metrics
    let gateway = Gateway(upstreams: upstreams, metrics: metrics, maxBodyBytes: configuration.maxBodyBytes, now: dependencies.now)
    let router = Router(context: SluiceRequestContext.self)
    // Outermost first: the request ID must be set before anything logs, and errors must become
    // responses before observation sees their status.
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ObservabilityMiddleware(metrics: metrics, recorder: dependencies.recorder, now: dependencies.now))
    router.add(
        middleware: ErrorMiddleware(
            knownPaths: OpenAIRoutes.paths.union(NativeRoutes.paths).union(OperationsRoutes.paths),
            knownPrefixes: ["/v1/models/"],
            maxBodyBytes: configuration.maxBodyBytes))
    OpenAIRoutes(gateway: gateway).addRoutes(to: router.group("v1"))
    NativeRoutes(gateway: gateway).addRoutes(to: router)
    OperationsRoutes(upstreams: upstreams, metrics: metrics, probeTimeout: .seconds(2)).addRoutes(to: router)
    return router
}
