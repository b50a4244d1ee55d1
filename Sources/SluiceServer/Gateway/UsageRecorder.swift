import SluiceCore

/// One finished request, as accounting stores it.
public struct RequestRecord: Sendable, Equatable {
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
    public var latencyMs: Double
    public var timeToFirstTokenMs: Double?
}

/// Receives a record for every finished request; the accounting store plugs in here.
///
/// Called on the request's task once its response is fully written: implementations must not block.
public protocol UsageRecorder: Sendable {
    func record(_ record: RequestRecord)
}

/// Drops records: the gateway without accounting.
public struct DiscardingUsageRecorder: UsageRecorder {
    public init() {}
    public func record(_ record: RequestRecord) {}
}
