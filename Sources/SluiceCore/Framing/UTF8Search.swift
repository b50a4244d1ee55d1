/// Searches in UTF-8 bytes, for the stream watchers that look at every chunk an upstream sends.
public enum UTF8Search {
    /// Where `needle` first occurs in `haystack`, nil when it does not.
    public static func range(of needle: [UInt8], in haystack: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        guard let first = needle.first, needle.count <= haystack.count else { return nil }
        var start = 0
        let last = haystack.count - needle.count
        while start <= last {
            if haystack[start] == first {
                var matched = 1
                while matched < needle.count && haystack[start + matched] == needle[matched] { matched += 1 }
                if matched == needle.count { return start..<(start + needle.count) }
            }
            start += 1
        }
        return nil
    }

    /// The first byte of the JSON value after the member name `key` (`"finish_reason"`, quotes included) and its
    /// colon: `n` for null, `"` for a string; nil when the name does not occur.
    public static func valueAfter(_ key: [UInt8], in haystack: UnsafeBufferPointer<UInt8>) -> UInt8? {
        guard let found = range(of: key, in: haystack) else { return nil }
        var position = found.upperBound
        var colon = false
        while position < haystack.count {
            switch haystack[position] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): break
            case UInt8(ascii: ":") where !colon: colon = true
            default: return colon ? haystack[position] : nil
            }
            position += 1
        }
        return nil
    }
}
