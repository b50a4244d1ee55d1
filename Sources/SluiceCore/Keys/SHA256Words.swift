import Crypto

/// A SHA-256 digest held as four words: hashable and comparable without allocating.
///
/// API keys are looked up by the digest of the presented secret, and cache entries by the digest of the
/// canonical request, on every request; a `String` of hex or an `[UInt8]` would allocate each time.
public struct SHA256Words: Hashable, Sendable {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64

    public init(_ digest: SHA256.Digest) {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        digest.withUnsafeBytes { raw in
            // Little-endian words on every platform, so that `hex` and `init(hex:)` agree with the byte order.
            func word(_ offset: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
            words = (word(0), word(8), word(16), word(24))
        }
        (a, b, c, d) = words
    }

    /// The digest of a secret's UTF-8 bytes.
    public init(hashing text: some StringProtocol) {
        var text = String(text)
        self = text.withUTF8 { SHA256Words(SHA256.hash(data: $0)) }
    }

    /// Parses 64 hex digits (either case), as the store keeps key hashes; nil for anything else.
    public init?(hex: some StringProtocol) {
        let bytes = Array(hex.utf8)
        guard bytes.count == 64 else { return nil }
        var words: [UInt64] = []
        for start in stride(from: 0, to: 64, by: 16) {
            // The first hex pair is the lowest byte of each little-endian word.
            var word: UInt64 = 0
            for pair in 0..<8 {
                guard let high = Self.nibble(bytes[start + 2 * pair]), let low = Self.nibble(bytes[start + 2 * pair + 1]) else { return nil }
                word |= UInt64(high << 4 | low) << (8 * UInt64(pair))
            }
            words.append(word)
        }
        (a, b, c, d) = (words[0], words[1], words[2], words[3])
    }

    /// Lowercase hex, the digest's usual spelling.
    public var hex: String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        let digits = Array("0123456789abcdef".utf8)
        for word in [a, b, c, d] {
            for shift in stride(from: 0, to: 64, by: 8) {
                let byte = UInt8(truncatingIfNeeded: word >> UInt64(shift))
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Equality whose time does not depend on where the digests differ.
    public func constantTimeEquals(_ other: SHA256Words) -> Bool {
        ((a ^ other.a) | (b ^ other.b) | (c ^ other.c) | (d ^ other.d)) == 0
    }

    private static func nibble(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
