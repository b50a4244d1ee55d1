/// One finished request, as accounting stores it (DESIGN.md's usage record).
public struct UsageRecord: Sendable, Equatable, Codable {
    /// Unique id of the record (a UUID string).
    public var id: String
    /// Unix time in seconds when the request arrived.
    public var time: Double
    public var requestID: String
    public var keyID: String?
    public var clientIP: String?
    public var route: String
    public var model: String?
    public var upstream: String?
    public var status: Int
    public var errorCode: String?
    public var stream: Bool
    public var cacheHit: Bool
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens the upstream read from its prompt cache (part of `promptTokens`, priced as cached input).
    public var cachedTokens: Int
    /// Prompt tokens written to the upstream's prompt cache (part of `promptTokens`, priced as a cache write).
    public var cacheWriteTokens: Int
    /// Completion tokens spent on reasoning (part of `completionTokens`).
    public var reasoningTokens: Int
    /// True when the token counts were estimated rather than reported by the upstream.
    public var tokensEstimated: Bool
    public var latencyMs: Double
    public var timeToFirstTokenMs: Double?
    public var costUSD: Double
    /// Cost avoided: by a cache hit, or by running locally instead of on the reference model.
    public var savedUSD: Double
    /// True when no local upstream could take the request in time and a hosted `overflow` upstream served it.
    public var overflowed = false
    /// The request and response bodies (see ``BodySample``), only with `store-bodies`.
    public var requestBody: String?
    public var responseBody: String?

    /// Snake case, as DESIGN.md names the fields and the admin API and dashboard read them.
    enum CodingKeys: String, CodingKey {
        case id, time
        case requestID = "request_id"
        case keyID = "key_id"
        case clientIP = "client_ip"
        case route, model, upstream, status
        case errorCode = "error_code"
        case stream
        case cacheHit = "cache_hit"
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case cachedTokens = "cached_tokens"
        case cacheWriteTokens = "cache_write_tokens"
        case reasoningTokens = "reasoning_tokens"
        case tokensEstimated = "tokens_estimated"
        case latencyMs = "latency_ms"
        case timeToFirstTokenMs = "time_to_first_token_ms"
        case costUSD = "cost_usd"
        case savedUSD = "saved_usd"
        case overflowed
        case requestBody = "request_body"
        case responseBody = "response_body"
    }

    public init(
        id: String, time: Double, requestID: String, keyID: String? = nil, clientIP: String? = nil, route: String,
        model: String? = nil, upstream: String? = nil, status: Int, errorCode: String? = nil, stream: Bool = false,
        cacheHit: Bool = false, promptTokens: Int = 0, completionTokens: Int = 0, cachedTokens: Int = 0, cacheWriteTokens: Int = 0,
        reasoningTokens: Int = 0, tokensEstimated: Bool = false,
        latencyMs: Double, timeToFirstTokenMs: Double? = nil, costUSD: Double = 0, savedUSD: Double = 0, overflowed: Bool = false,
        requestBody: String? = nil, responseBody: String? = nil
    ) {
        self.id = id
        self.time = time
        self.requestID = requestID
        self.keyID = keyID
        self.clientIP = clientIP
        self.route = route
        self.model = model
        self.upstream = upstream
        self.status = status
        self.errorCode = errorCode
        self.stream = stream
        self.cacheHit = cacheHit
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedTokens = cachedTokens
        self.cacheWriteTokens = cacheWriteTokens
        self.reasoningTokens = reasoningTokens
        self.tokensEstimated = tokensEstimated
        self.latencyMs = latencyMs
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.costUSD = costUSD
        self.savedUSD = savedUSD
        self.overflowed = overflowed
        self.requestBody = requestBody
        self.responseBody = responseBody
    }

    /// Bytes the stored bodies take, which the usage writer bounds.
    public var bodyBytes: Int { (requestBody?.utf8.count ?? 0) + (responseBody?.utf8.count ?? 0) }
}

extension UsageRecord {
    /// A time-ordered UUID (version 7) for a record made at `time` (Unix seconds).
    ///
    /// Ids that grow with time land at the end of the store's primary-key index instead of at random places in
    /// it, which keeps batched inserts cheap in both SQLite and PostgreSQL.
    public static func newID(time: Double, using rng: inout some RandomNumberGenerator) -> String {
        let millis = UInt64(max(0, time * 1000)) & 0xFFFF_FFFF_FFFF
        let random: UInt64 = rng.next()
        let more: UInt64 = rng.next()
        // 48 bits of milliseconds, version 7, 12 random bits; variant 0b10, 62 random bits.
        let high = millis << 16 | 0x7000 | (random & 0x0FFF)
        let low = 0x8000_0000_0000_0000 | (more & 0x3FFF_FFFF_FFFF_FFFF)
        var digits = [UInt8](repeating: UInt8(ascii: "-"), count: 36)
        let hex = Array("0123456789abcdef".utf8)
        var position = 35
        for (word, dashes) in [(low, [23]), (high, [18, 13, 8])] {
            var word = word
            for _ in 0..<16 {
                if dashes.contains(position) { position -= 1 }
                digits[position] = hex[Int(word & 0xF)]
                word >>= 4
                position -= 1
            }
        }
        return String(decoding: digits, as: UTF8.self)
    }

    /// A time-ordered UUID from the system's random source.
    public static func newID(time: Double) -> String {
        var rng = BatchedSystemRandom()
        return newID(time: time, using: &rng)
    }
}
