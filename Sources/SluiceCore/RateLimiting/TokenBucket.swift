/// A token bucket: holds up to `capacity` tokens, refilled continuously at `refillPerSecond`.
///
/// Pure arithmetic over an injected clock; the server keeps buckets behind a lock. A bucket may go negative when
/// a cost is charged after the fact (tokens counted from a finished response), which then delays admission.
public struct TokenBucket: Sendable, Equatable {
    public let capacity: Double
    public let refillPerSecond: Double
    public private(set) var tokens: Double
    public private(set) var updatedAt: Double

    public init(capacity: Double, refillPerSecond: Double, now: Double) {
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
        self.tokens = capacity
        self.updatedAt = now
    }

    /// A bucket holding `tokens` now (at most its capacity), e.g. what was left of a lease.
    public init(capacity: Double, refillPerSecond: Double, tokens: Double, now: Double) {
        self.init(capacity: capacity, refillPerSecond: refillPerSecond, now: now)
        self.tokens = min(capacity, tokens)
    }

    /// A bucket for "N per minute": bursts of N, refilled evenly over a minute.
    public static func perMinute(_ limit: Int, now: Double) -> TokenBucket {
        TokenBucket(capacity: Double(limit), refillPerSecond: Double(limit) / 60, now: now)
    }

    /// The outcome of asking for tokens.
    public struct Decision: Sendable, Equatable {
        public var allowed: Bool
        public var limit: Int
        /// Whole tokens left after this decision.
        public var remaining: Int
        /// Seconds until the bucket is full again.
        public var resetSeconds: Double
        /// Seconds until the refused request could be admitted; 0 when allowed.
        public var retryAfterSeconds: Double

        public init(allowed: Bool, limit: Int, remaining: Int, resetSeconds: Double, retryAfterSeconds: Double) {
            self.allowed = allowed
            self.limit = limit
            self.remaining = remaining
            self.resetSeconds = resetSeconds
            self.retryAfterSeconds = retryAfterSeconds
        }
    }

    mutating func refill(now: Double) {
        if now > updatedAt {
            tokens = min(capacity, tokens + (now - updatedAt) * refillPerSecond)
            updatedAt = now
        }
    }

    /// Takes `cost` tokens if the bucket holds them; a refused request takes nothing.
    public mutating func take(_ cost: Double = 1, now: Double) -> Decision {
        refill(now: now)
        let allowed = tokens >= cost
        if allowed { tokens -= cost }
        return decision(allowed: allowed, wanted: cost)
    }

    /// Admits while the balance is positive, taking nothing: for limits charged afterwards (tokens per minute).
    public mutating func check(now: Double) -> Decision {
        refill(now: now)
        return decision(allowed: tokens > 0, wanted: Double.ulpOfOne)
    }

    /// Charges `cost` after the fact; the balance may go negative.
    public mutating func charge(_ cost: Double, now: Double) {
        refill(now: now)
        tokens -= cost
    }

    /// True when the bucket is full at `now`, so forgetting it changes nothing.
    public func isIdle(now: Double) -> Bool {
        tokens + max(0, now - updatedAt) * refillPerSecond >= capacity
    }

    func decision(allowed: Bool, wanted: Double) -> Decision {
        let missing = max(0, wanted - tokens)
        let rate = refillPerSecond > 0 ? refillPerSecond : .leastNonzeroMagnitude
        return Decision(
            allowed: allowed,
            limit: Int(saturating: capacity),
            remaining: max(0, Int(saturating: tokens.rounded(.down))),
            resetSeconds: max(0, capacity - tokens) / rate,
            retryAfterSeconds: allowed ? 0 : missing / rate)
    }
}

/// Formats a duration the way OpenAI's `x-ratelimit-reset-*` headers do: `1s`, `6m0s`, `250ms`.
public func rateLimitResetString(_ seconds: Double) -> String {
    if seconds < 1 {
        return "\(Int(saturating: (seconds * 1000).rounded(.up)))ms"
    }
    let whole = Int(saturating: seconds.rounded(.up))
    if whole < 60 { return "\(whole)s" }
    if whole < 3600 { return "\(whole / 60)m\(whole % 60)s" }
    return "\(whole / 3600)h\(whole % 3600 / 60)m\(whole % 60)s"
}
