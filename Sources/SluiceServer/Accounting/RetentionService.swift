import Foundation
import Logging
import ServiceLifecycle
import SluiceStore

/// Deletes usage records older than the retention period, and stored responses past their expiry, periodically,
/// as a service.
///
/// Deletes in small batches so no single statement holds the database for long. With `retentionDays` 0 usage
/// records are kept, but expired responses are still deleted: each carries its own expiry (`response-retention`),
/// and an expired one is already invisible, so keeping it would only hold users' conversations for nothing.
public struct RetentionService: Service {
    private let store: any GatewayStore
    private let retentionDays: Int
    private let rollupRetentionDays: Int
    private let interval: Duration
    private let initialDelay: Duration
    private let batchSize: Int
    private let responseBatchSize: Int
    private let logger: Logger
    private let metrics: AccountingMetrics
    private let now: @Sendable () -> Double

    /// - Parameters:
    ///   - retentionDays: records older than this many days are deleted; 0 keeps everything.
    ///   - interval: time between sweeps.
    ///   - initialDelay: time before the first sweep, so startup isn't slowed by it.
    ///   - batchSize: records deleted per statement.
    ///   - responseBatchSize: expired responses deleted per statement; smaller than `batchSize` because each holds a
    ///     whole conversation, so a batch of them is many times the bytes of a batch of records.
    ///   - metrics: where `sluice_usage_records_deleted_total` and `sluice_stored_responses_deleted_total` are counted.
    ///   - now: the current Unix time in seconds; tests pass a fake clock.
    public init(
        store: any GatewayStore, retentionDays: Int, rollupRetentionDays: Int = 400, interval: Duration = .seconds(3600),
        initialDelay: Duration = .seconds(30), batchSize: Int = 1000, responseBatchSize: Int = 100, logger: Logger,
        metrics: GatewayMetrics? = nil, now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.store = store
        self.retentionDays = max(0, retentionDays)
        self.rollupRetentionDays = max(0, rollupRetentionDays)
        self.interval = interval
        self.initialDelay = initialDelay
        self.batchSize = max(1, batchSize)
        self.responseBatchSize = max(1, responseBatchSize)
        self.logger = logger
        // Without the application's metrics the counts go to a private registry nobody scrapes.
        self.metrics = AccountingMetrics(metrics ?? GatewayMetrics())
        self.now = now
    }

    public func run() async throws {
        var delay = initialDelay
        while true {
            // Sleeping through cancelWhenGracefulShutdown ends the wait at shutdown instead of after the interval.
            try? await cancelWhenGracefulShutdown { [delay] in try await Task.sleep(for: delay) }
            if Task.isShuttingDownGracefully || Task.isCancelled { return }
            // Each on its own: a failing usage sweep must not keep expired conversations, nor the reverse.
            do {
                try await deleteExpired()
            } catch {
                logger.warning(
                    "Deleting expired usage records failed; will try again next interval",
                    metadata: ["error": "\(Self.loggable(error))"]
                )
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { return }
            do {
                try await deleteExpiredRollups()
            } catch {
                logger.warning(
                    "Deleting expired usage rollups failed; will try again next interval",
                    metadata: ["error": "\(Self.loggable(error))"]
                )
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { return }
            do {
                try await deleteExpiredResponses()
            } catch {
                logger.warning(
                    "Deleting expired stored responses failed; will try again next interval",
                    metadata: ["error": "\(Self.loggable(error))"]
                )
            }
            delay = interval
        }
    }

    /// Deletes every record older than the retention period, a batch at a time; returns how many it deleted.
    /// Stops early, between batches, on shutdown. Does nothing when retention is off.
    @discardableResult
    public func deleteExpired() async throws -> Int {
        guard retentionDays > 0 else { return 0 }
        let cutoff = now() - Double(retentionDays) * 86_400
        var total = 0
        while true {
            let deleted = try await store.deleteUsage(before: cutoff, limit: batchSize)
            total += deleted
            metrics.recordsDeleted.increment(by: deleted)
            if deleted < batchSize || Task.isShuttingDownGracefully || Task.isCancelled { break }
            // Lets request handling and the usage writer at the database between batches.
            await Task.yield()
        }
        if total > 0 {
            logger.info("Deleted expired usage records", metadata: ["deleted": "\(total)", "retention_days": "\(retentionDays)"])
        }
        return total
    }

    /// Deletes hourly rollups older than `rollup-retention-days` (0 keeps them all); returns how many it deleted.
    /// Record retention never touches them: long reports and budget periods outlive the records.
    @discardableResult
    public func deleteExpiredRollups() async throws -> Int {
        guard rollupRetentionDays > 0 else { return 0 }
        let cutoff = now() - Double(rollupRetentionDays) * 86_400
        var total = 0
        while true {
            let deleted = try await store.deleteRollups(before: cutoff, limit: batchSize)
            total += deleted
            if deleted < batchSize || Task.isShuttingDownGracefully || Task.isCancelled { break }
            await Task.yield()
        }
        if total > 0 {
            logger.info("Deleted expired usage rollups", metadata: ["deleted": "\(total)", "rollup_retention_days": "\(rollupRetentionDays)"])
        }
        return total
    }

    /// Deletes every stored response whose expiry has passed, a batch at a time; returns how many it deleted.
    /// Stops early, between batches, on shutdown.
    @discardableResult
    public func deleteExpiredResponses() async throws -> Int {
        let cutoff = now()
        var total = 0
        while true {
            let deleted = try await store.deleteExpiredResponses(before: cutoff, limit: responseBatchSize)
            total += deleted
            metrics.responsesDeleted.increment(by: deleted)
            if deleted < responseBatchSize || Task.isShuttingDownGracefully || Task.isCancelled { break }
            await Task.yield()
        }
        if total > 0 {
            logger.info("Deleted expired stored responses", metadata: ["deleted": "\(total)"])
        }
        return total
    }

    /// Store errors promise a message safe to log; any other error may carry connection details, so only its type.
    private static func loggable(_ error: any Error) -> String {
        if let error = error as? StoreError { return error.description }
        return String(describing: type(of: error))
    }
}
