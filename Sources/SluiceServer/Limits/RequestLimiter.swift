import SluiceCore

/// Decides whether a request may go on and charges what it used: the exact in-memory ``RateLimiter`` of a single
/// instance, or the ``SharedRateLimiter`` of instances sharing PostgreSQL.
public protocol RequestLimiter: Sendable {
    /// The verdict on one request, taking from every applicable limit only when all of them admit it.
    func admit(clientIP: String?, key: APIKeyRecord?, team: TeamRecord?, now: Double) -> RateLimiter.Verdict
    /// Charges a key's (and its team's) tokens-per-minute limit with what a finished request really used.
    func chargeTokens(keyID: String, teamID: String?, tokens: Int, now: Double)
}

extension RateLimiter: RequestLimiter {}

/// Which limit a decision is about; the names are the `limit` label of `sluice_rate_limited_total`.
public enum LimitRole: String, Sendable, CaseIterable {
    case global
    case ip
    case keyRequests = "key_requests"
    case keyTokens = "key_tokens"
    case teamRequests = "team_requests"
    case teamTokens = "team_tokens"

    /// In words, for the error message.
    public var refusal: String {
        switch self {
        case .global: "the gateway's global request rate"
        case .ip: "requests per minute for this client address"
        case .keyRequests: "requests per minute for this API key"
        case .keyTokens: "tokens per minute for this API key"
        case .teamRequests: "requests per minute for this API key's team"
        case .teamTokens: "tokens per minute for this API key's team"
        }
    }

    /// Whether the limit counts requests (taken on admission) or tokens (charged after the answer).
    public var countsTokens: Bool { self == .keyTokens || self == .teamTokens }
}
