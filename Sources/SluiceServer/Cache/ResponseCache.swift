import CoreMetrics
import SluiceCore
import Synchronization

/// The shared answer cache: byte-bounded LRU with TTL, plus coalescing of identical requests in flight.
public final class ResponseCache: Sendable {
    struct State: ~Copyable {
        var lru: LRUCache<CacheKey, CachedAnswer>
        /// Keys a leader is fetching, with the callers waiting for it by waiter id.
        var inFlight: [CacheKey: [UInt64: CheckedContinuation<Bool, Never>]] = [:]
        /// Each waiter's deadline, cancelled once the waiter is woken some other way.
        var deadlines: [UInt64: Task<Void, Never>] = [:]
        var lastWaiterID: UInt64 = 0
    }

    private let state: Mutex<State>
    let ttl: Double
    let now: @Sendable () -> Double
    private let hits: Counter
    private let misses: Counter
    private let evictions: Counter
    private let bytes: Gauge
    private let entries: Gauge

    public init(maxBytes: Int, ttl: Duration, metrics: GatewayMetrics, now: @escaping @Sendable () -> Double) {
        self.state = Mutex(State(lru: LRUCache(maxCost: maxBytes)))
        let (seconds, atto) = ttl.components
        self.ttl = Double(seconds) + Double(atto) / 1e18
        self.now = now
        self.hits = Counter(label: "sluice_cache_hits_total", dimensions: [], factory: metrics.factory)
        self.misses = Counter(label: "sluice_cache_misses_total", dimensions: [], factory: metrics.factory)
        self.evictions = Counter(label: "sluice_cache_evictions_total", dimensions: [], factory: metrics.factory)
        self.bytes = Gauge(label: "sluice_cache_bytes", dimensions: [], factory: metrics.factory)
        self.entries = Gauge(label: "sluice_cache_entries", dimensions: [], factory: metrics.factory)
    }

    /// The live entry for `key`; counts a hit, and a miss unless `countsMiss` is false (a first look that the
    /// full lookup follows when it misses).
    public func lookup(_ key: CacheKey, countsMiss: Bool = true) -> CachedAnswer? {
        let t = now()
        let answer = state.withLock { $0.lru.value(for: key, now: t) }
        if answer != nil {
            hits.increment()
        } else if countsMiss {
            misses.increment()
        }
        return answer
    }

    public func store(_ answer: CachedAnswer, for key: CacheKey) {
        let expires = now() + ttl
        let (evicted, total, count) = state.withLock { s in
            let evicted = s.lru.insert(answer, for: key, cost: answer.cost, expires: expires)
            return (evicted, s.lru.totalCost, s.lru.count)
        }
        if evicted > 0 { evictions.increment(by: evicted) }
        bytes.record(total)
        entries.record(count)
    }

    /// Current memory held by entries, as the bound counts it.
    public var totalBytes: Int { state.withLock { $0.lru.totalCost } }

    /// What ``claim(_:maxWait:)`` decided.
    public enum Claim: Sendable, Equatable {
        /// The caller fetches `key` and must end with ``release(_:)``.
        case lead
        /// Another caller fetched `key` and has finished: look it up again.
        case released
        /// Another caller is still fetching after `maxWait`: the caller should fetch on its own, without claiming.
        case waitedTooLong
    }

    /// Makes the caller the one to fetch `key`, or waits (at most `maxWait`) for whoever is fetching it.
    ///
    /// A waiter whose own client leaves stops waiting at once: the task's cancellation throws `CancellationError`
    /// instead of keeping a request alive for an answer nobody will read.
    public func claim(_ key: CacheKey, maxWait: Duration) async throws -> Claim {
        let id = state.withLock { s -> UInt64? in
            guard s.inFlight[key] != nil else {
                s.inFlight[key] = [:]
                return nil
            }
            s.lastWaiterID &+= 1
            return s.lastWaiterID
        }
        guard let id else { return .lead }
        let released = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let finished = state.withLock { s -> Bool in
                    guard s.inFlight[key] != nil, !Task.isCancelled else { return true }
                    s.inFlight[key]![id] = continuation
                    return false
                }
                if finished {
                    continuation.resume(returning: !Task.isCancelled)
                    return
                }
                // Unstructured, since the continuation's closure cannot await: it only ever resumes this waiter, and is
                // cancelled as soon as the waiter is woken otherwise, so a herd leaves no sleeping tasks behind.
                let deadline = Task { [weak self] in
                    guard (try? await Task.sleep(for: maxWait)) != nil else { return }
                    self?.stopWaiting(key, id: id)
                }
                let waiting = state.withLock { s -> Bool in
                    guard s.inFlight[key]?[id] != nil else { return false }
                    s.deadlines[id] = deadline
                    return true
                }
                if !waiting { deadline.cancel() }
            }
        } onCancel: {
            stopWaiting(key, id: id)
        }
        try Task.checkCancellation()
        return released ? .released : .waitedTooLong
    }

    /// Wakes one waiter without an answer (its deadline passed or its client left); a no-op once it was woken.
    private func stopWaiting(_ key: CacheKey, id: UInt64) {
        let (waiter, deadline) = state.withLock { ($0.inFlight[key]?.removeValue(forKey: id), $0.deadlines.removeValue(forKey: id)) }
        deadline?.cancel()
        waiter?.resume(returning: false)
    }

    /// Ends a fetch claimed with `claim`, waking everyone waiting for it.
    public func release(_ key: CacheKey) {
        let (waiters, deadlines) = state.withLock { s -> ([UInt64: CheckedContinuation<Bool, Never>], [Task<Void, Never>]) in
            let waiters = s.inFlight.removeValue(forKey: key) ?? [:]
            return (waiters, waiters.keys.compactMap { s.deadlines.removeValue(forKey: $0) })
        }
        for deadline in deadlines { deadline.cancel() }
        for waiter in waiters.values { waiter.resume(returning: true) }
    }

    /// Callers waiting for a leader, over all keys (for tests and metrics).
    public var waiting: Int { state.withLock { $0.inFlight.values.reduce(0) { $0 + $1.count } } }

    /// Waiters' deadline tasks still pending (for tests: none outlives its waiter).
    var pendingDeadlines: Int { state.withLock { $0.deadlines.count } }
}

/// A leader's claim on a cache key: stores the answer if there is one and always releases the waiters, once.
///
/// A class so that a response body that is dropped unwritten still releases its waiters when it is freed.
final class CacheTicket: Sendable {
    let cache: ResponseCache
    let key: CacheKey
    let writes: Bool
    private let done = Atomic<Bool>(false)

    init(cache: ResponseCache, key: CacheKey, writes: Bool) {
        self.cache = cache
        self.key = key
        self.writes = writes
    }

    func finish(_ answer: CachedAnswer?) {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if writes, let answer { cache.store(answer, for: key) }
        cache.release(key)
    }

    deinit { finish(nil) }
}
