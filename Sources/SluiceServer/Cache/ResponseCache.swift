import CoreMetrics
import SluiceCore
import Synchronization

/// The shared answer cache: byte-bounded LRU with TTL, plus coalescing of identical requests in flight.
public final class ResponseCache: Sendable {
    struct State: ~Copyable {
        var lru: LRUCache<CacheKey, CachedAnswer>
        /// Keys a leader is fetching, with the callers waiting for it.
        var inFlight: [CacheKey: [CheckedContinuation<Void, Never>]] = [:]
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

    /// Returns true if the caller is to fetch `key` (it must then call `release`); otherwise waits until the
    /// caller fetching it has finished, and returns false.
    public func claim(_ key: CacheKey) async -> Bool {
        let leader = state.withLock { s -> Bool in
            guard s.inFlight[key] == nil else { return false }
            s.inFlight[key] = []
            return true
        }
        if leader { return true }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = state.withLock { s -> Bool in
                guard s.inFlight[key] != nil else { return true }
                s.inFlight[key]!.append(continuation)
                return false
            }
            if finished { continuation.resume() }
        }
        return false
    }

    /// Ends a fetch claimed with `claim`, waking everyone waiting for it.
    public func release(_ key: CacheKey) {
        let waiters = state.withLock { $0.inFlight.removeValue(forKey: key) } ?? []
        for waiter in waiters { waiter.resume() }
    }
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
