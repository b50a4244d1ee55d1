/// The id and creation time a translated response is stamped with; injected so translation stays pure.
public struct ResponseIdentity: Sendable, Equatable {
    public var id: String
    public var created: Int

    public init(id: String, created: Int) {
        self.id = id
        self.created = created
    }
}

extension ResponseIdentity {
    private static let idAlphabet: [UInt8] = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)

    /// `prefix-` and 24 letters and digits (about 143 random bits), the shape of OpenAI's response ids.
    public static func randomID(prefix: String, using rng: inout some RandomNumberGenerator) -> String {
        // Eight characters per 64-bit draw (62^8 < 2^48 leaves at least 2^16 values for the last one, a modulo
        // bias under 0.1%, harmless for an id that only has to be unique): three draws, not one per character.
        var suffix: (UInt64, UInt64, UInt64) = (rng.next(), rng.next(), rng.next())
        let count = idAlphabet.count
        let characters = [UInt8](unsafeUninitializedCapacity: 24) { buffer, initialized in
            withUnsafeMutableBytes(of: &suffix) { words in
                for i in 0..<24 {
                    var word = words.load(fromByteOffset: (i / 8) * 8, as: UInt64.self)
                    buffer[i] = idAlphabet[Int(word % UInt64(count))]
                    word /= UInt64(count)
                    words.storeBytes(of: word, toByteOffset: (i / 8) * 8, as: UInt64.self)
                }
            }
            initialized = 24
        }
        return prefix + "-" + String(decoding: characters, as: UTF8.self)
    }

    /// A fresh id from the system's random source.
    public static func randomID(prefix: String) -> String {
        var rng = BatchedSystemRandom()
        return randomID(prefix: prefix, using: &rng)
    }
}
