/// The top-level fields a cache hit needs, read straight from the request bytes without decoding it.
///
/// A cache entry exists only for a request that was valid and answered, and its key covers every field but
/// the delivery ones (`stream`, `stream_options`, `user`, `keep_alive`). So a request whose key finds an entry
/// is valid too, provided its delivery fields are: this probe accepts only the plain forms of those (booleans,
/// a string `user`, a model name without escapes) and is nil for anything else, which then takes the full,
/// validating path.
public struct CacheProbe: Sendable, Equatable {
    public var model: String
    public var stream: Bool
    public var includeUsage: Bool

    public init(model: String, stream: Bool, includeUsage: Bool) {
        self.model = model
        self.stream = stream
        self.includeUsage = includeUsage
    }

    public init?(json: UnsafeRawBufferPointer) {
        let bytes = json.bindMemory(to: UInt8.self)
        // One pass over the body for all four; this runs for every cacheable request.
        let members = CanonicalJSON.topLevelMembers(["model", "stream", "stream_options", "user"], in: json)
        guard let modelRange = members[0], let model = Self.plainString(bytes[modelRange]) else { return nil }
        self.model = model
        stream = false
        if let range = members[1] {
            guard let value = Self.literal(bytes[range]) else { return nil }
            stream = value ?? false
        }
        includeUsage = false
        if let options = members[2], Self.literal(bytes[options]) != .some(nil) {
            guard bytes[options].first == UInt8(ascii: "{") else { return nil }
            if let usage = CanonicalJSON.topLevelMember("include_usage", in: UnsafeRawBufferPointer(rebasing: json[options])) {
                let token = bytes[(options.lowerBound + usage.lowerBound)..<(options.lowerBound + usage.upperBound)]
                guard let value = Self.literal(token) else { return nil }
                includeUsage = value ?? false
            }
        }
        if let user = members[3] {
            guard Self.literal(bytes[user]) == .some(nil) || bytes[user].first == UInt8(ascii: "\"") else { return nil }
        }
    }

    /// The text of a string token without escapes; nil for anything else.
    static func plainString(_ token: Slice<UnsafeBufferPointer<UInt8>>) -> String? {
        guard token.count >= 2, token.first == UInt8(ascii: "\""), token.last == UInt8(ascii: "\"") else { return nil }
        let inner = token.dropFirst().dropLast()
        guard !inner.contains(UInt8(ascii: "\\")) else { return nil }
        return String(decoding: inner, as: UTF8.self)
    }

    /// `true`/`false` as `.some(.some(value))`, `null` as `.some(nil)`, anything else nil.
    static func literal(_ token: Slice<UnsafeBufferPointer<UInt8>>) -> Bool?? {
        if token.elementsEqual("true".utf8) { return .some(true) }
        if token.elementsEqual("false".utf8) { return .some(false) }
        if token.elementsEqual("null".utf8) { return .some(nil) }
        return nil
    }
}
