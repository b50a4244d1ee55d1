import NIOCore

extension Usage {
    /// The `usage` member of an OpenAI answer, reading only that member: answers can be long, and the gateway
    /// forwards them as they are. `completion_tokens` may be absent (embeddings answers have none); `total_tokens`
    /// is recomputed; the prompt-cache and reasoning counts come from `prompt_tokens_details` and
    /// `completion_tokens_details` where present. Nil when there is no usage object or its counts are not
    /// non-negative integers.
    public init?(inAnswer answer: ByteBuffer) {
        let usage: Usage? = answer.withUnsafeReadableBytes { bytes in
            guard let range = CanonicalJSON.topLevelMember("usage", in: bytes) else { return nil }
            let object = UnsafeRawBufferPointer(rebasing: bytes[range])
            let members = CanonicalJSON.topLevelMembers(
                ["prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"], in: object)
            guard let promptRange = members[0], let prompt = Self.count(UnsafeRawBufferPointer(rebasing: object[promptRange]))
            else { return nil }
            var completion = 0
            if let completionRange = members[1] {
                guard let count = Self.count(UnsafeRawBufferPointer(rebasing: object[completionRange])) else { return nil }
                completion = count
            }
            // One level deeper for the prompt-cache and reasoning counts; a detail that is not a count reads as none.
            func detail(_ range: Range<Int>?, _ name: String) -> Int {
                guard let range else { return 0 }
                let details = UnsafeRawBufferPointer(rebasing: object[range])
                guard let member = CanonicalJSON.topLevelMembers([name], in: details)[0] else { return 0 }
                return Self.count(UnsafeRawBufferPointer(rebasing: details[member])) ?? 0
            }
            return Usage(
                promptTokens: prompt, completionTokens: completion, cachedTokens: detail(members[2], "cached_tokens"),
                reasoningTokens: detail(members[3], "reasoning_tokens"))
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
