import SluiceCore
import SluiceStore
import Synchronization

/// The rate limits of several instances sharing PostgreSQL: each limit is one token bucket in the store, and
/// each instance admits against its lease of it, so no request waits on the database.
///
/// ``RateLimitSync`` exchanges leases every `interval` (≤ 250 ms): an instance hands back what it did not use,
/// charges what it spent beyond its lease, and takes `ceil(available / live instances)` minus what it still holds.
/// The store does this atomically, so leases never add up to more than the bucket holds. The only admissions not
/// backed by a lease are
/// - the first request an instance sees for a limit it holds no lease of (one request, or for a token limit one
///   request's tokens), which also rings for an exchange at once, and
/// - a token-limited request's tokens beyond its instance's lease, known only when it finishes;
/// both are charged to the shared bucket at the next exchange. While the store cannot be reached each instance
/// falls back to its own buckets of `limit / live instances` (the live count last read), starting from what it
/// still holds of its lease, and charges what it admitted when the store is back.
public final class SharedRateLimiter: RequestLimiter {
    /// One limit as it applies to a request.
    struct Limit: Equatable, Sendable {
        var role: LimitRole
        var scope: String
        var capacity: Double
        var refillPerSecond: Double
    }

    /// This instance's part of one shared limit.
    /// Requests an instance may admit for a limit it meets before its first lease of it arrives: a few, at most
    /// the share it would be lent (one request of credit refused a new key's second request on an instance still
    /// waiting for the store, a 429 no limit called for). The overdraft is charged at that exchange.
    static func firstContactCredit(for limit: Limit, instances: Int) -> Double {
        limit.role.countsTokens ? 1 : min(5, max(1, (limit.capacity / Double(max(1, instances))).rounded(.down)))
    }

    struct Holding: Sendable {
        var limit: Limit
        /// Leased tokens not yet used.
        var granted: Double = 0
        /// Allowance not backed by a lease: the first-contact request, or negative after tokens beyond the lease.
        var credit: Double
        /// Spent beyond any lease since the last exchange; charged to the shared bucket at the next one.
        var debt: Double = 0
        /// The shared bucket after the last exchange (for the `x-ratelimit-remaining-*` headers).
        var available: Double
        var lastUsed: Double
        var usedSinceExchange = false
        var idleExchanges = 0
        /// The per-instance bucket used while the store is unreachable.
        var fallback: TokenBucket?
        /// Whether a lease exchange has answered for this limit yet.
        var exchanged = false

        init(limit: Limit, now: Double) {
            self.limit = limit
            self.credit = 1
            self.available = limit.capacity
            self.lastUsed = now
        }

        var balance: Double { granted + credit }

        /// Unused for two exchanges, it handed its lease back and holds nothing.
        var handedBack: Bool { idleExchanges >= 2 && granted <= 0 && credit <= 0 }

        mutating func consume(_ amount: Double) {
            let fromLease = min(max(0, granted), amount)
            granted -= fromLease
            credit -= amount - fromLease
            debt += amount - fromLease
        }
    }

    /// What an exchange in flight handed back, restored if it fails.
    struct Sent: Sendable {
        var handedBack: Double
        var debt: Double
    }

    struct State: Sendable {
        var holdings: [String: Holding] = [:]
        var sent: [String: Sent] = [:]
        var instances = 1
        var fallback = false
    }

    let global: (rps: Double, burst: Int)?
    let ipRPM: Int
    /// Seconds between exchanges: how soon a refused client may find a new share.
    let interval: Double
    let doorbell = Doorbell()
    private let state = Mutex(State())

    public init(globalRPS: Double, globalBurst: Int, ipRPM: Int, interval: Duration) {
        self.global = globalRPS > 0 ? (globalRPS, max(1, globalBurst > 0 ? globalBurst : Int(saturating: globalRPS.rounded(.up)))) : nil
        self.ipRPM = ipRPM
        self.interval = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
    }

    /// The limits that apply to a request, in the order their refusals are reported.
    func limits(clientIP: String?, key: APIKeyRecord?, team: TeamRecord?) -> [Limit] {
        var limits: [Limit] = []
        if let global {
            limits.append(Limit(role: .global, scope: "global", capacity: Double(global.burst), refillPerSecond: global.rps))
        }
        if ipRPM > 0, let clientIP {
            limits.append(Self.perMinute(.ip, scope: "ip:\(clientIP)", ipRPM))
        }
        if let key {
            if let rpm = key.rpm, rpm > 0 { limits.append(Self.perMinute(.keyRequests, scope: "key:\(key.id):rpm", rpm)) }
            if let tpm = key.tpm, tpm > 0 { limits.append(Self.perMinute(.keyTokens, scope: "key:\(key.id):tpm", tpm)) }
        }
        if let team {
            if let rpm = team.rpm, rpm > 0 { limits.append(Self.perMinute(.teamRequests, scope: "team:\(team.id):rpm", rpm)) }
            if let tpm = team.tpm, tpm > 0 { limits.append(Self.perMinute(.teamTokens, scope: "team:\(team.id):tpm", tpm)) }
        }
        return limits
    }

