import SluiceCore
import SluiceUpstream
import Synchronization

/// The upstreams with their live routing state: one circuit breaker and one in-flight count each.
final class UpstreamPool: Sendable {
    let upstreams: [any UpstreamProvider]
    let metrics: GatewayMetrics
    let now: @Sendable () -> Double

    private struct Entry {
        var breaker: CircuitBreaker
        var inFlight = 0
    }

    private let entries: Mutex<[Entry]>

    /// How one attempt ended, as far as the upstream's health goes.
    enum Outcome {
        case success
        case failure
        /// Cancelled, or refused for the client's fault: says nothing about the upstream.
        case neutral
    }

    init(upstreams: [any UpstreamProvider], metrics: GatewayMetrics, failureThreshold: Int = 3, coolDown: Double = 10, now: @escaping @Sendable () -> Double) {
        self.upstreams = upstreams
        self.metrics = metrics
        self.now = now
        self.entries = Mutex(upstreams.map { _ in Entry(breaker: CircuitBreaker(failureThreshold: failureThreshold, coolDown: coolDown)) })
        refreshGauges()
    }

    /// Indices of the upstreams serving `model`, whatever their state.
    func servers(of model: String) -> [Int] {
        UpstreamChooser.servers(of: model, in: upstreams.map { UpstreamChooser.Candidate(models: $0.endpoint.models) })
    }

    /// Picks an upstream for the next attempt and counts it in flight; nil when none is left.
    ///
    /// With `failOpen`, when every untried server's breaker refuses, one is picked anyway: a request
    /// that has nowhere else to go is better sent to a maybe-dead upstream than refused outright.
    func acquire(model: String, excluding tried: Set<Int>, failOpen: Bool) -> Int? {
        let time = now()
        let chosen: Int? = entries.withLock { entries in
            var rng = SystemRandomNumberGenerator()
            var candidates = upstreams.indices.map { i in
                UpstreamChooser.Candidate(
                    models: upstreams[i].endpoint.models, weight: upstreams[i].endpoint.weight, inFlight: entries[i].inFlight,
                    admitted: entries[i].breaker.admits(at: time))
            }
            var pick = UpstreamChooser.choose(model: model, candidates: candidates, excluding: tried, using: &rng)
            if pick == nil, failOpen {
                for i in candidates.indices { candidates[i].admitted = true }
                pick = UpstreamChooser.choose(model: model, candidates: candidates, excluding: tried, using: &rng)
            }
            guard let pick else { return nil }
            _ = entries[pick].breaker.admit(at: time)
            entries[pick].inFlight += 1
            return pick
        }
        refreshGauges()
        return chosen
    }

    /// Ends an attempt started by `acquire`, feeding its outcome to the breaker.
    func release(_ index: Int, outcome: Outcome) {
        let time = now()
        entries.withLock { entries in
            entries[index].inFlight -= 1
            switch outcome {
            case .success: entries[index].breaker.recordSuccess()
            case .failure: entries[index].breaker.recordFailure(at: time)
            case .neutral: entries[index].breaker.recordAbandoned()
            }
        }
        refreshGauges()
    }

    func state(of index: Int) -> CircuitBreaker.State {
        let time = now()
        return entries.withLock { $0[index].breaker.state(at: time) }
    }

    /// Sets `sluice_upstream_state` for every upstream; open turns half-open by time alone, so readers call this too.
    func refreshGauges() {
        let time = now()
        let states = entries.withLock { entries in entries.map { $0.breaker.state(at: time) } }
        for (upstream, state) in zip(upstreams, states) {
            metrics.upstreamState(upstream: upstream.endpoint.name, state: state.rawValue)
        }
    }
}
