import NIOCore

/// Writes the one chunk shape a stream is mostly made of, `{"choices":[{"delta":{"content":"…"},…}],…}`,
/// without `JSONEncoder`: byte for byte what the encoder writes (sorted keys, slashes unescaped).
///
/// Only the content changes from chunk to chunk; the rest is encoded once per stream by the caller. Content
/// with a control character other than newline, carriage return or tab returns false, and the caller encodes
/// that chunk the usual way, so the rarely used escapes never need to match the encoder's spelling.
public struct ContentChunkWriter: Sendable {
    /// `],"created":N,"id":"…","model":"…","object":"chat.completion.chunk"}`, as the encoder writes it.
    let tail: [UInt8]

    public init(tail: [UInt8]) {
        self.tail = tail
    }

    static let head = Array(#"data: {"choices":[{"delta":{"content":""#.utf8)
    static let afterContent = Array(#""},"finish_reason":null,"index":0}"#.utf8)

    /// Appends one SSE event for a content-only delta; false (and nothing written) when it must be encoded.
    public func write(content: String, into output: inout ByteBuffer) -> Bool {
        var content = content
        return content.withUTF8 { bytes in
            for byte in bytes where byte < 0x20 && byte != 0x0A && byte != 0x0D && byte != 0x09 {
                return false
            }
            output.reserveCapacity(minimumWritableBytes: Self.head.count + bytes.count + 16 + Self.afterContent.count + tail.count + 2)
            output.writeBytes(Self.head)
            var start = 0
            for (i, byte) in bytes.enumerated() {
                let escape: StaticString
                switch byte {
                case UInt8(ascii: "\""): escape = "\\\""
                case UInt8(ascii: "\\"): escape = "\\\\"
                case 0x0A: escape = "\\n"
                case 0x0D: escape = "\\r"
                case 0x09: escape = "\\t"
                default: continue
                }
                output.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start..<i]))
                output.writeStaticString(escape)
                start = i + 1
            }
            output.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start...]))
            output.writeBytes(Self.afterContent)
            output.writeBytes(tail)
            output.writeStaticString("\n\n")
            return true
        }
    }
}
