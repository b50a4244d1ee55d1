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
/// changes (polled well under once a second, so a revocation anywhere takes effect within a second everywhere).
/// Until the first load the directory is not ready and authentication fails closed.
public final class KeyDirectory: Sendable {
    struct Snapshot {
        /// Keyed by the digest of the secret, parsed once from the stored hex so that lookups allocate nothing.
        var byDigest: [SHA256Words: APIKeyRecord] = [:]
        var revision: Int64 = -1
        var loaded = false
    }

    let masterKeyDigest: SHA256Words?
    private let snapshot: Mutex<Snapshot>
    private let lastUsed = Mutex<[String: Double]>([:])
    /// Spend per key with a budget: the store's total at the last refresh plus costs recorded here since.
    private let spend = Mutex<[String: Double]>([:])

    /// - Parameter loaded: true when there is no store to load from (tests, embedded use): the directory starts
    ///   ready with `keys`.
    public init(masterKey: String?, keys: [APIKeyRecord] = [], loaded: Bool) {
        self.masterKeyDigest = masterKey.map { SHA256Words(hashing: $0) }
        var initial = Snapshot()
        initial.loaded = loaded
        initial.byDigest = Self.index(keys)
        self.snapshot = Mutex(initial)
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

    /// Replaces the table with a fresh load from the store.
    public func replace(with keys: [APIKeyRecord], revision: Int64) {
        let byDigest = Self.index(keys)
        snapshot.withLock {
            $0.byDigest = byDigest
            $0.revision = revision
            $0.loaded = true
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

    /// Adds the cost of a request just finished.
    public func addSpend(keyID: String, cost: Double) {
        guard cost > 0 else { return }
        spend.withLock { $0[keyID, default: 0] += cost }
    }

    /// Replaces known spend with the store's totals.
    func setSpend(_ totals: [String: Double]) {
        spend.withLock { $0 = totals }
    }

    /// Keys with a budget, whose spend must be tracked.
    var budgetedKeyIDs: [String] {
        snapshot.withLock { $0.byDigest.values.filter { $0.budgetUSD != nil && !$0.revoked }.map(\.id) }
    }
}
