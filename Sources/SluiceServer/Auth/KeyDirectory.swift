import Crypto
import SluiceCore
import Synchronization

/// Who is calling, once authentication has run.
public enum ClientIdentity: Sendable {
    /// Auth is off (or not required yet), and no key was presented.
    case anonymous
    /// The configured master key.
    case master
    case key(APIKeyRecord)

    public var keyID: String? {
        if case .key(let record) = self { return record.id }
        return nil
    }
}

/// The API keys requests are checked against: an in-memory copy of the store's key table.
///
/// Requests never touch the database: ``KeyDirectorySync`` reloads the copy whenever the store's key revision
/// changes (polled four times a second, and at once after a change through this instance's admin API).
/// Until the first load the directory is not ready and authentication fails closed.
public final class KeyDirectory: Sendable {
    struct Snapshot {
        /// Keyed by the digest of the secret, parsed once from the stored hex so that lookups allocate nothing.
        var byDigest: [SHA256Words: APIKeyRecord] = [:]
        var revision: Int64 = -1
        var loaded = false
        /// The newest load applied (see ``beginLoad()``).
        var appliedLoad: UInt64 = 0
        var teams: [String: TeamRecord] = [:]
        var teamOfKey: [String: String] = [:]
        /// By subject: the key id, or `team:` and the team id.
        var budgets: [String: Budget] = [:]
    }

    let masterKeyDigest: SHA256Words?
    private let snapshot: Mutex<Snapshot>
    private let lastUsed = Mutex<[String: Double]>([:])
    private let loads = Atomic<UInt64>(0)
    /// Spend per budget (key id, or `team:` and the team id) in its current period: the store's total at the last
    /// refresh plus costs recorded here since.
    private let spend = Mutex<[String: Spend]>([:])
    /// What other instances hold reserved per key, as of the last refresh.
    private let reservedElsewhere = Mutex<[String: Double]>([:])
    /// Worst-case costs of this instance's calls in flight.
    public let reservations = BudgetReservations()

    /// What a budget's owner spent in the period starting at `periodStart`.
    struct Spend: Sendable, Equatable {
        var periodStart: Double
        var amount: Double
    }

    /// One budget the directory tracks: a key's own, or a team's (spent by all its keys, revoked ones included).
    struct Budget: Sendable, Equatable {
        var subject: String
        var name: String
        var limitUSD: Double
        var period: BudgetPeriod
        var alert: Double?
        var keyIDs: [String]
        var isTeam: Bool
    }

    /// - Parameter loaded: true when there is no store to load from (tests, embedded use): the directory starts
    ///   ready with `keys`.
    public init(masterKey: String?, keys: [APIKeyRecord] = [], teams: [TeamRecord] = [], loaded: Bool) {
        self.masterKeyDigest = masterKey.map { SHA256Words(hashing: $0) }
        var initial = Snapshot()
        initial.loaded = loaded
        Self.fill(&initial, keys: keys, teams: teams)
        self.snapshot = Mutex(initial)
    }

