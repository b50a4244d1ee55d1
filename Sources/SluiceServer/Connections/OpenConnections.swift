import CoreMetrics
import Synchronization

/// The number of client connections open, against `max-connections`; shared by every event loop.
final class OpenConnections: Sendable {
    let limit: Int
    private let count = Atomic<Int>(0)
    private let gauge: CoreMetrics.Gauge

    init(limit: Int, metrics: GatewayMetrics) {
        self.limit = limit
        self.gauge = metrics.clientConnectionsOpen
    }

    /// Takes a place for a new connection; false when every place is taken, and then nothing was taken.
    func admit() -> Bool {
        var current = count.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = count.weakCompareExchange(
                expected: current, desired: current + 1, successOrdering: .relaxed, failureOrdering: .relaxed)
            if exchanged {
                gauge.record(current + 1)
                return true
            }
            current = original
        }
        return false
    }

    /// Gives back the place of a connection that was admitted and has closed.
    func release() {
        let now = count.subtract(1, ordering: .relaxed).newValue
        gauge.record(now)
    }

    var current: Int { count.load(ordering: .relaxed) }
}
