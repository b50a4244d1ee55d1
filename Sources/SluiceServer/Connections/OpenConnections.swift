import CoreMetrics
import Synchronization

/// The number of client connections open, against `max-connections`; shared by every event loop.
///
/// A lock rather than an atomic: the gauge is set under it too, so two loops cannot set it out of order and leave it
/// showing a count that is no longer true. It is taken once when a connection opens and once when it closes.
final class OpenConnections: Sendable {
    let limit: Int
    private let count = Mutex(0)
    private let gauge: CoreMetrics.Gauge

    init(limit: Int, metrics: GatewayMetrics) {
        self.limit = limit
        self.gauge = metrics.clientConnectionsOpen
    }

    /// Takes a place for a new connection; false when every place is taken, and then nothing was taken.
    func admit() -> Bool {
        count.withLock { count in
            guard count < limit else { return false }
            count += 1
            gauge.record(count)
            return true
        }
    }

    /// Gives back the place of a connection that was admitted and has closed.
    func release() {
        count.withLock { count in
            count -= 1
            gauge.record(count)
        }
    }
}
