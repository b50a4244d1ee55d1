import Crypto

/// SHA-256 of a canonical request: what an identical request is recognised by.
public struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64

    init(digest: SHA256.Digest) {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        digest.withUnsafeBytes { raw in
            words = (
                raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
            )
        }
        (a, b, c, d) = words
    }

    public var description: String {
        [a, b, c, d].map { String(UInt64(bigEndian: $0), radix: 16) }.joined()
    }

    /// Fields that change how an answer is delivered but not what it says.
    public static let deliveryFields: Set<String> = ["stream", "stream_options", "user", "keep_alive"]

    /// The key of a request body on a route, sent to an upstream, optionally scoped to one API key.
    ///
    /// - Parameters:
    ///   - family: which answer shape the entry holds (`chat`, `completion`, `embeddings`, `native-chat`, ...).
    ///   - body: the parsed request body; key order and whitespace do not matter.
    public static func make(family: String, upstream: String, body: JSONValue, scope: String? = nil) -> CacheKey {
        var hasher = SHA256()
        hasher.update(data: Array(family.utf8))
        hasher.update(data: [0])
        hasher.update(data: Array(upstream.utf8))
        hasher.update(data: [0])
        hasher.update(data: Array((scope ?? "").utf8))
        hasher.update(data: [0])
        var meaningful = body
        if case .object(var members) = body {
            for field in deliveryFields { members[field] = nil }
            meaningful = .object(members)
        }
        hasher.update(data: CanonicalJSON.bytes(meaningful))
        return CacheKey(digest: hasher.finalize())
    }
}
