import SluiceCore

/// Filters of a usage report.
public struct UsageQuery: Sendable, Equatable {
    /// Unix seconds; records at or after this time.
    public var since: Double
    public var until: Double?
    public var keyID: String?
    public var model: String?

    public init(since: Double, until: Double? = nil, keyID: String? = nil, model: String? = nil) {
        self.since = since
        self.until = until
        self.keyID = keyID
        self.model = model
    }
}

/// How a usage report is grouped.
public enum UsageGrouping: String, Sendable, CaseIterable {
    case key, model, day
    /// The API route (`/v1/chat/completions`, `/v1/messages`, `/v1/responses`, `/api/chat`, …).
    case route
    /// The team of the record's key ("" for keys without a team and anonymous calls).
    case team
}

/// Totals over a set of usage records.
public struct UsageTotals: Sendable, Equatable, Codable {
    public var requests: Int
    public var promptTokens: Int
    public var completionTokens: Int
    public var costUSD: Double
    public var savedUSD: Double
    public var cacheHits: Int
    /// Records with status >= 400 or an error code.
    public var errors: Int
    public var p50LatencyMs: Double
    public var p95LatencyMs: Double
    /// Calls a hosted `overflow` upstream served because no local one could in time, and what they cost.
    public var overflowRequests = 0
    public var overflowCostUSD = 0.0

    public init(
        requests: Int = 0, promptTokens: Int = 0, completionTokens: Int = 0, costUSD: Double = 0, savedUSD: Double = 0,
        cacheHits: Int = 0, errors: Int = 0, p50LatencyMs: Double = 0, p95LatencyMs: Double = 0, overflowRequests: Int = 0,
        overflowCostUSD: Double = 0
    ) {
        self.overflowRequests = overflowRequests
        self.overflowCostUSD = overflowCostUSD
        self.requests = requests
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.costUSD = costUSD
        self.savedUSD = savedUSD
        self.cacheHits = cacheHits
        self.errors = errors
        self.p50LatencyMs = p50LatencyMs
        self.p95LatencyMs = p95LatencyMs
    }
}

/// One group of a usage report (`group` is the key id, model name or `YYYY-MM-DD` day; "" for none).
public struct UsageGroup: Sendable, Equatable, Codable {
    public var group: String
    public var totals: UsageTotals

    public init(group: String, totals: UsageTotals) {
        self.group = group
        self.totals = totals
    }
}

/// A usage report as a store reads it: totals plus one row per group (empty when not grouped).
public struct UsageBreakdown: Sendable, Equatable {
    public var totals: UsageTotals
    public var groups: [UsageGroup]

    public init(totals: UsageTotals = UsageTotals(), groups: [UsageGroup] = []) {
        self.totals = totals
        self.groups = groups
    }
}

/// Persistence of keys, usage records and stored Responses API answers. SQLite and PostgreSQL implement it identically.
///
/// Every method may throw `StoreError`; callers treat the store as possibly unavailable.
public protocol GatewayStore: Sendable {
    /// Applies pending schema migrations; safe to call on every start and from several instances.
    func migrate() async throws

    func insertKey(_ key: APIKeyRecord) async throws
    func key(hash: String) async throws -> APIKeyRecord?
    func key(id: String) async throws -> APIKeyRecord?
    func listKeys() async throws -> [APIKeyRecord]
    /// Inserts a team; throws when one with its name exists. Bumps the key revision, so instances reload teams.
    func insertTeam(_ team: TeamRecord) async throws
    /// Every team, by name.
    func listTeams() async throws -> [TeamRecord]
    /// Returns false when no such key exists.
    func revokeKey(id: String) async throws -> Bool
    /// Records last-used times in one statement or transaction.
    func touchKeys(_ lastUsed: [String: Double]) async throws
    /// A number that changes whenever any key is inserted, revoked or edited (for change polling across instances).
    func keysRevision() async throws -> Int64

    /// Notes that gateway instance `id` is alive and serves keys as of `keyRevision`. Each instance calls it after
    /// every key poll, so that a key change can wait until every running instance has seen it.
    func reportInstance(id: String, keyRevision: Int64, at time: Double) async throws
    /// Forgets an instance that is shutting down, so nothing waits for it.
    func removeInstance(id: String) async throws
    /// How many instances reported since `since` still serve keys older than `keyRevision`.
    func instancesBehind(keyRevision: Int64, reportedSince since: Double) async throws -> Int

