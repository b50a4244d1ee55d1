import Crypto
import Foundation

/// Creation, hashing and comparison of API key secrets (`sk-sluice-` + 43 URL-safe characters).
public enum APIKeySecret {
    public static let prefix = "sk-sluice-"
    /// Characters of the secret kept in listings so people can tell keys apart.
    public static let visiblePrefixLength = prefix.count + 4
    static let randomBytes = 32

    /// A new secret: 256 bits from the system CSPRNG, base64url without padding.
    public static func generate() -> String {
        // SymmetricKey draws from the platform CSPRNG (getrandom on Linux).
        let key = SymmetricKey(size: .bits256)
        return prefix + key.withUnsafeBytes { base64URL(Array($0)) }
    }

    /// A new public key id, `key_` + 16 hex digits, safe to log.
    public static func generateID(prefix: String = "key_") -> String {
        let key = SymmetricKey(size: SymmetricKeySize(bitCount: 64))
        return prefix + key.withUnsafeBytes { hex(Array($0)) }
    }

    /// Lowercase hex SHA-256 of the secret: what the store keeps and looks keys up by.
    ///
    /// A plain hash suffices because secrets carry 256 random bits: there is nothing to brute-force.
    public static func hash(_ secret: some StringProtocol) -> String {
        hex(Array(SHA256.hash(data: Array(secret.utf8))))
    }

    /// True when `secret` has the shape of a Sluice key; cheap rejection before hashing.
    @inlinable
    public static func isWellFormed(_ secret: some StringProtocol) -> Bool {
        guard secret.hasPrefix(prefix) else { return false }
        let body = secret.utf8.dropFirst(prefix.utf8.count)
        return body.count >= 32 && body.count <= 128 && body.allSatisfy(isAlphabet)
    }

    @usableFromInline
    static func isAlphabet(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default: false
        }
    }

    /// Compares two byte strings in time that depends only on their lengths, never on where they differ.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// Compares a presented secret with a configured one (the master key) without leaking length or content
    /// through timing: both sides are hashed first, so the comparison always runs over 32 bytes.
    public static func matches(_ presented: some StringProtocol, configured: String) -> Bool {
        constantTimeEquals(Array(SHA256.hash(data: Array(presented.utf8))), Array(SHA256.hash(data: Array(configured.utf8))))
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Lowercase hex of bytes.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension APIKeyRecord {
    /// Why a key may not be used now, or nil when it may.
    public func refusal(now: Double) -> String? {
        if revoked { return "This API key has been revoked." }
        if let expiresAt, expiresAt <= now { return "This API key has expired." }
        return nil
    }

    /// Whether the key may call `model` (an empty list allows every model).
    public func allows(model: String) -> Bool {
        allowedModels.isEmpty || allowedModels.contains(model)
    }
}

/// A key just created: the secret (shown once, never stored) and the record the store keeps.
public struct IssuedKey: Sendable {
    public var secret: String
    public var record: APIKeyRecord

    /// Makes a new key with a fresh secret and id.
    public init(
        name: String, now: Double, expiresAt: Double? = nil, allowedModels: [String] = [], rpm: Int? = nil, tpm: Int? = nil,
        budgetUSD: Double? = nil, budgetPeriod: BudgetPeriod = .total, budgetAlert: Double? = nil, teamID: String? = nil
    ) {
        let secret = APIKeySecret.generate()
        self.secret = secret
        self.record = APIKeyRecord(
            id: APIKeySecret.generateID(), name: name, hash: APIKeySecret.hash(secret),
            prefix: String(secret.prefix(APIKeySecret.visiblePrefixLength)), createdAt: now, expiresAt: expiresAt,
            allowedModels: allowedModels, rpm: rpm, tpm: tpm, budgetUSD: budgetUSD, budgetPeriod: budgetPeriod,
            budgetAlert: budgetAlert, teamID: teamID)
    }
}

/// Parses the moments reports and key expiries are given as: a duration back from now (`24h`, `7d`) for `since`,
/// or a date (`2026-12-31`, `2026-12-31T12:00:00Z`).
public enum TimeArgument {
    /// `24h` means 24 hours before `now`; a date means that date (midnight UTC for a plain day).
    public static func past(_ text: String, now: Double) -> Double? {
        if let date = date(text) { return date }
        guard let duration = ValueParsing.duration(text) else { return nil }
        let (seconds, attoseconds) = duration.components
        return now - (Double(seconds) + Double(attoseconds) / 1e18)
    }

    /// `30d` means 30 days after `now`; a date means that date.
    public static func future(_ text: String, now: Double) -> Double? {
        if let date = date(text) { return date }
        guard let duration = ValueParsing.duration(text) else { return nil }
        let (seconds, attoseconds) = duration.components
        return now + (Double(seconds) + Double(attoseconds) / 1e18)
    }

    static func date(_ text: String) -> Double? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date.timeIntervalSince1970 }
        formatter.formatOptions = [.withFullDate]
        if let date = formatter.date(from: text) { return date.timeIntervalSince1970 }
        return nil
    }
}
