import SluiceCore

/// The first stop of every usage record: prices it, charges the key's token limit and budget, then hands it on
/// (to the ``UsageWriter`` in the gateway, to a collecting recorder in tests).
public struct AccountingRecorder: UsageRecorder {
    let next: any UsageRecorder
    let limiter: any RequestLimiter
    let directory: KeyDirectory
    let pricer: @Sendable (inout UsageRecord) -> Void
    let now: @Sendable () -> Double

    public init(
        next: any UsageRecorder, limiter: any RequestLimiter, directory: KeyDirectory,
        pricer: @escaping @Sendable (inout UsageRecord) -> Void, now: @escaping @Sendable () -> Double
    ) {
        self.next = next
        self.limiter = limiter
        self.directory = directory
        self.pricer = pricer
        self.now = now
    }

    public func record(_ record: UsageRecord) {
        var record = record
        pricer(&record)
        if let keyID = record.keyID {
            // Cache hits cost the upstream nothing, so they do not count against tokens per minute or budget.
            if !record.cacheHit {
                limiter.chargeTokens(
                    keyID: keyID, teamID: directory.teamID(ofKey: keyID), tokens: record.promptTokens + record.completionTokens, now: now())
            }
            directory.addSpend(keyID: keyID, cost: record.costUSD, now: now())
            // Counted as spend now: the worst case held for the call goes.
            directory.reservations.settle(requestID: record.requestID)
        }
        next.record(record)
    }
}