    /// How many instances reported since `since` (the live ones; shared rate limits fall back to `limit / live`).
    func liveInstances(reportedSince since: Double) async throws -> Int

    /// Exchanges leases of shared rate-limit buckets in one transaction: each request hands back what it returns
    /// and takes its share (``RateLeaseArithmetic``), atomically against every other instance. Missing buckets are
    /// created full; answers come in the order of `requests`.
    func exchangeRateLeases(_ requests: [RateLeaseRequest], instances: Int, now: Double) async throws -> [RateLease]
    /// Deletes buckets that have refilled completely by `now`; returns how many.
    func forgetFullRateBuckets(now: Double) async throws -> Int

    /// Records that the dashboard session with this token digest was signed out, until it would have expired
    /// anyway; forgets sessions that expired before `now`.
    func endSession(digest: String, expiresAt: Double, now: Double) async throws
    /// Whether the dashboard session with this token digest was signed out on any instance.
    func isSessionEnded(digest: String) async throws -> Bool

    /// Inserts records in one transaction; inserting a record whose id exists already is a no-op.
    func insertUsage(_ records: [UsageRecord]) async throws
    /// Totals, and groups when `grouping` is set, read from one snapshot so that the groups add up to the totals
    /// even while records are being written.
    func usageReport(_ query: UsageQuery, by grouping: UsageGrouping?) async throws -> UsageBreakdown
    /// The newest records first.
    func recentUsage(_ query: UsageQuery, limit: Int) async throws -> [UsageRecord]
    /// What each of these keys has spent in all, for budgets; keys that never spent are left out.
    func spend(keyIDs: [String]) async throws -> [String: Double]
    /// What each of these keys spent from `since` (a whole UTC hour) on, read from the hourly rollups.
    func periodSpend(keyIDs: [String], since: Double) async throws -> [String: Double]
    /// Records that the budget alert of `subject` for the period starting at `periodStart` went out; true only for
    /// the first caller, so several instances send it once.
    func claimBudgetAlert(subject: String, periodStart: Double, at time: Double) async throws -> Bool
    /// Publishes this instance's new reservations and deletes the settled ones (a settled id that was never
    /// published deletes nothing), in one transaction; also forgets reservations expired by `now`.
    func publishReservations(instanceID: String, reserved: [BudgetReservation], settled: [String], now: Double) async throws
    /// What other instances hold reserved per key and have not let expire by `now`.
    func reservedByOthers(keyIDs: [String], instanceID: String, now: Double) async throws -> [String: Double]
    /// Deletes at most `limit` hourly rollups of hours before `before`; returns how many it deleted.
    func deleteRollups(before: Double, limit: Int) async throws -> Int
    /// Deletes at most `limit` records older than `before`; returns how many it deleted.
    func deleteUsage(before: Double, limit: Int) async throws -> Int

    /// Keeps a Responses API answer until its `expiresAt`. Throws when a response with this id exists already.
    func saveResponse(_ response: StoredResponse) async throws
    /// The stored response with this id, made by `keyID` (nil: an anonymous caller) and not yet expired at `now`
    /// (Unix seconds). Nil when there is none, when it expired, or when another key made it: a NULL-key response
    /// belongs to anonymous callers only, and a keyed one is never visible to anonymous callers.
    func response(id: String, keyID: String?, now: Double) async throws -> StoredResponse?
    /// Deletes the response with this id if `keyID` made it (same ownership rule as reading); returns whether it
    /// deleted one. A response expired but not yet pruned is still its owner's to delete.
    func deleteResponse(id: String, keyID: String?) async throws -> Bool
    /// Deletes at most `limit` responses whose `expiresAt` is before `before`; returns how many it deleted.
    func deleteExpiredResponses(before: Double, limit: Int) async throws -> Int

    /// Closes connections.
    func close() async throws
}

extension GatewayStore {
    public func usageTotals(_ query: UsageQuery) async throws -> UsageTotals {
        try await self.usageReport(query, by: nil).totals
    }

    public func usageGroups(_ query: UsageQuery, by grouping: UsageGrouping) async throws -> [UsageGroup] {
        try await self.usageReport(query, by: grouping).groups
    }
}

/// A store failure, with a message safe to log (no credentials).
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
