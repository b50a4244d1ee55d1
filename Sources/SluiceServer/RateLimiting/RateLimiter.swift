import SluiceCore
import Synchronization

/// Every rate limit the gateway enforces: global, per client IP, per key (requests and tokens).
///
/// One lock around plain token buckets makes each decision atomic, so N concurrent requests against a limit of L
/// admit exactly L. Memory is one bucket per active IP or key; buckets that have refilled completely are
/// forgotten by a sweep whose cost is amortised over the decisions since the last one.
public final class RateLimiter: Sendable {
    /// Global limit: requests per second and burst; nil when off.
    let global: (rps: Double, burst: Int)?
    /// Requests per minute per client IP; 0 when off.
    let ipRPM: Int

    struct State {
        var global: TokenBucket?
        var ips: [String: TokenBucket] = [:]
        var keyRequests: [String: TokenBucket] = [:]
        var keyTokens: [String: TokenBucket] = [:]
        var teamRequests: [String: TokenBucket] = [:]
        var teamTokens: [String: TokenBucket] = [:]
        var decisionsSinceSweep = 0
    }

    private let state: Mutex<State>

    public init(globalRPS: Double, globalBurst: Int, ipRPM: Int, now: Double) {
        self.global = globalRPS > 0 ? (globalRPS, max(1, globalBurst > 0 ? globalBurst : Int(saturating: globalRPS.rounded(.up)))) : nil
        self.ipRPM = ipRPM
        var initial = State()
        if let global {
            initial.global = TokenBucket(capacity: Double(global.burst), refillPerSecond: global.rps, now: now)
        }
        self.state = Mutex(initial)
    }

    /// The verdict on one request; `headers` are the `x-ratelimit-*` values of the binding request limit (the one
    /// that refused, else the key's, else the client address's) and of the key's token limit.
    public struct Verdict: Sendable {
        /// Nil when admitted; otherwise which limit refused it, in words for the error message.
        public var refusedBy: String?
        public var retryAfter: Double = 0
        public var headers: [(name: String, value: String)] = []
    }

