import Logging
import ServiceLifecycle
import SluiceCore
import SluiceUpstream

/// Probes every upstream on an interval and feeds the results to their circuit breakers, as a service.
///
/// Failed probes open a dead upstream's breaker before clients meet it; a successful probe closes an open one,
/// so a recovered upstream returns to rotation without a client paying for the trial. With a zero interval it
/// only waits for shutdown (a service that returned early would end the whole group).
struct UpstreamProber: Service {
    let pool: UpstreamPool
    /// Where `/readyz` reads each round's results.
    let results: ProbeResults
    /// Asked what each Ollama upstream has loaded after its probe succeeds.
    let residency: ModelResidency?
    let interval: Duration
    /// A probe slower than this counts as failed.
    let timeout: Duration
    let logger: Logger

    /// A probe slower than this counts as failed, unless a prober is given another.
    static let defaultTimeout = Duration.seconds(2)

    init(
        pool: UpstreamPool, results: ProbeResults = ProbeResults(maxAge: .seconds(1)), residency: ModelResidency? = nil, interval: Duration,
        timeout: Duration = defaultTimeout, logger: Logger
    ) {
        self.pool = pool
        self.results = results
        self.residency = residency
        self.interval = interval
        // Never longer than the interval, so one round is over before the next is due.
        self.timeout = interval > .zero ? min(timeout, interval) : timeout
        self.logger = logger
    }

    func run() async throws {
        guard interval > .zero else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await cancelWhenGracefulShutdown { await probeOnce() }
            try? await cancelWhenGracefulShutdown { [interval] in try await Task.sleep(for: interval) }
        }
    }

    /// Probes all upstreams at once and records each result; a probe cut short by shutdown records nothing.
    func probeOnce() async {
        await withTaskGroup(of: Void.self) { group in
            for (index, upstream) in pool.upstreams.enumerated() {
                group.addTask { [pool, results, residency, timeout, logger] in
                    let failure = await ProbeResults.probe(upstream, timeout: timeout, logger: logger)
                    // Our own cancellation says nothing about the upstream.
                    if Task.isCancelled { return }
                    let ok = failure == nil
                    await results.record(index, ok: ok, error: failure)
                    let name = upstream.endpoint.name
                    pool.metrics.upstreamProbe(upstream: name, ok: ok)
                    let (before, after) = pool.recordProbe(index, ok: ok)
                    if ok { await residency?.refresh(index) }
                    if before != .open, after == .open {
                        logger.warning("upstream failed its probes; breaker opened", metadata: ["upstream": .string(name)])
                    } else if before != .closed, after == .closed {
                        logger.notice("upstream answers its probe again; breaker closed", metadata: ["upstream": .string(name)])
                    }
                }
            }
        }
    }
}
