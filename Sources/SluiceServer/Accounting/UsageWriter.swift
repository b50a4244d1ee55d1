import Logging
import ServiceLifecycle
import SluiceCore
import SluiceStore
import Synchronization

/// Writes usage records to the store in batches, off the request path, as a service.
///
/// `record(_:)` only appends to a bounded in-memory queue. `run()` writes the queue in one transaction per batch;
/// when the store fails it keeps the batch and retries with capped backoff while new records wait in the queue, so
/// an outage loses nothing until the queue is full. On graceful shutdown it writes what is still queued, within
/// `shutdownAttempts` and `shutdownTimeout`. Every record it cannot keep (queue full, shutdown gave up, recorded
/// after shutdown) is logged and counted in `sluice_usage_records_dropped_total`.
///
/// Add it to the service group before the HTTP server: groups shut down in reverse order, so the server drains its
/// requests (and records their usage) before the writer's final flush.
public final class UsageWriter: UsageRecorder, Service {
    /// Sizes and timings of a usage writer.
    public struct Configuration: Sendable {
        /// Records held in memory, queued or being written, before new ones are dropped.
        public var queueCapacity: Int
        /// Records per insert transaction.
        public var batchSize: Int
        /// How long a record may wait for its batch to fill before it is written anyway.
        public var flushInterval: Duration
        /// Wait after the first failed write; it doubles with each further failure up to `maxRetryDelay`.
        public var initialRetryDelay: Duration
        public var maxRetryDelay: Duration
        /// Failed writes the shutdown flush tolerates before it gives up on the remaining records.
        public var shutdownAttempts: Int
        /// Longest the shutdown flush may take, so a store outage cannot hold the process open.
        public var shutdownTimeout: Duration
        /// Bytes of request and response bodies (`store-bodies`) held by unwritten records. Past it, new records
        /// keep their accounting but lose their bodies (counted), so an outage cannot fill memory with bodies.
        public var bodyBytesBudget: Int

        public init(
            queueCapacity: Int = 50_000, batchSize: Int = 500, flushInterval: Duration = .milliseconds(200),
            initialRetryDelay: Duration = .milliseconds(100), maxRetryDelay: Duration = .seconds(30),
            shutdownAttempts: Int = 5, shutdownTimeout: Duration = .seconds(5), bodyBytesBudget: Int = 64 << 20
        ) {
            self.queueCapacity = queueCapacity
            self.batchSize = batchSize
            self.flushInterval = flushInterval
            self.initialRetryDelay = initialRetryDelay
            self.maxRetryDelay = maxRetryDelay
            self.shutdownAttempts = shutdownAttempts
            self.shutdownTimeout = shutdownTimeout
            self.bodyBytesBudget = bodyBytesBudget
        }
    }

    /// Record counts since the writer was made.
    public struct Statistics: Sendable, Equatable {
        /// Accepted and not yet written.
        public var pending: Int
        public var written: Int
        public var dropped: Int
    }

    private struct State {
        var queue: [UsageRecord] = []
        /// Records a writer has taken from `queue` and not yet written; they still count against the capacity.
        var taken = 0
        /// Body bytes of the records queued or taken.
        var bodyBytes = 0
        var written = 0
        var dropped = 0
        var shuttingDown = false
        /// Set when the shutdown flush has finished: nothing would write later records, so they are dropped.
        var closed = false
        var dropLog = LogThrottle(interval: .seconds(10))
        var failureLog = LogThrottle(interval: .seconds(30))
    }

    private enum Enqueued {
        case queued, wake, dropped(total: Int, logSuppressed: Int?)
    }

    private struct TimedOut: Error {}

    private let store: any GatewayStore
    private let configuration: Configuration
    private let logger: Logger
    private let metrics: AccountingMetrics
    private let state = Mutex(State())
    /// Wakes the drain loop: a record arrived in an empty queue, a batch filled, a timer fired, or shutdown began.
    /// Buffering only the newest keeps it to one pending wake-up however many records arrive.
    private let wakeups: AsyncStream<Void>
    private let wakeup: AsyncStream<Void>.Continuation

