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
    }

    let masterKeyDigest: SHA256Words?
    private let snapshot: Mutex<Snapshot>
    private let lastUsed = Mutex<[String: Double]>([:])
    private let loads = Atomic<UInt64>(0)
    /// Spend per key with a budget: the store's total at the last refresh plus costs recorded here since.
    private let spend = Mutex<[String: Double]>([:])

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

    /// What a key has spent, as far as this instance knows.
    public func spent(keyID: String) -> Double {
        spend.withLock { $0[keyID] ?? 0 }
    }

    /// What a team has spent (the sum of its keys'), as far as this instance knows.
    public func spent(teamID: String) -> Double {
        spend.withLock { $0[Self.teamSubject(teamID)] ?? 0 }
    }

    static func teamSubject(_ teamID: String) -> String { "team:" + teamID }

    /// Adds the cost of a request just finished, to its key and its key's team.
    public func addSpend(keyID: String, cost: Double) {
        guard cost > 0 else { return }
        let teamID = teamID(ofKey: keyID)
        spend.withLock {
            $0[keyID, default: 0] += cost
            if let teamID { $0[Self.teamSubject(teamID), default: 0] += cost }
        }
    }

    /// Takes in the store's totals for the budgeted keys.
    ///
    /// Spend only grows, so the larger of the store's total and this instance's own count wins. The store may not
    /// hold yet what was spent here a moment ago (those records wait for the next batch), and the count here misses
    /// what other instances spent; taking the store's word alone would let a key just past its budget through again
    /// until its records were written.
    func mergeSpend(_ totals: [String: Double], budgeted: [String]) {
        let teamOfKey = snapshot.withLock { $0.teamOfKey }
        var teamTotals: [String: Double] = [:]
        for id in budgeted {
            if let team = teamOfKey[id] { teamTotals[Self.teamSubject(team), default: 0] += totals[id] ?? 0 }
        }
        spend.withLock { spend in
            var merged: [String: Double] = [:]
            for id in budgeted {
                merged[id] = max(spend[id] ?? 0, totals[id] ?? 0)
            }
            for (subject, total) in teamTotals {
                merged[subject] = max(spend[subject] ?? 0, total)
            }
            spend = merged
        }
    }

    /// Keys whose spend must be tracked: those with a budget, and every key of a team with one (revoked keys
    /// included, since what they spent still counts for their team).
    var budgetedKeyIDs: [String] {
        snapshot.withLock { snapshot in
            snapshot.byDigest.values.filter { key in
                (key.budgetUSD != nil && !key.revoked) || key.teamID.flatMap { snapshot.teams[$0]?.budgetUSD } != nil
            }.map(\.id)
        }
    }
}
