import Logging
import SluiceCore
import SluiceUpstream

/// The last probe result of each upstream, shared by the background prober and `/readyz`.
///
/// `/readyz` answers from here, so a load balancer polling it thousands of times a second causes no upstream
/// traffic. Only when a result is missing or older than `maxAge` (no prober running, or before its first round)
/// does a `/readyz` call probe, and concurrent calls then share that one round.
actor ProbeResults {
    struct Result: Sendable {
        var ok: Bool
        /// The error code of a failed probe (`upstream_unreachable`, `upstream_timeout`, …).
        var error: String?
        /// Monotonic time of the result.
        var at: ContinuousClock.Instant
    }

    private var results: [Int: Result] = [:]
    private var round: Task<Void, Never>?
    private let maxAge: Duration

    /// - Parameter maxAge: how old a result may be and still be reported, in wall time; a prober running every
    ///   `interval` keeps results younger than `interval` plus its probe timeout.
    init(maxAge: Duration) {
        self.maxAge = maxAge
    }

    /// How old a result may be: a running prober's interval plus its probe timeout, or a second when none runs.
    static func maxAge(probeInterval: Duration, probeTimeout: Duration = UpstreamProber.defaultTimeout) -> Duration {
        probeInterval > .zero ? probeInterval + probeTimeout : .seconds(1)
    }

    func record(_ index: Int, ok: Bool, error: String?) {
        results[index] = Result(ok: ok, error: error, at: .now)
    }

    /// Each upstream's result, probing first (once, however many callers wait) where one is missing or stale.
    func current(pool: UpstreamPool, timeout: Duration, logger: Logger) async -> [Int: Result] {
        let now = ContinuousClock.now
        let stale = pool.upstreams.indices.contains { index in results[index].map { now - $0.at > maxAge } ?? true }
        if stale {
            if round == nil {
                round = Task {
                    let fresh = await Self.probeAll(pool: pool, timeout: timeout, logger: logger)
                    self.finishRound(fresh)
                }
            }
            await round?.value
        }
        return results
    }

    private func finishRound(_ fresh: [Int: Result]) {
        results.merge(fresh) { _, new in new }
        round = nil
    }

    /// Probes every upstream at once; observing only, since breakers move on traffic and the prober's rounds.
    static func probeAll(pool: UpstreamPool, timeout: Duration, logger: Logger) async -> [Int: Result] {
        await withTaskGroup(of: (Int, Result).self) { group in
            for (index, upstream) in pool.upstreams.enumerated() {
                group.addTask {
                    let outcome = await probe(upstream, timeout: timeout, logger: logger)
                    return (index, Result(ok: outcome == nil, error: outcome, at: .now))
                }
            }
            var out: [Int: Result] = [:]
            for await (index, result) in group { out[index] = result }
            return out
        }
    }

    /// Nil when the upstream answered its probe in time, else the error code.
    static func probe(_ upstream: any UpstreamProvider, timeout: Duration, logger: Logger) async -> String? {
        do {
            try await withDeadline(timeout) { try await upstream.probe(logger: logger) }
            return nil
        } catch let error as APIError {
            return error.code
        } catch {
            return "upstream_timeout"
        }
    }
}
