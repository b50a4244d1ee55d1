import ServiceLifecycle
import Synchronization

/// When streams still open at shutdown must be ended, so that they end cleanly instead of being cut.
///
/// Graceful shutdown waits `shutdown-grace` for in-flight requests; then the service group cancels everything,
/// which would drop a long stream's connection without its dialect's error event and lose its usage record with
/// the usage writer. Instead, a stream relay that sees shutdown under way ends itself once `grace - margin` has
/// passed since shutdown began, with an error event and a record (`error_code` `shutdown`, tokens so far), leaving
/// the margin for those records' final flush.
public final class ShutdownDrain: Sendable {
    /// From the moment shutdown is first noticed until streams are ended.
    let window: Duration
    /// When shutdown was first noticed, as `ContinuousClock` nanoseconds since `origin`; 0 until then.
    private let noticedAt = Atomic<Int64>(0)
    private let origin = ContinuousClock.now

    public init(grace: Duration) {
        // A quarter of the grace, at most two seconds, is left for the records' flush and the event's delivery.
        let margin = min(grace / 4, .seconds(2))
        self.window = grace - margin
    }

    /// Notes that graceful shutdown has begun (the first call counts).
    func begin() {
        let elapsed = (ContinuousClock.now - origin).nanoseconds
        _ = noticedAt.compareExchange(expected: 0, desired: max(1, elapsed), ordering: .relaxed)
    }

    /// True when the calling stream should end now; cheap enough to ask for every chunk.
    func streamsMustEnd() -> Bool {
        guard Task.isShuttingDownGracefully else { return false }
        let elapsed = (ContinuousClock.now - origin).nanoseconds
        let (_, first) = noticedAt.compareExchange(expected: 0, desired: max(1, elapsed), ordering: .relaxed)
        let start = first == 0 ? max(1, elapsed) : first
        return Duration.nanoseconds(elapsed - start) >= window
    }
}
