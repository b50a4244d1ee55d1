import Logging
import ServiceLifecycle
import SluiceCore
import SluiceStore
import Synchronization
import Testing
@testable import SluiceServer

/// An in-memory store for accounting tests: it can be switched to fail, and tests can await conditions on it.
final class FakeUsageStore: GatewayStore {
    struct Snapshot: Sendable {
        var records: [String: UsageRecord] = [:]
        /// While true, inserts throw and store nothing.
        var failing = false
        /// The size of every successful insert, in order.
        var batches: [Int] = []
        var failedInserts = 0
        /// Rows received by successful inserts, duplicates included.
        var rowsReceived = 0
        /// How many records each delete call removed, in order.
        var deletes: [Int] = []
        var responses: [String: StoredResponse] = [:]
        /// How many responses each expired-response delete call removed, in order.
        var responseDeletes: [Int] = []
    }

    private struct Waiter {
        let condition: @Sendable (Snapshot) -> Bool
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var snapshot = Snapshot()
        var waiters: [Waiter] = []
    }

    private let state = Mutex(State())

    var snapshot: Snapshot { state.withLock { $0.snapshot } }

    func setFailing(_ failing: Bool) {
        update { $0.failing = failing }
    }

    func seed(responses: [StoredResponse]) {
        update { snapshot in
            for response in responses { snapshot.responses[response.id] = response }
        }
    }

    func seed(_ records: [UsageRecord]) {
        update { snapshot in
            for record in records { snapshot.records[record.id] = record }
        }
    }

