/// What one instance asks of a rate limit held in the shared store: hand back what it did not use and what it
/// admitted on credit, and take its share of what is left.
///
/// The store holds each limit as one token bucket (`scope` is its name, e.g. `key:ID:rpm`); instances hold leases
/// of it. Tokens leased to an instance are gone from the shared bucket until handed back, so two instances can
/// never admit against the same token.
public struct RateLeaseRequest: Sendable, Equatable {
    public var scope: String
    /// The bucket's size: the limit per minute, or the burst of a per-second limit.
    public var capacity: Double
    public var refillPerSecond: Double
    /// Added to the shared bucket: leased tokens handed back, minus what was spent beyond any lease (admitted on
    /// first-contact credit, during a store outage, or tokens a finished request used beyond its lease). May be
    /// negative.
    public var returned: Double
    /// Leased tokens the instance goes on holding; its new share is topped up to a fair share, not added on top.
    public var kept: Double
    /// False for a limit this instance has stopped using: it hands everything back and takes nothing.
    public var wantsShare: Bool

    public init(scope: String, capacity: Double, refillPerSecond: Double, returned: Double, kept: Double, wantsShare: Bool) {
        self.scope = scope
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
        self.returned = returned
        self.kept = kept
        self.wantsShare = wantsShare
    }
}

/// The store's answer to one ``RateLeaseRequest``.
public struct RateLease: Sendable, Equatable {
    public var scope: String
    /// Tokens newly leased to the instance.
    public var granted: Double
    /// What is left in the shared bucket after this grant (negative while in debt).
    public var available: Double

    public init(scope: String, granted: Double, available: Double) {
        self.scope = scope
        self.granted = granted
        self.available = available
    }
}

/// The arithmetic of one lease exchange, the same for every store so they cannot disagree.
public enum RateLeaseArithmetic {
    /// The bucket's new balance and the grant, given its stored balance (nil: never used, so full).
    ///
    /// The bucket refills continuously up to its capacity. A grant is whole tokens, never more than the bucket
    /// holds, and tops the instance's holding up to `ceil(available / instances)`: with every live instance
    /// asking, the shares add up to at most what the bucket holds.
    public static func exchange(
        stored: (tokens: Double, updatedAt: Double)?, _ request: RateLeaseRequest, instances: Int, now: Double
    ) -> (tokens: Double, lease: RateLease) {
        let refilled =
            if let stored {
                min(request.capacity, stored.tokens + max(0, now - stored.updatedAt) * request.refillPerSecond)
            } else {
                request.capacity
            }
        let available = min(request.capacity, refilled + request.returned)
        guard request.wantsShare else {
            return (available, RateLease(scope: request.scope, granted: 0, available: available))
        }
        let share = (max(0, available) / Double(max(1, instances))).rounded(.up)
        let granted = max(0, min(available.rounded(.down), share - request.kept))
        return (available - granted, RateLease(scope: request.scope, granted: granted, available: available - granted))
    }
}