    public init(store: any GatewayStore, configuration: Configuration = .init(), logger: Logger, metrics: GatewayMetrics) {
        var configuration = configuration
        configuration.queueCapacity = max(1, configuration.queueCapacity)
        configuration.batchSize = max(1, configuration.batchSize)
        configuration.shutdownAttempts = max(1, configuration.shutdownAttempts)
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.metrics = AccountingMetrics(metrics)
        (wakeups, wakeup) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public var statistics: Statistics {
        state.withLock { Statistics(pending: $0.queue.count + $0.taken, written: $0.written, dropped: $0.dropped) }
    }

    /// Queues `record` for writing; never waits. Drops it (counted and logged) when the queue is full.
    public func record(_ record: UsageRecord) {
        var record = record
        let capacity = configuration.queueCapacity
        let batchSize = configuration.batchSize
        let bodyBytes = record.bodyBytes
        var bodiesDropped = false
        let result = state.withLock { state -> Enqueued in
            guard !state.closed, state.queue.count + state.taken < capacity else {
                state.dropped += 1
                return .dropped(total: state.dropped, logSuppressed: state.dropLog.permit())
            }
            if bodyBytes > 0 {
                if state.bodyBytes + bodyBytes <= configuration.bodyBytesBudget {
                    state.bodyBytes += bodyBytes
                } else {
                    record.requestBody = nil
                    record.responseBody = nil
                    bodiesDropped = true
                }
            }
            state.queue.append(record)
            // Only these two transitions change what the drain loop is waiting for; other arrivals need no wake-up.
            return state.queue.count == 1 || state.queue.count == batchSize ? .wake : .queued
        }
        if bodiesDropped { metrics.bodiesDropped.increment() }
        switch result {
        case .queued:
            metrics.queueDepth.increment()
        case .wake:
            metrics.queueDepth.increment()
            wakeup.yield()
        case .dropped(let total, let suppressed):
            metrics.recordsDropped.increment()
            if let suppressed {
                logger.warning(
                    "Usage queue full or closed; dropping usage records",
                    metadata: [
                        "capacity": "\(capacity)", "dropped_total": "\(total)", "dropped_unlogged": "\(suppressed)",
                    ]
                )
            }
        }
    }

    /// Writes, in batches, every record queued when it is called; returns false if the store failed, in which case
    /// the unwritten records go back to the front of the queue.
    @discardableResult
    public func flush() async -> Bool {
        let records = takeQueued()
        var next = 0
        while next < records.count {
            let end = min(next + configuration.batchSize, records.count)
            do {
                try await store.insertUsage(Array(records[next..<end]))
                didWrite(records[next..<end])
                next = end
            } catch {
                putBack(records[next...])
                writeFailed(error)
                return false
            }
        }
        return true
    }

    /// Drains the queue until graceful shutdown or cancellation, then flushes what is left. Call it once.
    public func run() async throws {
        var wakeups = self.wakeups.makeAsyncIterator()
        await withTaskCancellationOrGracefulShutdownHandler {
            await drain(&wakeups)
        } onCancelOrGracefulShutdown: { [self] in
            state.withLock { $0.shuttingDown = true }
            wakeup.yield()
        }
        await flushForShutdown()
    }

    // MARK: - Draining

    private func drain(_ wakeups: inout AsyncStream<Void>.Iterator) async {
        var records: [UsageRecord] = []
        var next = 0
        var failures = 0
        // Whatever is taken but unwritten when the loop ends goes back to the queue for the shutdown flush.
        defer { putBack(records[next...]) }

        while !Task.isCancelled {
            if next == records.count {
                records = []
                next = 0
                guard await waitForBatch(&wakeups) else { return }
                records = takeQueued()
                continue
            }
            let end = min(next + configuration.batchSize, records.count)
            do {
                try await store.insertUsage(Array(records[next..<end]))
                didWrite(records[next..<end])
                next = end
                if failures > 0 {
                    logger.info("Usage store writes recovered", metadata: ["failed_attempts": "\(failures)"])
                    failures = 0
                }
            } catch {
                failures += 1
                writeFailed(error)
                if isShuttingDown { return }
                await sleep(for: retryDelay(afterFailures: failures), wakeups: &wakeups)
            }
        }
    }

    /// Waits until records should be written: a full batch, or records that have waited `flushInterval`.
    /// Returns false when the loop should stop instead (shutdown or cancellation).
    private func waitForBatch(_ wakeups: inout AsyncStream<Void>.Iterator) async -> Bool {
        while true {
            let (count, shuttingDown) = state.withLock { ($0.queue.count, $0.shuttingDown) }
            if shuttingDown || Task.isCancelled { return false }
            if count >= configuration.batchSize { return true }
            if count > 0 {
                // Give the batch a chance to fill; a full batch or shutdown wakes this early.
                let deadline = ContinuousClock.now + configuration.flushInterval
                while ContinuousClock.now < deadline && !Task.isCancelled {
                    let (count, shuttingDown) = state.withLock { ($0.queue.count, $0.shuttingDown) }
                    if shuttingDown || count >= configuration.batchSize { break }
                    await wait(&wakeups, until: deadline)
                }
                // At shutdown the bounded final flush writes these, so an outage costs no extra attempt here.
                return !isShuttingDown && !Task.isCancelled
            }
            // The stream only ends when this task is cancelled.
            guard await wakeups.next() != nil else { return false }
        }
    }

    /// Sleeps for `delay` unless shutdown begins; record arrivals don't cut it short.
    private func sleep(for delay: Duration, wakeups: inout AsyncStream<Void>.Iterator) async {
        let deadline = ContinuousClock.now + delay
        while ContinuousClock.now < deadline && !isShuttingDown && !Task.isCancelled {
            await wait(&wakeups, until: deadline)
        }
    }

    /// Returns at the next wake-up or at `deadline`, whichever is first; callers re-check why.
    private func wait(_ wakeups: inout AsyncStream<Void>.Iterator, until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            // The timer wakes the loop through the same stream, so the loop only ever waits on one thing.
            group.addTask { [wakeup] in
                do {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    wakeup.yield()
                } catch {}
            }
            _ = await wakeups.next()
            group.cancelAll()
        }
    }

