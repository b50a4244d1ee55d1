import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceStore

/// Exchanges the ``SharedRateLimiter``'s leases with the store every `interval`, and at once when a request meets
/// a limit this instance holds no lease of.
///
/// A failed exchange switches the limiter to its per-instance fallback (logged once, counted in
/// `sluice_rate_limit_fallbacks_total`, shown by `sluice_rate_limit_fallback`); the next good one switches back.
/// On graceful shutdown every lease is handed back, so other instances need not wait for it to expire.
public struct RateLimitSync: Service {
    let limiter: SharedRateLimiter
    let store: any GatewayStore
    let interval: Duration
    let logger: Logger
    let metrics: GatewayMetrics
    let now: @Sendable () -> Double

    public init(
        limiter: SharedRateLimiter, store: any GatewayStore, interval: Duration, logger: Logger, metrics: GatewayMetrics,
        now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.limiter = limiter
        self.store = store
        self.interval = interval
        self.logger = logger
        self.metrics = metrics
        self.now = now
    }

    public func run() async throws {
        metrics.rateLimitFallback(false)
        await cancelWhenGracefulShutdown {
            var lastSweep = self.now()
            while !Task.isCancelled {
                await self.exchange()
                if self.now() - lastSweep > 60 {
                    lastSweep = self.now()
                    _ = try? await self.store.forgetFullRateBuckets(now: lastSweep)
                }
                await self.limiter.doorbell.wait(atMost: self.interval)
            }
        }
        // Hand every lease back and charge what is owed, so no share stays locked up by an instance that is gone.
        let requests = limiter.leaseRequests(now: now()).map { request in
            var request = request
            request.returned += request.kept
            request.kept = 0
            request.wantsShare = false
            return request
        }
        do {
            _ = try await store.exchangeRateLeases(requests, instances: limiter.instances, now: now())
        } catch {
            logger.debug("could not hand rate-limit leases back", metadata: ["error": "\(error)"])
        }
    }

    struct Exchanged: Sendable {
        var live: Int
        var leases: [RateLease]
    }

    /// How long one exchange may take before the store counts as unreachable.
    var deadline: Duration { max(.seconds(1), interval * 8) }

    /// One exchange: reads how many instances are live, then swaps leases.
    func exchange() async {
        let time = now()
        let requests = limiter.leaseRequests(now: time)
        do {
            let store = self.store
            let (falling, known) = (limiter.isFallingBack, limiter.instances)
            // A store that does not answer in time counts as unreachable, also when a connection hangs.
            let answer = try await firstOrDeadline(deadline) { () async throws -> Exchanged in
                var live = try await store.liveInstances(reportedSince: time - KeyPropagation.liveWindow)
                // Right after an outage the others have not reported yet: keep the count from before, so the
                // first instance back does not take their shares before they have charged what they admitted.
                if falling { live = max(live, known) }
                return Exchanged(live: live, leases: try await store.exchangeRateLeases(requests, instances: max(1, live), now: time))
            }
            guard let (live, leases) = answer.map({ ($0.live, $0.leases) }) else {
                throw StoreError("the store did not answer a lease exchange within \(deadline)")
            }
            metrics.rateLimitExchange(ok: true)
            if limiter.apply(leases, instances: live) {
                metrics.rateLimitFallback(false)
                logger.info("shared rate limits restored: the store is reachable again")
            }
        } catch {
            metrics.rateLimitExchange(ok: false)
            if limiter.exchangeFailed() {
                metrics.rateLimitFallback(true)
                logger.warning(
                    "cannot reach the store for shared rate limits; each instance now enforces limit / live instances",
                    metadata: ["live_instances": "\(limiter.instances)", "error": "\(error)"])
            }
        }
    }
}
