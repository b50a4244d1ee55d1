/// Per-upstream circuit breaker: stops sending traffic to an upstream that keeps failing, then probes it with one request.
///
/// A value type with time passed in, so the gateway keeps it under its own lock and tests drive the clock.
public struct CircuitBreaker: Sendable, Equatable {
    /// Where the breaker stands; the raw values are the `sluice_upstream_state` gauge's.
    public enum State: Int, Sendable, Equatable {
        case closed = 0
        case halfOpen = 1
        case open = 2

        public var name: String {
            switch self {
            case .closed: "closed"
            case .halfOpen: "half_open"
            case .open: "open"
            }
        }
    }

    /// Consecutive failures that open the breaker.
    public let failureThreshold: Int
    /// Seconds an open breaker waits before it lets one trial request through.
    public let coolDown: Double
    public private(set) var consecutiveFailures = 0
    private var openedAt: Double?
    /// True while the one half-open trial request is out: others must not pile onto a maybe-dead upstream.
    private var trialInFlight = false

    public init(failureThreshold: Int = 3, coolDown: Double = 10) {
        precondition(failureThreshold >= 1, "a breaker needs at least one failure to open")
        self.failureThreshold = failureThreshold
        self.coolDown = coolDown
    }

    public func state(at now: Double) -> State {
        guard let openedAt else { return .closed }
        return now - openedAt >= coolDown ? .halfOpen : .open
    }

    /// Whether a request may be sent now, without claiming anything.
    public func admits(at now: Double) -> Bool {
        switch state(at: now) {
        case .closed: true
        case .open: false
        case .halfOpen: !trialInFlight
        }
    }

    /// Claims the right to send a request; in half-open this takes the single trial slot.
    public mutating func admit(at now: Double) -> Bool {
        guard admits(at: now) else { return false }
        if state(at: now) == .halfOpen { trialInFlight = true }
        return true
    }

    public mutating func recordSuccess() {
        consecutiveFailures = 0
        openedAt = nil
        trialInFlight = false
    }

    public mutating func recordFailure(at now: Double) {
        consecutiveFailures += 1
        // A failed trial re-opens at once; a closed breaker opens only after the threshold.
        if openedAt != nil || consecutiveFailures >= failureThreshold {
            openedAt = now
        }
        trialInFlight = false
    }

    /// A request that ended without telling anything about the upstream (cancelled): frees the trial slot.
    public mutating func recordAbandoned() {
        trialInFlight = false
    }
}