    static func perMinute(_ role: LimitRole, scope: String, _ limit: Int) -> Limit {
        Limit(role: role, scope: scope, capacity: Double(limit), refillPerSecond: Double(limit) / 60)
    }

    public func admit(clientIP: String?, key: APIKeyRecord?, team: TeamRecord? = nil, now: Double) -> RateLimiter.Verdict {
        let limits = limits(clientIP: clientIP, key: key, team: team)
        guard !limits.isEmpty else { return RateLimiter.Verdict() }
        let (verdict, met) = state.withLock { state -> (RateLimiter.Verdict, Bool) in
            var met = false
            // Each limit's holding before and after its decision: a refused request takes nothing from any limit.
            var prepared: [Holding] = []
            var candidates: [Holding] = []
            var decisions: [(LimitRole, TokenBucket.Decision)] = []
            for limit in limits {
                var holding: Holding
                if let existing = state.holdings[limit.scope] {
                    holding = existing
                    if holding.limit != limit {
                        // The key's limit was edited: the store's bucket takes the new size at the next exchange.
                        holding.limit = limit
                        holding.fallback = nil
                    }
                    if holding.handedBack, !state.fallback {
                        // Idle long enough to have handed its lease back: met again, as a limit met for the first
                        // time is, or a slowly used limit would find no lease and be refused for a minute.
                        holding.idleExchanges = 0
                        holding.credit = Self.firstContactCredit(for: limit, instances: state.instances)
                        met = true
                    }
                } else {
                    holding = Holding(limit: limit, now: now)
                    holding.credit = Self.firstContactCredit(for: limit, instances: state.instances)
                    met = true
                }
                prepared.append(holding)
                decisions.append((limit.role, Self.decide(&holding, state: state, now: now)))
                candidates.append(holding)
            }
            let refused = decisions.first { !$0.1.allowed }
            for (index, var holding) in candidates.enumerated() {
                let scope = holding.limit.scope
                if refused == nil {
                    holding.lastUsed = now
                    holding.usedSinceExchange = true
                    state.holdings[scope] = holding
                } else {
                    // Refused: nothing is taken from any limit, but each is wanted, so each keeps (or gets) a lease at
                    // the next exchange; a refusing limit's fallback bucket keeps refilling from where it is.
                    var kept = prepared[index]
                    kept.usedSinceExchange = true
                    if !decisions[index].1.allowed { kept.fallback = holding.fallback }
                    state.holdings[scope] = kept
                }
            }
            return (Self.verdict(decisions, refused: refused), met)
        }
        if met { doorbell.ring() }
        return verdict
    }

    /// Decides one limit on a copy of its holding, taking a request's token when admitted.
    static func decide(_ holding: inout Holding, state: State, now: Double) -> TokenBucket.Decision {
        let limit = holding.limit
        let cost: Double = limit.role.countsTokens ? 0 : 1
        if state.fallback {
            let share = Double(max(1, state.instances))
            // It starts from what the instance still holds of its lease, so the outage adds nothing to what the
            // shared bucket had lent out; a limit first met during the outage starts full.
            let capacity = max(1, (limit.capacity / share).rounded(.down))
            // A limit handed back while idle holds no lease yet its share has refilled: it starts full, as one met
            // for the first time during the outage does.
            let start = holding.exchanged && holding.idleExchanges < 2 ? max(0, holding.granted) : capacity
            var bucket =
                holding.fallback
                ?? TokenBucket(capacity: capacity, refillPerSecond: limit.refillPerSecond / share, tokens: start, now: now)
            let decision = limit.role.countsTokens ? bucket.check(now: now) : bucket.take(now: now)
            holding.fallback = bucket
            if decision.allowed { holding.consume(cost) }
            return decision
        }
        let allowed = limit.role.countsTokens ? holding.balance > 0 : holding.balance >= 1
        if allowed { holding.consume(cost) }
        let left = max(0, holding.available) + max(0, holding.balance)
        let rate = limit.refillPerSecond > 0 ? limit.refillPerSecond : .leastNonzeroMagnitude
        return TokenBucket.Decision(
            allowed: allowed, limit: Int(saturating: limit.capacity), remaining: Int(saturating: left.rounded(.down)),
            resetSeconds: max(0, limit.capacity - left) / rate,
            retryAfterSeconds: allowed ? 0 : max(0.25, (1 - holding.available) / rate))
    }

