import NIOCore

/// The first bytes of a request or response body, kept for `store-bodies` and `log-bodies`.
///
/// Bodies can be megabytes (a long chat history, a big embeddings batch); a usage record keeps at most `limit`
/// bytes of each and says how long the body really was, so the queue of unwritten records stays bounded.
public struct BodySample: Sendable, Equatable {
    /// Bytes kept of one body.
    public static let defaultLimit = 16 * 1024

    public let limit: Int
    private var kept: [UInt8] = []
    /// Every byte seen, kept or not.
    public private(set) var totalBytes = 0

    public init(limit: Int = BodySample.defaultLimit) {
        self.limit = max(0, limit)
    }

    public mutating func append(_ chunk: ByteBuffer) {
        totalBytes += chunk.readableBytes
        let room = limit - kept.count
        guard room > 0 else { return }
        chunk.withUnsafeReadableBytes { kept.append(contentsOf: $0.prefix(room)) }
    }

    /// The body as text (invalid UTF-8 replaced), with a note when it was cut; nil when there was no body.
    public var text: String? {
        guard totalBytes > 0 else { return nil }
        let text = String(decoding: kept, as: UTF8.self)
        guard totalBytes > kept.count else { return text }
        return text + "\n[truncated: \(totalBytes) bytes in total, the first \(kept.count) kept]"
    }
}
