import SluiceCore

/// Receives a record for every finished request; the accounting store plugs in here.
///
/// Called on the request's task once its response is fully written: implementations must not block.
public protocol UsageRecorder: Sendable {
    func record(_ record: UsageRecord)
}

/// Drops records: the gateway without accounting.
public struct DiscardingUsageRecorder: UsageRecorder {
    public init() {}
    public func record(_ record: UsageRecord) {}
}
