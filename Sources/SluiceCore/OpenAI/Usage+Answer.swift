import NIOCore

extension Usage {
    /// The `usage` member of an OpenAI answer, reading only that member: answers can be long, and the gateway
    /// forwards them as they are. `completion_tokens` may be absent (embeddings answers have none); `total_tokens`
    /// is recomputed. Nil when there is no usage object or its counts are not non-negative integers.
    public init?(inAnswer answer: ByteBuffer) {
        let usage: Usage? = answer.withUnsafeReadableBytes { bytes in
            guard let range = CanonicalJSON.topLevelMember("usage", in: bytes) else { return nil }
            let object = UnsafeRawBufferPointer(rebasing: bytes[range])
            let members = CanonicalJSON.topLevelMembers(["prompt_tokens", "completion_tokens"], in: object)
            guard let promptRange = members[0], let prompt = Self.count(UnsafeRawBufferPointer(rebasing: object[promptRange]))
            else { return nil }
            var completion = 0
            if let completionRange = members[1] {
                guard let count = Self.count(UnsafeRawBufferPointer(rebasing: object[completionRange])) else { return nil }
                completion = count
            }
            return Usage(promptTokens: prompt, completionTokens: completion)
        }
        guard let usage else { return nil }
        self = usage
    }

    /// A JSON number that is a plain non-negative integer, as token counts are; nil for anything else.
    private static func count(_ digits: UnsafeRawBufferPointer) -> Int? {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var value = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