    static func verdict(_ decisions: [(LimitRole, TokenBucket.Decision)], refused: (LimitRole, TokenBucket.Decision)?) -> RateLimiter.Verdict {
        var verdict = RateLimiter.Verdict()
        if let refused {
            verdict.refusedBy = refused.0.refusal
            verdict.retryAfter = refused.1.retryAfterSeconds
        }
        func decision(_ role: LimitRole) -> TokenBucket.Decision? { decisions.first { $0.0 == role }?.1 }
        let refusingRequests = refused.flatMap { $0.0.countsTokens ? nil : $0.1 }
        if let d = refusingRequests ?? decision(.keyRequests) ?? decision(.teamRequests) ?? decision(.ip) {
            verdict.headers += [
                ("x-ratelimit-limit-requests", String(d.limit)),
                ("x-ratelimit-remaining-requests", String(d.remaining)),
                ("x-ratelimit-reset-requests", rateLimitResetString(d.resetSeconds)),
            ]
        }
        let refusingTokens = refused.flatMap { $0.0.countsTokens ? $0.1 : nil }
        if let d = refusingTokens ?? decision(.keyTokens) ?? decision(.teamTokens) {
            verdict.headers += [
                ("x-ratelimit-limit-tokens", String(d.limit)),
                ("x-ratelimit-remaining-tokens", String(d.remaining)),
                ("x-ratelimit-reset-tokens", rateLimitResetString(d.resetSeconds)),
            ]
        }
        return verdict
    }

    public func chargeTokens(keyID: String, teamID: String? = nil, tokens: Int, now: Double) {
        guard tokens > 0 else { return }
        let scopes = ["key:\(keyID):tpm"] + (teamID.map { ["team:\($0):tpm"] } ?? [])
        state.withLock { state in
            for scope in scopes {
                guard var holding = state.holdings[scope] else { continue }
                holding.consume(Double(tokens))
                holding.fallback?.charge(Double(tokens), now: now)
                holding.lastUsed = now
                holding.usedSinceExchange = true
                state.holdings[scope] = holding
            }
        }
    }

    // MARK: Exchanges (driven by RateLimitSync)

    /// What to send in the next exchange, and forgets limits idle long enough that their bucket is full again.
    ///
    /// A limit unused for two exchanges hands its lease back, so an idle instance holds no share for longer than
    /// two intervals.
    func leaseRequests(now: Double) -> [RateLeaseRequest] {
        state.withLock { state in
            var requests: [RateLeaseRequest] = []
            for (scope, var holding) in state.holdings {
                holding.idleExchanges = holding.usedSinceExchange ? 0 : holding.idleExchanges + 1
                let wantsShare = holding.idleExchanges < 2
                if !wantsShare, holding.granted <= 0, holding.debt == 0 {
                    // Nothing to hand back or charge; forget it once its bucket would have refilled from empty.
                    let refillTime = holding.limit.capacity / max(holding.limit.refillPerSecond, .leastNonzeroMagnitude)
                    if now - holding.lastUsed > refillTime, !state.fallback { state.holdings[scope] = nil } else { state.holdings[scope] = holding }
                    continue
                }
                let kept = wantsShare ? max(0, holding.granted) : 0
                let handedBack = max(0, holding.granted) - kept
                requests.append(
                    RateLeaseRequest(
                        scope: scope, capacity: holding.limit.capacity, refillPerSecond: holding.limit.refillPerSecond,
                        returned: handedBack - holding.debt, kept: kept, wantsShare: wantsShare))
                state.sent[scope] = Sent(handedBack: handedBack, debt: holding.debt)
                holding.granted = kept
                holding.debt = 0
                holding.usedSinceExchange = false
                state.holdings[scope] = holding
            }
            return requests
        }
    }

    /// Takes the store's answers; returns true when this ends a fallback.
    @discardableResult
    func apply(_ leases: [RateLease], instances: Int) -> Bool {
        state.withLock { state in
            let recovered = state.fallback
            state.fallback = false
            state.instances = max(1, instances)
            state.sent = [:]
            for lease in leases {
                guard var holding = state.holdings[lease.scope] else { continue }
                holding.granted += lease.granted
                holding.available = lease.available
                // The first-contact credit, and any overdraft of it, are charged to the store by now.
                holding.credit = 0
                holding.fallback = nil
                holding.exchanged = true
                state.holdings[lease.scope] = holding
            }
            if recovered {
                for scope in state.holdings.keys { state.holdings[scope]?.fallback = nil }
            }
            return recovered
        }
    }

    /// The exchange failed: keeps what it would have handed back and charged, and falls back to per-instance
    /// limits. Returns true when this starts a fallback.
    @discardableResult
    func exchangeFailed() -> Bool {
        state.withLock { state in
            for (scope, sent) in state.sent {
                state.holdings[scope]?.granted += sent.handedBack
                state.holdings[scope]?.debt += sent.debt
            }
            state.sent = [:]
            let started = !state.fallback
            state.fallback = true
            return started
        }
    }

    /// Whether admissions are decided by the per-instance fallback.
    public var isFallingBack: Bool { state.withLock { $0.fallback } }

    /// The live instance count last read from the store.
    public var instances: Int { state.withLock { $0.instances } }
}