    /// Returns once `condition` holds, checked now and after every change, so tests never sleep-poll.
    func waitUntil(_ condition: @escaping @Sendable (Snapshot) -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state in
                if condition(state.snapshot) { return true }
                state.waiters.append(Waiter(condition: condition, continuation: continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    @discardableResult
    private func update<T: Sendable>(_ body: (inout Snapshot) -> T) -> T {
        let (result, ready) = state.withLock { state in
            let result = body(&state.snapshot)
            var ready: [CheckedContinuation<Void, Never>] = []
            state.waiters.removeAll { waiter in
                guard waiter.condition(state.snapshot) else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return (result, ready)
        }
        for continuation in ready { continuation.resume() }
        return result
    }

    func insertUsage(_ records: [UsageRecord]) async throws {
        // Suspend like real I/O would, so the writer's concurrency is exercised.
        await Task.yield()
        let failed = update { snapshot in
            if snapshot.failing {
                snapshot.failedInserts += 1
                return true
            }
            for record in records { snapshot.records[record.id] = record }
            snapshot.batches.append(records.count)
            snapshot.rowsReceived += records.count
            return false
        }
        if failed { throw StoreError("fake store is down") }
    }

    func deleteUsage(before: Double, limit: Int) async throws -> Int {
        await Task.yield()
        return update { snapshot in
            let old = snapshot.records.values.filter { $0.time < before }.sorted { $0.time < $1.time }.prefix(limit)
            for record in old { snapshot.records[record.id] = nil }
            snapshot.deletes.append(old.count)
            return old.count
        }
    }

    func deleteExpiredResponses(before: Double, limit: Int) async throws -> Int {
        await Task.yield()
        return update { snapshot in
            let old = snapshot.responses.values.filter { $0.expiresAt < before }.sorted { $0.expiresAt < $1.expiresAt }
                .prefix(limit)
            for response in old { snapshot.responses[response.id] = nil }
            snapshot.responseDeletes.append(old.count)
            return old.count
        }
    }

    func saveResponse(_ response: StoredResponse) async throws { update { $0.responses[response.id] = response } }
    func response(id: String, keyID: String?, now: Double) async throws -> StoredResponse? { nil }
    func deleteResponse(id: String, keyID: String?) async throws -> Bool { false }

    func migrate() async throws {}
    func insertKey(_ key: APIKeyRecord) async throws { throw StoreError("unused") }
    func key(hash: String) async throws -> APIKeyRecord? { nil }
    func key(id: String) async throws -> APIKeyRecord? { nil }
    func listKeys() async throws -> [APIKeyRecord] { [] }
    func insertTeam(_ team: TeamRecord) async throws { throw StoreError("unused") }
    func listTeams() async throws -> [TeamRecord] { [] }
    func revokeKey(id: String) async throws -> Bool { false }
    func touchKeys(_ lastUsed: [String: Double]) async throws {}
    func keysRevision() async throws -> Int64 { 0 }
    func reportInstance(id: String, keyRevision: Int64, at time: Double) async throws {}
    func removeInstance(id: String) async throws {}
    func instancesBehind(keyRevision: Int64, reportedSince since: Double) async throws -> Int { 0 }
    func liveInstances(reportedSince since: Double) async throws -> Int { 1 }
    func exchangeRateLeases(_ requests: [RateLeaseRequest], instances: Int, now: Double) async throws -> [RateLease] { [] }
    func forgetFullRateBuckets(now: Double) async throws -> Int { 0 }
    func periodSpend(keyIDs: [String], since: Double) async throws -> [String: Double] { [:] }
    func claimBudgetAlert(subject: String, periodStart: Double, at time: Double) async throws -> Bool { true }
    func publishReservations(instanceID: String, reserved: [BudgetReservation], settled: [String], now: Double) async throws {}
    func reservedByOthers(keyIDs: [String], instanceID: String, now: Double) async throws -> [String: Double] { [:] }
    func deleteRollups(before: Double, limit: Int) async throws -> Int { 0 }
    func endSession(digest: String, expiresAt: Double, now: Double) async throws {
        if update({ $0.failing }) { throw StoreError("fake store is down") }
    }
    func isSessionEnded(digest: String) async throws -> Bool {
        if update({ $0.failing }) { throw StoreError("fake store is down") }
        return false
    }
    func usageReport(_ query: UsageQuery, by grouping: UsageGrouping?) async throws -> UsageBreakdown { UsageBreakdown() }
    func recentUsage(_ query: UsageQuery, limit: Int) async throws -> [UsageRecord] { [] }
    func spend(keyIDs: [String]) async throws -> [String: Double] { [:] }
    func close() async throws {}
}

/// Collects log messages so tests can check that losses are reported.
final class CapturedLogs: Sendable {
    private let entries = Mutex<[(Logger.Level, String)]>([])

    var messages: [(level: Logger.Level, message: String)] { entries.withLock { $0.map { (level: $0.0, message: $0.1) } } }

    func logger() -> Logger {
        Logger(label: "test") { _ in Handler(logs: self) }
    }

    fileprivate func append(_ level: Logger.Level, _ message: String) {
        entries.withLock { $0.append((level, message)) }
    }

    private struct Handler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            logs.append(event.level, event.message.description)
        }
    }
}

func usageRecord(_ index: Int, time: Double = 1_700_000_000) -> UsageRecord {
    UsageRecord(
        id: "rec-\(index)", time: time, requestID: "req-\(index)", route: "/v1/chat/completions", model: "m",
        status: 200, promptTokens: 10, completionTokens: 5, latencyMs: 1
    )
}

/// The value of an unlabelled metric in the exposition text, or nil when it isn't there.
func metricValue(_ metrics: GatewayMetrics, _ name: String) -> Double? {
    let text = String(decoding: metrics.render(), as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1))
    }
    return nil
}

