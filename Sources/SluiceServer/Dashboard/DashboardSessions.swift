import Crypto
import SluiceCore
import Synchronization

/// Dashboard login sessions: random tokens, held in memory, that stand in for the master key in a browser.
///
/// Sessions live only in this process: a restart, or another instance behind a load balancer, asks the user to
/// sign in again, which is a fair price for not keeping master-key equivalents in the database. The table is
/// bounded; when full, the oldest session is dropped.
public final class DashboardSessions: Sendable {
    /// The cookie that carries the token.
    public static let cookieName = "sluice_session"
    /// Twelve hours: a working day, after which the master key must be typed again.
    public static let lifetime = 12 * 3600

    let capacity: Int
    let now: @Sendable () -> Double
    /// Expiry times keyed by the token's SHA-256, so the table never holds a usable token and a lookup's timing
    /// says nothing about the tokens it holds.
    private let expiries = Mutex<[String: Double]>([:])

    public init(capacity: Int = 1000, now: @escaping @Sendable () -> Double) {
        self.capacity = max(1, capacity)
        self.now = now
    }

    /// Starts a session and returns its token (256 random bits, hex).
    public func create() -> String {
        let token = SymmetricKey(size: .bits256).withUnsafeBytes { APIKeySecret.hex(Array($0)) }
        let digest = Self.digest(token)
        let now = self.now()
        expiries.withLock { table in
            table = table.filter { $0.value > now }
            // Every session lives equally long, so the earliest expiry is the oldest session.
            while table.count >= capacity, let oldest = table.min(by: { $0.value < $1.value }) {
                table[oldest.key] = nil
            }
            table[digest] = now + Double(Self.lifetime)
        }
        return token
    }

    /// True when `token` belongs to a session that has not expired or ended.
    public func isValid(_ token: String?) -> Bool {
        guard let token, !token.isEmpty, token.utf8.count <= 128 else { return false }
        let digest = Self.digest(token)
        let now = self.now()
        return expiries.withLock { table in
            guard let expiry = table[digest] else { return false }
            if expiry > now { return true }
            table[digest] = nil
            return false
        }
    }

    /// Ends the session `token` belongs to, if any.
    public func end(_ token: String?) {
        guard let token else { return }
        let digest = Self.digest(token)
        _ = expiries.withLock { $0.removeValue(forKey: digest) }
    }

    var count: Int { expiries.withLock { $0.count } }

    static func digest(_ token: String) -> String {
        APIKeySecret.hex(Array(SHA256.hash(data: Array(token.utf8))))
    }
}
