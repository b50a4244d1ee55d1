import NIOCore

/// Splits a byte stream into lines, whatever chunk boundaries the network put in it.
///
/// Lines end in `\n`; a `\r` before it is dropped. Bytes after the last newline wait for more input.
public struct LineSplitter: Sendable {
    private var pending = ByteBuffer()
    /// A line longer than this is an error rather than an unbounded buffer.
    public let maxLineBytes: Int

    public init(maxLineBytes: Int = 16 * 1024 * 1024) {
        self.maxLineBytes = maxLineBytes
    }

    /// Appends input; read complete lines with `nextLine()`.
    public mutating func append(_ buffer: ByteBuffer) {
        if pending.readableBytes == 0 {
            pending = buffer
        } else {
            var buffer = buffer
            pending.writeBuffer(&buffer)
        }
    }

    /// The next complete line without its terminator, or nil until more input arrives.
    public mutating func nextLine() throws(FramingError) -> ByteBuffer? {
        guard let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if pending.readableBytes > maxLineBytes { throw .lineTooLong }
            return nil
        }
        let length = newline - pending.readerIndex
        var line = pending.readSlice(length: length)!
        pending.moveReaderIndex(forwardBy: 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") {
            line = line.getSlice(at: line.readerIndex, length: line.readableBytes - 1)!
        }
        if pending.readableBytes == 0 { pending.clear() }
        return line
    }

    /// Whatever is left without a newline at the end of input.
    public mutating func remainder() -> ByteBuffer? {
        guard pending.readableBytes > 0 else { return nil }
        defer { pending.clear() }
        return pending
    }
}

/// A stream that cannot be framed.
public enum FramingError: Error, Sendable {
    case lineTooLong
}
