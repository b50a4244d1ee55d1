import Crypto
import Foundation
import Logging
import SluiceCore
import SluiceStore
import Synchronization

/// Dashboard login sessions: signed tokens that stand in for the master key in a browser.
///
/// A token is `v1.<expiry>.<nonce>.<HMAC-SHA256>`, signed with a key derived from the master key, so every instance
/// that shares the master key accepts the sessions of the others (a load balancer may send each dashboard request
/// elsewhere) and nothing that could sign in is ever stored. Changing the master key ends every session. Signing
/// out records the token's digest as ended, here and in the store every instance reads, so a copied cookie stops
/// working everywhere at once; the browser drops the cookie at the same time.
public final class DashboardSessions: Sendable {
    /// The cookie that carries the token.
    public static let cookieName = "sluice_session"
    /// Twelve hours: a working day, after which the master key must be typed again.
    public static let lifetime = 12 * 3600

    /// Nil without a master key: then there is no dashboard to sign in to. Bytes rather than a `SymmetricKey`,
    /// which is not `Sendable`; each use wraps them again.
    let signingKeyBytes: [UInt8]?
    let capacity: Int
    let now: @Sendable () -> Double
    /// Where sign-outs are shared with the other instances; nil for a gateway without a store.
    let store: (any GatewayStore)?
    /// Ended sessions by the token's SHA-256, with their expiry so the table can forget them when they lapse.
    private let ended = Mutex<[String: Double]>([:])

    public init(masterKey: String?, store: (any GatewayStore)? = nil, capacity: Int = 1000, now: @escaping @Sendable () -> Double) {
        self.store = store
        self.signingKeyBytes = masterKey.map { master in
            HKDF<SHA256>.deriveKey(
                inputKeyMaterial: SymmetricKey(data: Array(master.utf8)), info: Array("sluice dashboard session v1".utf8),
                outputByteCount: 32
            ).withUnsafeBytes { Array($0) }
        }
        self.capacity = max(1, capacity)
        self.now = now
    }

    private var signingKey: SymmetricKey? { signingKeyBytes.map { SymmetricKey(data: $0) } }

    /// Starts a session and returns its token; nil without a master key.
    public func create() -> String? {
        guard let signingKey else { return nil }
        let expiry = Int(now()) + Self.lifetime
        let nonce = SymmetricKey(size: .bits128).withUnsafeBytes { APIKeySecret.hex(Array($0)) }
        let payload = "v1.\(expiry).\(nonce)"
        let mac = HMAC<SHA256>.authenticationCode(for: Array(payload.utf8), using: signingKey)
        return payload + "." + APIKeySecret.hex(Array(mac))
    }

    /// True when `token` is a session no instance has ended: ``isValid(_:)`` here, then the shared sign-outs.
    ///
    /// Throws a 503 when the store cannot be asked: a session that may have been ended elsewhere is not taken on
    /// trust.
    public func isLive(_ token: String?, logger: Logger) async throws -> Bool {
        guard let token, isValid(token) else { return false }
        guard let store else { return true }
        do {
            return try await !store.isSessionEnded(digest: Self.digest(token))
        } catch {
            logger.error("cannot check the dashboard session against the store", metadata: ["error": "\(error)"])
            throw APIError.storeUnavailable()
        }
    }

    /// Ends the session `token` belongs to, if it is one, on every instance sharing the store.
    public func signOut(_ token: String?) async throws {
        guard let token, let expiry = verifiedExpiry(token) else { return }
        end(token)
        try await store?.endSession(digest: Self.digest(token), expiresAt: Double(expiry), now: now())
    }

    /// True when `token` was signed with this master key, has not expired and has not been ended here.
    public func isValid(_ token: String?) -> Bool {
        guard let token, let expiry = verifiedExpiry(token) else { return false }
        guard Double(expiry) > now() else { return false }
        let digest = Self.digest(token)
        return ended.withLock { $0[digest] == nil }
    }

    /// Ends the session `token` belongs to, if it is one, on this instance.
    public func end(_ token: String?) {
        guard let token, let expiry = verifiedExpiry(token) else { return }
        let digest = Self.digest(token)
        let now = self.now()
        ended.withLock { table in
            table = table.filter { $0.value > now }
            while table.count >= capacity, let soonest = table.min(by: { $0.value < $1.value }) {
                table[soonest.key] = nil
            }
            table[digest] = Double(expiry)
        }
    }

    /// The expiry of a well-formed token whose signature checks out; nil for anything else.
    private func verifiedExpiry(_ token: String) -> Int? {
        guard let signingKey, token.utf8.count <= 160 else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "v1", let expiry = Int(parts[1]), parts[2].utf8.count == 32,
            let mac = Self.bytes(hex: parts[3]), mac.count == SHA256.byteCount
        else { return nil }
        let payload = parts[0 ..< 3].joined(separator: ".")
        // The library's check compares in constant time: a forger learns nothing from how long a refusal takes.
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array(payload.utf8), using: signingKey) else { return nil }
        // A token claiming to outlive any session this code issues was not issued by it.
        guard Double(expiry) <= now() + Double(Self.lifetime) + 60 else { return nil }
        return expiry
    }

    var endedCount: Int { ended.withLock { $0.count } }

    static func digest(_ token: String) -> String {
        APIKeySecret.hex(Array(SHA256.hash(data: Array(token.utf8))))
    }

    static func bytes(hex: Substring) -> [UInt8]? {
        guard hex.utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.utf8.count / 2)
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index ..< next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}
