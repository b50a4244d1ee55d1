import Crypto
import NIOCore

/// SHA-256 of a canonical request: what an identical request is recognised by.
public struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    let digest: SHA256Words

    init(digest: SHA256.Digest) {
        self.digest = SHA256Words(digest)
    }

    public var description: String { digest.hex }

    /// Fields that change how an answer is delivered but not what it says.
    public static let deliveryFields: Set<String> = ["stream", "stream_options", "user", "keep_alive"]
    static let deliveryFieldBytes = deliveryFields.map { Array($0.utf8) }

    /// The key of a request body on a route, sent to an upstream, optionally scoped to one API key.
    ///
    /// - Parameters:
    ///   - family: which answer shape the entry holds (`chat`, `completion`, `embeddings`, `native-chat`, ...).
    ///   - body: the request body as sent; key order and whitespace do not matter.
    public static func make(family: String, upstream: String, body: ByteBuffer, scope: String? = nil) throws(CanonicalJSON.InvalidJSON) -> CacheKey {
        var hasher = SHA256()
        for part in [family, upstream, scope ?? ""] {
            // Each part ends with a NUL, which none contains, so ("ab", "c") and ("a", "bc") differ.
            var terminated = part + "\0"
            terminated.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        }
        let canonical: [UInt8]
        do {
            canonical = try body.withUnsafeReadableBytes { try CanonicalJSON.bytes(of: $0, dropping: deliveryFieldBytes) }
        } catch {
            throw CanonicalJSON.InvalidJSON()
        }
        canonical.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        return CacheKey(digest: hasher.finalize())
    }
}
