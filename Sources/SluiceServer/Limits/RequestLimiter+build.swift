import Logging
import ServiceLifecycle
import SluiceStore

/// The limiter for this store: limits shared through PostgreSQL (with their lease exchange as a service) when the
/// store is PostgreSQL, else today's exact in-memory limiter of a single instance.
func makeRequestLimiter(
    configuration: GatewayConfiguration, store: (any GatewayStore)?, logger: Logger, dependencies: ApplicationDependencies,
    services: inout [any Service]
) -> any RequestLimiter {
    guard let store, store is PostgresStore else {
        return RateLimiter(
            globalRPS: configuration.rateLimitRPS, globalBurst: configuration.rateLimitBurst, ipRPM: configuration.ipRateLimitRPM,
            now: dependencies.now())
    }
    let limiter = SharedRateLimiter(
        globalRPS: configuration.rateLimitRPS, globalBurst: configuration.rateLimitBurst, ipRPM: configuration.ipRateLimitRPM,
        interval: configuration.rateLimitSyncInterval)
    services.append(
        RateLimitSync(
            limiter: limiter, store: store, interval: configuration.rateLimitSyncInterval, logger: logger,
            metrics: dependencies.metrics, now: dependencies.now))
    return limiter
}