/// Runs `services` in a service group while `body` runs, then shuts the group down gracefully and waits for it.
func withRunning(_ services: [any Service], logger: Logger, _ body: () async throws -> Void) async throws {
    let group = ServiceGroup(services: services, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        try await body()
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

@Suite(.timeLimit(.minutes(1)))
struct UsageWriterTests {
    let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    @Test func writesEveryRecordInBatches() async throws {
        let store = FakeUsageStore()
        let metrics = GatewayMetrics()
        let writer = UsageWriter(
            store: store, configuration: .init(batchSize: 50, flushInterval: .milliseconds(5)), logger: quiet, metrics: metrics
        )
        try await withRunning([writer], logger: quiet) {
            for i in 0..<1000 { writer.record(usageRecord(i)) }
            await store.waitUntil { $0.records.count == 1000 }
        }
        let snapshot = store.snapshot
        #expect(snapshot.rowsReceived == 1000)
        #expect(snapshot.batches.count < 1000)
        #expect(snapshot.batches.allSatisfy { $0 <= 50 })
        #expect(writer.statistics == .init(pending: 0, written: 1000, dropped: 0))
        #expect(metricValue(metrics, "sluice_usage_records_written_total") == 1000)
        #expect(metricValue(metrics, "sluice_usage_queue_depth") == 0)
    }

    @Test func aFullBatchIsWrittenWithoutWaitingForTheInterval() async throws {
        let store = FakeUsageStore()
        let writer = UsageWriter(
            store: store, configuration: .init(batchSize: 10, flushInterval: .seconds(3600)), logger: quiet, metrics: GatewayMetrics()
        )
        try await withRunning([writer], logger: quiet) {
            for i in 0..<10 { writer.record(usageRecord(i)) }
            // With an hour's flush interval only the batch-full wake-up can get these written.
            await store.waitUntil { $0.records.count == 10 }
        }
        #expect(store.snapshot.batches == [10])
    }

    @Test func storeOutageLosesNothingAndDuplicatesNothing() async throws {
        let store = FakeUsageStore()
        store.setFailing(true)
        let metrics = GatewayMetrics()
        let logs = CapturedLogs()
        let writer = UsageWriter(
            store: store,
            configuration: .init(
                batchSize: 20, flushInterval: .milliseconds(1), initialRetryDelay: .milliseconds(1), maxRetryDelay: .milliseconds(5)
            ),
            logger: logs.logger(), metrics: metrics
        )
        try await withRunning([writer], logger: quiet) {
            for i in 0..<100 { writer.record(usageRecord(i)) }
            await store.waitUntil { $0.failedInserts >= 3 }
            // More arrive while the store is down; they wait behind the failed batch.
            for i in 100..<150 { writer.record(usageRecord(i)) }
            #expect(writer.statistics.written == 0)
            #expect(writer.statistics.pending == 150)
            store.setFailing(false)
            await store.waitUntil { $0.records.count == 150 }
        }
        let snapshot = store.snapshot
        #expect(snapshot.rowsReceived == 150)
        #expect(writer.statistics == .init(pending: 0, written: 150, dropped: 0))
        #expect((metricValue(metrics, "sluice_usage_write_failures_total") ?? 0) >= 3)
        // Failures are reported, but rate-limited: far fewer warnings than failures.
        let warnings = logs.messages.filter { $0.level == .warning && $0.message.contains("write failed") }
        #expect(warnings.count >= 1)
        #expect(warnings.count < snapshot.failedInserts || snapshot.failedInserts == 1)
    }

    @Test func aFullQueueDropsAreCountedAndLogged() async throws {
        let store = FakeUsageStore()
        let metrics = GatewayMetrics()
        let logs = CapturedLogs()
        let writer = UsageWriter(store: store, configuration: .init(queueCapacity: 10), logger: logs.logger(), metrics: metrics)
        for i in 0..<15 { writer.record(usageRecord(i)) }

        #expect(writer.statistics == .init(pending: 10, written: 0, dropped: 5))
        #expect(metricValue(metrics, "sluice_usage_records_dropped_total") == 5)
        #expect(metricValue(metrics, "sluice_usage_queue_depth") == 10)
        #expect(logs.messages.contains { $0.level == .warning && $0.message.contains("dropping") })

        #expect(await writer.flush())
        #expect(Set(store.snapshot.records.keys) == Set((0..<10).map { "rec-\($0)" }))
        #expect(writer.statistics == .init(pending: 0, written: 10, dropped: 5))
        // Room again after the flush.
        writer.record(usageRecord(99))
        #expect(writer.statistics.pending == 1)
    }

    /// Bodies beyond the writer's budget are dropped from their records, which are kept; written bodies free it.
    @Test func bodiesBeyondTheBudgetAreDroppedButTheRecordsKept() async throws {
        let store = FakeUsageStore()
        let metrics = GatewayMetrics()
        let writer = UsageWriter(store: store, configuration: .init(bodyBytesBudget: 250), logger: quiet, metrics: metrics)
        func withBodies(_ i: Int) -> UsageRecord {
            var record = usageRecord(i)
            record.requestBody = String(repeating: "q", count: 50)
            record.responseBody = String(repeating: "a", count: 50)
            return record
        }
        for i in 0..<3 { writer.record(withBodies(i)) }
        #expect(writer.statistics.pending == 3)
        #expect(metricValue(metrics, "sluice_usage_bodies_dropped_total") == 1)
        #expect(await writer.flush())
        let stored = store.snapshot.records
        #expect(stored.count == 3)
        #expect(stored["rec-0"]?.requestBody?.count == 50 && stored["rec-1"]?.responseBody?.count == 50)
        #expect(stored["rec-2"]?.requestBody == nil && stored["rec-2"]?.responseBody == nil)
        // Written bodies no longer count against the budget.
        writer.record(withBodies(3))
        #expect(await writer.flush())
        #expect(store.snapshot.records["rec-3"]?.requestBody?.count == 50)
        #expect(metricValue(metrics, "sluice_usage_bodies_dropped_total") == 1)
    }

    @Test func flushKeepsRecordsWhenTheStoreFails() async throws {
        let store = FakeUsageStore()
        store.setFailing(true)
        let writer = UsageWriter(store: store, configuration: .init(batchSize: 2), logger: quiet, metrics: GatewayMetrics())
        for i in 0..<5 { writer.record(usageRecord(i)) }
        #expect(await writer.flush() == false)
        #expect(writer.statistics == .init(pending: 5, written: 0, dropped: 0))

        store.setFailing(false)
        #expect(await writer.flush())
        #expect(store.snapshot.records.count == 5)
        #expect(store.snapshot.batches == [2, 2, 1])
    }

    @Test func gracefulShutdownFlushesEverythingQueued() async throws {
        let store = FakeUsageStore()
        let metrics = GatewayMetrics()
        let writer = UsageWriter(
            store: store, configuration: .init(batchSize: 5000, flushInterval: .seconds(3600)), logger: quiet, metrics: metrics
        )
        try await withRunning([writer], logger: quiet) {
            for i in 0..<1234 { writer.record(usageRecord(i)) }
            // Neither a full batch nor the interval has come: only shutdown will write these.
            #expect(store.snapshot.records.isEmpty)
        }
        #expect(store.snapshot.records.count == 1234)
        #expect(store.snapshot.rowsReceived == 1234)
        #expect(writer.statistics == .init(pending: 0, written: 1234, dropped: 0))

        // Nothing is left to write a record that arrives after shutdown: it is counted, not silently kept.
        writer.record(usageRecord(5000))
        #expect(writer.statistics.dropped == 1)
        #expect(metricValue(metrics, "sluice_usage_records_dropped_total") == 1)
    }

    @Test func shutdownGivesUpOnADownStoreAndReportsTheLoss() async throws {
        let store = FakeUsageStore()
        store.setFailing(true)
        let metrics = GatewayMetrics()
        let logs = CapturedLogs()
        let writer = UsageWriter(
            store: store,
            configuration: .init(
                batchSize: 5000, flushInterval: .seconds(3600), initialRetryDelay: .milliseconds(1), shutdownAttempts: 3,
                shutdownTimeout: .seconds(30)
            ),
            logger: logs.logger(), metrics: metrics
        )
        try await withRunning([writer], logger: quiet) {
            for i in 0..<40 { writer.record(usageRecord(i)) }
        }
        #expect(store.snapshot.failedInserts == 3)
        #expect(writer.statistics == .init(pending: 0, written: 0, dropped: 40))
        #expect(metricValue(metrics, "sluice_usage_records_dropped_total") == 40)
        #expect(metricValue(metrics, "sluice_usage_queue_depth") == 0)
        #expect(logs.messages.contains { $0.level == .error && $0.message.contains("Gave up") })
    }
}

@Suite(.timeLimit(.minutes(1)))
struct RetentionServiceTests {
    let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    static let day = 86_400.0
    static let start = 1_750_000_000.0

    /// 2500 records 31–32 days old and 100 that are 29 days old, at `start`.
    func seededStore() -> FakeUsageStore {
        let store = FakeUsageStore()
        store.seed((0..<2500).map { usageRecord($0, time: Self.start - 31 * Self.day - Double($0)) })
        store.seed((2500..<2600).map { usageRecord($0, time: Self.start - 29 * Self.day) })
        return store
    }

    @Test func deletesOnlyExpiredRecordsInBatches() async throws {
        let store = seededStore()
        let clock = Mutex(Self.start)
        let metrics = GatewayMetrics()
        let retention = RetentionService(
            store: store, retentionDays: 30, batchSize: 1000, logger: quiet, metrics: metrics, now: { clock.withLock { $0 } }
        )
        #expect(try await retention.deleteExpired() == 2500)
        #expect(store.snapshot.deletes == [1000, 1000, 500])
        #expect(Set(store.snapshot.records.keys) == Set((2500..<2600).map { "rec-\($0)" }))
        #expect(metricValue(metrics, "sluice_usage_records_deleted_total") == 2500)

        // Two days later the remaining records are past retention too.
        clock.withLock { $0 += 2 * Self.day }
        #expect(try await retention.deleteExpired() == 100)
        #expect(store.snapshot.records.isEmpty)
    }

    @Test func zeroRetentionKeepsEverything() async throws {
        let store = seededStore()
        let retention = RetentionService(
            store: store, retentionDays: 0, initialDelay: .zero, logger: quiet, metrics: GatewayMetrics(), now: { Self.start }
        )
        #expect(try await retention.deleteExpired() == 0)
        // As a service it still sweeps expired responses, but never usage records.
        store.seed(responses: [storedResponse("resp_old", expiresAt: Self.start - 1)])
        try await withRunning([retention], logger: quiet) {
            await store.waitUntil { $0.responses.isEmpty }
        }
        #expect(store.snapshot.deletes.isEmpty)
        #expect(store.snapshot.records.count == 2600)
    }

    func storedResponse(_ id: String, expiresAt: Double) -> StoredResponse {
        StoredResponse(
            id: id, keyID: nil, createdAt: expiresAt - 30 * Self.day, expiresAt: expiresAt, model: "m", inputItems: "[]",
            outputItems: "[]", response: "{}")
    }

    @Test func deletesOnlyExpiredResponsesInBatches() async throws {
        let store = seededStore()
        store.seed(responses: (0..<250).map { storedResponse("resp_old_\($0)", expiresAt: Self.start - 1 - Double($0)) })
        store.seed(responses: [storedResponse("resp_now", expiresAt: Self.start), storedResponse("resp_live", expiresAt: Self.start + 1)])
        let metrics = GatewayMetrics()
        let retention = RetentionService(
            store: store, retentionDays: 30, responseBatchSize: 100, logger: quiet, metrics: metrics, now: { Self.start })

        // Expired means before now; the one expiring exactly now goes at the next sweep.
        #expect(try await retention.deleteExpiredResponses() == 250)
        #expect(store.snapshot.responseDeletes == [100, 100, 50])
        #expect(Set(store.snapshot.responses.keys) == ["resp_now", "resp_live"])
        #expect(metricValue(metrics, "sluice_stored_responses_deleted_total") == 250)
        // Usage records are a separate sweep with their own period.
        #expect(store.snapshot.records.count == 2600)
    }

    @Test func sweepsAsAServiceAndStopsOnShutdown() async throws {
        let store = seededStore()
        let retention = RetentionService(
            store: store, retentionDays: 30, interval: .seconds(3600), initialDelay: .zero, batchSize: 1000, logger: quiet,
            metrics: GatewayMetrics(), now: { Self.start }
        )
        // Shutdown must end the hour-long wait for the next sweep, or this would hit the time limit.
        store.seed(responses: [storedResponse("resp_old", expiresAt: Self.start - 1)])
        try await withRunning([retention], logger: quiet) {
            await store.waitUntil { $0.records.count == 100 && $0.responses.isEmpty }
        }
        #expect(store.snapshot.deletes == [1000, 1000, 500])
    }
}