    /// Decides on one request, taking from every applicable bucket only when all of them admit it.
    public func admit(clientIP: String?, key: APIKeyRecord?, team: TeamRecord? = nil, now: Double) -> Verdict {
        state.withLock { state in
            state.decisionsSinceSweep += 1
            if state.decisionsSinceSweep >= max(1024, state.ips.count + state.keyRequests.count + state.keyTokens.count) {
                Self.sweep(&state, now: now)
            }
            // Decide on copies and keep them only if every limit admits: a request refused by one limit must not
            // use up another.
            var global = state.global
            let globalDecision = global?.take(now: now)
            var ipBucket = ipRPM > 0 ? clientIP.map { Self.bucket(state.ips[$0], perMinute: ipRPM, now: now) } : nil
            let ipDecision = ipBucket?.take(now: now)
            var requests = key.flatMap { key in key.rpm.flatMap { $0 > 0 ? Self.bucket(state.keyRequests[key.id], perMinute: $0, now: now) : nil } }
            let requestsDecision = requests?.take(now: now)
            var tokens = key.flatMap { key in key.tpm.flatMap { $0 > 0 ? Self.bucket(state.keyTokens[key.id], perMinute: $0, now: now) : nil } }
            let tokensDecision = tokens?.check(now: now)
            var teamRequests = team.flatMap { team in team.rpm.flatMap { $0 > 0 ? Self.bucket(state.teamRequests[team.id], perMinute: $0, now: now) : nil } }
            let teamRequestsDecision = teamRequests?.take(now: now)
            var teamTokens = team.flatMap { team in team.tpm.flatMap { $0 > 0 ? Self.bucket(state.teamTokens[team.id], perMinute: $0, now: now) : nil } }
            let teamTokensDecision = teamTokens?.check(now: now)

            var verdict = Verdict()
            let refusals: [(TokenBucket.Decision?, String)] = [
                (globalDecision, "the gateway's global request rate"),
                (ipDecision, "requests per minute for this client address"),
                (requestsDecision, "requests per minute for this API key"),
                (tokensDecision, "tokens per minute for this API key"),
                (teamRequestsDecision, LimitRole.teamRequests.refusal),
                (teamTokensDecision, LimitRole.teamTokens.refusal),
            ]
            if let (decision, what) = refusals.first(where: { $0.0?.allowed == false }) {
                verdict.refusedBy = what
                verdict.retryAfter = decision?.retryAfterSeconds ?? 1
            } else {
                state.global = global
                if let ip = clientIP, let ipBucket { state.ips[ip] = ipBucket }
                if let key, let requests { state.keyRequests[key.id] = requests }
                if let key, let tokens { state.keyTokens[key.id] = tokens }
                if let team, let teamRequests { state.teamRequests[team.id] = teamRequests }
                if let team, let teamTokens { state.teamTokens[team.id] = teamTokens }
            }
            // The request headers describe the limit that binds: the one that refused, else the key's own, else the
            // client address's, so a client refused by any request limit learns when to come back.
            let refusing = [globalDecision, ipDecision, requestsDecision, teamRequestsDecision].first { $0?.allowed == false } ?? nil
            if let d = refusing ?? requestsDecision ?? teamRequestsDecision ?? ipDecision {
                verdict.headers += [
                    ("x-ratelimit-limit-requests", String(d.limit)),
                    ("x-ratelimit-remaining-requests", String(d.remaining)),
                    ("x-ratelimit-reset-requests", rateLimitResetString(d.resetSeconds)),
                ]
            }
            let refusingTokens = [tokensDecision, teamTokensDecision].first { $0?.allowed == false } ?? nil
            if let d = refusingTokens ?? tokensDecision ?? teamTokensDecision {
                verdict.headers += [
                    ("x-ratelimit-limit-tokens", String(d.limit)),
                    ("x-ratelimit-remaining-tokens", String(d.remaining)),
                    ("x-ratelimit-reset-tokens", rateLimitResetString(d.resetSeconds)),
                ]
            }
            return verdict
        }
    }

    /// Charges a key's tokens-per-minute budget with what a finished request really used.
    ///
    /// Only keys with a token limit have a bucket (made when their request was admitted); others cost nothing.
    public func chargeTokens(keyID: String, teamID: String? = nil, tokens: Int, now: Double) {
        guard tokens > 0 else { return }
        state.withLock { state in
            state.keyTokens[keyID]?.charge(Double(tokens), now: now)
            if let teamID { state.teamTokens[teamID]?.charge(Double(tokens), now: now) }
        }
    }

    /// How many buckets are held (for tests of eviction and for metrics).
    public var trackedBuckets: Int {
        state.withLock { $0.ips.count + $0.keyRequests.count + $0.keyTokens.count + $0.teamRequests.count + $0.teamTokens.count }
    }

    /// Forgets every bucket that has refilled completely: keeping it would change no decision.
    public func sweep(now: Double) {
        state.withLock { Self.sweep(&$0, now: now) }
    }

    static func sweep(_ state: inout State, now: Double) {
        state.decisionsSinceSweep = 0
        state.ips = state.ips.filter { !$0.value.isIdle(now: now) }
        state.keyRequests = state.keyRequests.filter { !$0.value.isIdle(now: now) }
        state.keyTokens = state.keyTokens.filter { !$0.value.isIdle(now: now) }
        state.teamRequests = state.teamRequests.filter { !$0.value.isIdle(now: now) }
        state.teamTokens = state.teamTokens.filter { !$0.value.isIdle(now: now) }
    }

    /// The existing bucket, or a fresh one when there is none or the key's limit was edited.
    static func bucket(_ existing: TokenBucket?, perMinute limit: Int, now: Double) -> TokenBucket {
        if let existing, existing.capacity == Double(limit) { return existing }
        return .perMinute(limit, now: now)
    }
}