    /// Indexes keys and teams. A key's allowed models become what both it and its team allow, so the one check the
    /// gateway makes covers both; when they allow nothing in common, no model name matches.
    static func fill(_ snapshot: inout Snapshot, keys: [APIKeyRecord], teams: [TeamRecord]) {
        snapshot.teams = Dictionary(teams.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var teamOfKey: [String: String] = [:]
        let keys = keys.map { key in
            guard let teamID = key.teamID else { return key }
            teamOfKey[key.id] = teamID
            guard let team = snapshot.teams[teamID] else { return key }
            var key = key
            key.allowedModels = effectiveModels(key: key.allowedModels, team: team.allowedModels) ?? ["\u{0}"]
            return key
        }
        snapshot.teamOfKey = teamOfKey
        snapshot.byDigest = Self.index(keys)
        var budgets: [String: Budget] = [:]
        var members: [String: [String]] = [:]
        for key in keys {
            if let team = key.teamID { members[team, default: []].append(key.id) }
            guard let limit = key.budgetUSD, !key.revoked else { continue }
            budgets[key.id] = Budget(
                subject: key.id, name: key.name, limitUSD: limit, period: key.budgetPeriod, alert: key.budgetAlert, keyIDs: [key.id],
                isTeam: false)
        }
        for team in teams {
            guard let limit = team.budgetUSD else { continue }
            let subject = teamSubject(team.id)
            budgets[subject] = Budget(
                subject: subject, name: team.name, limitUSD: limit, period: team.budgetPeriod, alert: team.budgetAlert,
                keyIDs: members[team.id] ?? [], isTeam: true)
        }
        snapshot.budgets = budgets
    }

    /// The team with this id, as last loaded.
    public func team(id: String) -> TeamRecord? {
        snapshot.withLock { $0.teams[id] }
    }

    /// The team of a key, if it has one.
    public func teamID(ofKey keyID: String) -> String? {
        snapshot.withLock { $0.teamOfKey[keyID] }
    }

    /// False until the first load from the store.
    public var isReady: Bool { snapshot.withLock { $0.loaded } }
    public var hasKeys: Bool { snapshot.withLock { !$0.byDigest.isEmpty } }
    public var hasMasterKey: Bool { masterKeyDigest != nil }
    var revision: Int64 { snapshot.withLock { $0.revision } }

    /// The result of checking a presented secret.
    public enum Lookup: Sendable {
        case master
        case key(APIKeyRecord)
        case unknown
    }

    /// Checks a presented secret against the master key and the key table.
    public func lookup(_ presented: some StringProtocol) -> Lookup {
        let digest = SHA256Words(hashing: presented)
        if let masterKeyDigest, masterKeyDigest.constantTimeEquals(digest) {
            return .master
        }
        guard APIKeySecret.isWellFormed(presented) else { return .unknown }
        // The table compares SHA-256 digests, not secrets: how long a probe takes tells an attacker at most how
        // many leading digest bits of a guess match a stored one, which without a preimage leads nowhere.
        guard let record = snapshot.withLock({ $0.byDigest[digest] }) else { return .unknown }
        return .key(record)
    }

    static func index(_ keys: [APIKeyRecord]) -> [SHA256Words: APIKeyRecord] {
        var byDigest: [SHA256Words: APIKeyRecord] = [:]
        byDigest.reserveCapacity(keys.count)
        for key in keys {
            // A hash that is not 64 hex digits cannot match any secret; such a row is skipped rather than trusted.
            if let digest = SHA256Words(hex: key.hash) { byDigest[digest] = key }
        }
        return byDigest
    }

    /// Numbers a load from the store; take it before reading the store's revision.
    ///
    /// Two loads can overlap (the poll, and a reload after an admin change): one begun later read the store
    /// later, so a load begun earlier that finishes after it must not put older keys back.
    public func beginLoad() -> UInt64 {
        loads.add(1, ordering: .relaxed).newValue
    }

    /// Replaces the table with a fresh load from the store, unless a load begun later was applied already.
    public func replace(with keys: [APIKeyRecord], teams: [TeamRecord] = [], revision: Int64, load: UInt64? = nil) {
        let load = load ?? beginLoad()
        var fresh = Snapshot()
        Self.fill(&fresh, keys: keys, teams: teams)
        snapshot.withLock {
            guard load > $0.appliedLoad else { return }
            $0.byDigest = fresh.byDigest
            $0.teams = fresh.teams
            $0.teamOfKey = fresh.teamOfKey
            $0.budgets = fresh.budgets
            $0.revision = revision
            $0.loaded = true
            $0.appliedLoad = load
        }
    }

    /// Notes that a key was used; written to the store in batches by the sync service.
    public func noteUse(keyID: String, at time: Double) {
        lastUsed.withLock { $0[keyID] = max($0[keyID] ?? 0, time) }
    }

    /// Takes the last-used times noted since the previous call.
    func takeLastUsed() -> [String: Double] {
        lastUsed.withLock {
            let taken = $0
            $0 = [:]
            return taken
        }
    }

    /// What a key has spent in its current budget period, as far as this instance knows.
    public func spent(keyID: String, now: Double) -> Double {
        spent(subject: keyID, now: now)
    }

    /// What a team's keys have spent together in its current budget period, as far as this instance knows.
    public func spent(teamID: String, now: Double) -> Double {
        spent(subject: Self.teamSubject(teamID), now: now)
    }

    /// Nothing once the period the count belongs to is over: a budget starts again at its period's boundary even
    /// before the next refresh from the store.
    func spent(subject: String, now: Double) -> Double {
        let period = snapshot.withLock { $0.budgets[subject]?.period } ?? .total
        return spend.withLock { spend in
            guard let entry = spend[subject], entry.periodStart == period.start(containing: now) else { return 0 }
            return entry.amount
        }
    }

    static func teamSubject(_ teamID: String) -> String { "team:" + teamID }

    /// The 403 for a key over its own budget or its team's in the current period, if it is.
    public func budgetRefusal(key: APIKeyRecord, team: TeamRecord?, now: Double) -> APIError? {
        if let budget = key.budgetUSD, spent(keyID: key.id, now: now) >= budget { return .budgetExceeded() }
        if let team, let budget = team.budgetUSD, spent(teamID: team.id, now: now) >= budget { return .budgetExceeded(team: true) }
        return nil
    }

    /// Reserves a call's worst-case cost against its key's budget and its team's, or says it does not fit.
    public func reserve(_ reservation: BudgetReservation, key: APIKeyRecord, team: TeamRecord?, now: Double) -> Bool {
        var budgets: [(keyIDs: [String], available: Double)] = []
        let elsewhere = reservedElsewhere.withLock { $0 }
        if let limit = key.budgetUSD {
            budgets.append(([key.id], limit - spent(keyID: key.id, now: now) - (elsewhere[key.id] ?? 0)))
        }
        if let team, let limit = team.budgetUSD {
            let members = snapshot.withLock { $0.budgets[Self.teamSubject(team.id)]?.keyIDs } ?? [key.id]
            let others = members.reduce(0) { $0 + (elsewhere[$1] ?? 0) }
            budgets.append((members, limit - spent(teamID: team.id, now: now) - others))
        }
        return reservations.tryReserve(reservation, budgets: budgets)
    }

    /// Takes in what other instances hold reserved.
    func mergeReservedElsewhere(_ reserved: [String: Double]) {
        reservedElsewhere.withLock { $0 = reserved }
    }

    /// Adds the cost of a request just finished, to its key and its key's team.
    public func addSpend(keyID: String, cost: Double, now: Double) {
        guard cost > 0 else { return }
        let subjects = snapshot.withLock { snapshot in
            ([keyID] + (snapshot.teamOfKey[keyID].map { [Self.teamSubject($0)] } ?? [])).map { subject in
                (subject, (snapshot.budgets[subject]?.period ?? .total).start(containing: now))
            }
        }
        spend.withLock { spend in
            for (subject, start) in subjects {
                if let entry = spend[subject], entry.periodStart == start {
                    spend[subject]?.amount += cost
                } else {
                    spend[subject] = Spend(periodStart: start, amount: cost)
                }
            }
        }
    }

    /// Takes in the store's totals for the current periods.
    ///
    /// Within one period spend only grows, so the larger of the store's total and this instance's own count wins.
    /// The store may not hold yet what was spent here a moment ago (those records wait for the next batch), and
    /// the count here misses what other instances spent; taking the store's word alone would let a key just past
    /// its budget through again until its records were written. A count from an earlier period gives way.
    func mergeSpend(_ totals: [String: Spend]) {
        spend.withLock { spend in
            var merged: [String: Spend] = [:]
            for (subject, total) in totals {
                if let local = spend[subject], local.periodStart == total.periodStart {
                    merged[subject] = Spend(periodStart: total.periodStart, amount: max(local.amount, total.amount))
                } else {
                    merged[subject] = total
                }
            }
            spend = merged
        }
    }

    /// Every budget to track, keys' and teams'.
    var budgets: [Budget] {
        snapshot.withLock { Array($0.budgets.values) }
    }
}
