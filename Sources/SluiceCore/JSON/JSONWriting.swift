import NIOCore

/// Direct JSON writing into a `ByteBuffer`, for stream events: the fixed parts of an event are static strings and
/// only the values are escaped, with no `Encodable` boxing or intermediate dictionaries per chunk.
extension ByteBuffer {
    /// Writes `s` as a JSON string literal: quotes, `"` `\` and control characters escaped, slashes and
    /// non-ASCII left as they are (as `WireJSON` writes them).
    mutating func writeJSONString(_ s: String) {
        var s = s
        s.withUTF8 { bytes in
            writeInteger(UInt8(ascii: "\""))
            var start = 0
            for i in 0..<bytes.count {
                let byte = bytes[i]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if start < i { writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start..<i])) }
                switch byte {
                case UInt8(ascii: "\""): writeStaticString("\\\"")
                case UInt8(ascii: "\\"): writeStaticString("\\\\")
                case 0x0A: writeStaticString("\\n")
                case 0x0D: writeStaticString("\\r")
                case 0x09: writeStaticString("\\t")
                default:
                    writeStaticString("\\u00")
                    writeInteger(ByteBuffer.hexDigit(byte >> 4))
                    writeInteger(ByteBuffer.hexDigit(byte & 0x0F))
                }
                start = i + 1
            }
            if start < bytes.count { writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start...])) }
            writeInteger(UInt8(ascii: "\""))
        }
    }

    static func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10 }

    /// Writes a decimal integer without going through `String`.
    mutating func writeJSONInt(_ value: Int) {
        if value < 0 {
            writeInteger(UInt8(ascii: "-"))
            if value == .min {
                writeString(String(value).dropFirst().description)
                return
            }
        }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { raw in
            var i = raw.count
            repeat {
                i -= 1
                raw[i] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            writeBytes(UnsafeRawBufferPointer(rebasing: raw[i...]))
        }
    }

    /// Writes `s` as a JSON string, or `null` when nil.
    mutating func writeJSONStringOrNull(_ s: String?) {
        if let s { writeJSONString(s) } else { writeStaticString("null") }
    }

    /// Writes any JSON value, object keys sorted so the bytes are stable.
    mutating func writeJSONValue(_ value: JSONValue) {
        switch value {
        case .null: writeStaticString("null")
        case .bool(true): writeStaticString("true")
        case .bool(false): writeStaticString("false")
        case .int(let i): writeJSONInt(i)
        case .double(let d):
            if d.isFinite, d == d.rounded(), abs(d) < 1e15 {
                writeJSONInt(Int(d))
            } else if d.isFinite {
                writeString("\(d)")
            } else {
                writeStaticString("null")
            }
        case .string(let s): writeJSONString(s)
        case .array(let items):
            writeInteger(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { writeInteger(UInt8(ascii: ",")) }
                writeJSONValue(item)
            }
            writeInteger(UInt8(ascii: "]"))
        case .object(let members):
            writeInteger(UInt8(ascii: "{"))
            for (i, key) in members.keys.sorted().enumerated() {
                if i > 0 { writeInteger(UInt8(ascii: ",")) }
                writeJSONString(key)
                writeInteger(UInt8(ascii: ":"))
                writeJSONValue(members[key]!)
            }
            writeInteger(UInt8(ascii: "}"))
        }
    }

    /// Writes `,"key":value` for each extension, keys sorted; only top-level (undotted) keys, since dotted ones
    /// belong to a nested object the caller writes itself.
    mutating func writeJSONExtensions(_ extensions: Generation.Extensions) {
        guard !extensions.isEmpty else { return }
        for key in extensions.keys.sorted() where !key.contains(".") {
            writeInteger(UInt8(ascii: ","))
            writeJSONString(key)
            writeInteger(UInt8(ascii: ":"))
            writeJSONValue(extensions[key]!)
        }
    }

    /// Writes one named SSE event whose data is the JSON `body` writes (which must hold no raw newline; JSON
    /// strings written here never do).
    mutating func writeSSEEvent(_ name: StaticString, _ body: (inout ByteBuffer) -> Void) {
        writeStaticString("event: ")
        writeStaticString(name)
        writeStaticString("\ndata: ")
        body(&self)
        writeStaticString("\n\n")
    }
}