    private func retryDelay(afterFailures failures: Int) -> Duration {
        var delay = configuration.initialRetryDelay
        for _ in 1..<max(1, failures) where delay < configuration.maxRetryDelay {
            delay *= 2
        }
        return min(delay, configuration.maxRetryDelay)
    }

    // MARK: - Shutdown

    private func flushForShutdown() async {
        let deadline = ContinuousClock.now + configuration.shutdownTimeout
        var failures = 0
        var records: [UsageRecord] = []
        var next = 0
        while true {
            if next == records.count {
                // Closing in the same step as finding the queue empty leaves no gap for a record to slip into.
                records = takeQueued(closingIfEmpty: true)
                next = 0
                if records.isEmpty { return }
            }
            let end = min(next + configuration.batchSize, records.count)
            do {
                try await insert(Array(records[next..<end]), before: deadline)
                didWrite(records[next..<end])
                next = end
            } catch {
                failures += 1
                writeFailed(error)
                let now = ContinuousClock.now
                if failures >= configuration.shutdownAttempts || now >= deadline || Task.isCancelled {
                    giveUp(records.count - next)
                    return
                }
                try? await Task.sleep(for: min(retryDelay(afterFailures: failures), deadline - now))
            }
        }
    }

    /// Inserts `batch`, abandoning the wait at `deadline` (the store may still commit it; ids make a retry harmless).
    private func insert(_ batch: [UsageRecord], before deadline: ContinuousClock.Instant) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [store] in try await store.insertUsage(batch) }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                throw TimedOut()
            }
            defer { group.cancelAll() }
            _ = try await group.next()
        }
    }

    /// Drops `heldCount` taken records plus everything still queued, and closes the queue.
    private func giveUp(_ heldCount: Int) {
        let lost = state.withLock { state in
            let lost = heldCount + state.queue.count
            state.queue = []
            state.taken -= heldCount
            state.bodyBytes = 0
            state.dropped += lost
            state.closed = true
            return lost
        }
        metrics.recordsDropped.increment(by: lost)
        metrics.queueDepth.decrement(by: Double(lost))
        logger.error("Gave up writing usage records at shutdown; they are lost", metadata: ["lost": "\(lost)"])
    }

    // MARK: - Queue

    private var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// Takes everything queued; it stays counted against the capacity until written or put back.
    private func takeQueued(closingIfEmpty: Bool = false) -> [UsageRecord] {
        state.withLock { state in
            if state.queue.isEmpty {
                if closingIfEmpty { state.closed = true }
                return []
            }
            let records = state.queue
            // A fresh array rather than removeAll keeps this O(1): the taken buffer is not copied.
            state.queue = []
            state.taken += records.count
            return records
        }
    }

    private func putBack(_ records: ArraySlice<UsageRecord>) {
        guard !records.isEmpty else { return }
        state.withLock { state in
            state.queue.insert(contentsOf: records, at: 0)
            state.taken -= records.count
        }
    }

    private func didWrite(_ records: ArraySlice<UsageRecord>) {
        let count = records.count
        let bodyBytes = records.reduce(0) { $0 + $1.bodyBytes }
        state.withLock { state in
            state.bodyBytes -= bodyBytes
            state.taken -= count
            state.written += count
        }
        metrics.recordsWritten.increment(by: count)
        metrics.queueDepth.decrement(by: Double(count))
    }

    private func writeFailed(_ error: any Error) {
        metrics.writeFailures.increment()
        guard let suppressed = state.withLock({ $0.failureLog.permit() }) else { return }
        logger.warning(
            "Usage store write failed; keeping the records and retrying",
            metadata: ["error": "\(Self.loggable(error))", "pending": "\(statistics.pending)", "failures_unlogged": "\(suppressed)"]
        )
    }

    /// Store errors promise a message safe to log; any other error may carry connection details, so only its type.
    private static func loggable(_ error: any Error) -> String {
        if let error = error as? StoreError { return error.description }
        if error is TimedOut { return "timed out" }
        return String(describing: type(of: error))
    }
}

/// Lets a repeated log message through at most once per interval, counting the ones it held back.
struct LogThrottle {
    let interval: Duration
    private var last: ContinuousClock.Instant?
    private var suppressed = 0

    init(interval: Duration) {
        self.interval = interval
    }

    /// The number held back since the last one let through, or nil to stay quiet this time.
    mutating func permit(now: ContinuousClock.Instant = .now) -> Int? {
        if let last, now - last < interval {
            suppressed += 1
            return nil
        }
        last = now
        defer { suppressed = 0 }
        return suppressed
    }
}
