import CoreMetrics
import SluiceCore
import SluiceUpstream
import Synchronization

/// How much each upstream is trusted and loaded: breaker threshold and cool-down, in-flight cap, waiting line.
public struct UpstreamLimits: Sendable, Equatable {
    /// Consecutive failures (requests or probes) that open an upstream's breaker.
    public var breakerFailures = 3
    /// How long an open breaker refuses traffic before it lets a trial request through.
    public var breakerCooldown = Duration.seconds(10)
    /// Requests in flight per upstream, a relayed stream included until it ends; 0 means no cap.
    public var maxInFlight = 256
    /// Requests that may wait, over all upstreams, when every upstream they could use is full.
    public var queueCapacity = 512
    /// How long a request waits for a slot before it is answered 503.
    public var queueTimeout = Duration.seconds(10)
    /// How long a request that may overflow waits for a local slot before a hosted overflow upstream may take it.
    public var overflowAfter = Duration.seconds(2)
    /// The share of an upstream's slots batch requests may hold at once (at least one); 1 puts no limit on them.
    public var batchShare = 0.5

    /// Slots of an upstream batch requests may hold at once; nil when there is no cap to take a share of.
    var batchSlots: Int? {
        maxInFlight > 0 && batchShare < 1 ? max(1, Int((Double(maxInFlight) * batchShare).rounded(.down))) : nil
    }

    public init() {}

    /// No cap and no line: what a gateway built without configuration (tests, benchmarks) gets.
    public static let unlimited: UpstreamLimits = {
        var limits = UpstreamLimits()
        limits.maxInFlight = 0
        limits.queueCapacity = 0
        return limits
    }()
}

/// The upstreams with their live routing state: one circuit breaker and one in-flight count each, and the
/// line of requests waiting for a slot.
final class UpstreamPool: Sendable {
    let upstreams: [any UpstreamProvider]
    let metrics: GatewayMetrics
    let limits: UpstreamLimits
    let now: @Sendable () -> Double
    /// Made once: every acquire and release sets them, and making a gauge means a registry lookup by label.
    private let stateGauges: [CoreMetrics.Gauge]
    private let inFlightGauges: [CoreMetrics.Gauge]
    private let queueDepthGauge: CoreMetrics.Gauge

    private struct Entry {
        var breaker: CircuitBreaker
        var inFlight = 0
        /// Of `inFlight`, the slots held by batch requests.
        var batchInFlight = 0
        /// What it has loaded, from its last `/api/ps` and the answers since; nil when unknown.
        var loaded: [LoadedModel]?
        /// Every model ever reported loaded here: its `sluice_upstream_model_loaded` series drops to 0 on unload.
        var seenModels: Set<String> = []
    }

    /// A request waiting for a slot, and what it would accept.
    private struct Waiter: Sendable {
        var model: String
        var tried: Set<Int>
        var failOpen: Bool
        var preferred: Int?
        /// May go to an overflow upstream once `overflowAfter` has passed.
        var mayOverflow: Bool
        /// It has waited long enough (or no local upstream can serve it): overflow upstreams may take it.
        var overflowNow: Bool
        var priority: PriorityClass
        /// Set once it is in line.
        var continuation: CheckedContinuation<Int?, any Error>?
    }

    /// What a freed slot or a recovered breaker gives a waiter.
    private enum Grant {
        case slot(Int)
        /// Nothing will ever serve it now (all its servers tried): it stops waiting with no upstream.
        case nothingLeft
    }

    private struct State {
        var entries: [Entry]
        var queue: AdmissionQueue<Waiter>
        var lastWaiterID: UInt64 = 0
        /// Waits begun and not yet over; a timer that fires before its waiter is in line takes it out of here.
        var openWaits: Set<UInt64> = []
        /// Waits past `overflowAfter`; a timer that fires before its waiter is in line leaves the mark here.
        var overflowDue: Set<UInt64> = []
    }

    // Breakers, counts and the line share one lock: a slot freed and handed to a waiter is one step, so no
    // newcomer can take it in between and no wake-up is lost.
    private let state: Mutex<State>

    /// How one attempt ended, as far as the upstream's health goes.
    enum Outcome {
        case success
        case failure
        /// Cancelled, or refused for the client's fault: says nothing about the upstream.
        case neutral
    }

    init(upstreams: [any UpstreamProvider], metrics: GatewayMetrics, limits: UpstreamLimits = .unlimited, now: @escaping @Sendable () -> Double) {
        self.upstreams = upstreams
        self.metrics = metrics
        self.limits = limits
        self.now = now
        self.stateGauges = upstreams.map { metrics.upstreamStateGauge(upstream: $0.endpoint.name) }
        self.inFlightGauges = upstreams.map { metrics.upstreamInFlightGauge(upstream: $0.endpoint.name) }
        self.queueDepthGauge = metrics.upstreamQueueDepthGauge()
        let coolDown = Double(limits.breakerCooldown.nanoseconds) / 1e9
        self.state = Mutex(
            State(
                entries: upstreams.map { _ in Entry(breaker: CircuitBreaker(failureThreshold: max(1, limits.breakerFailures), coolDown: coolDown)) },
                queue: AdmissionQueue(capacity: limits.queueCapacity)))
        refreshGauges()
    }

    /// Indices of the upstreams serving `model`, whatever their state.
    func servers(of model: String) -> [Int] {
        UpstreamChooser.servers(of: model, in: upstreams.map { UpstreamChooser.Candidate(models: $0.endpoint.models, overflow: $0.endpoint.overflow) })
    }

    /// Whether any upstream is a hosted overflow.
    var hasOverflow: Bool { upstreams.contains { $0.endpoint.overflow } }

    /// Picks an upstream for the next attempt and counts it in flight; nil when none is left.
    ///
    /// With `failOpen`, when every untried server's breaker refuses, one is picked anyway: a request
    /// that has nowhere else to go is better sent to a maybe-dead upstream than refused outright.
    /// When every upstream that would take the request is at its cap, it waits in line for a slot; a full line
    /// or a wait past `queueTimeout` throws `upstreamOverloaded`, a cancelled wait `CancellationError`.
    ///
    /// `preferred` (the upstream a conversation's last turn went to) is taken when it has room; the model's
    /// residency, as `/api/ps` reported it, steers the rest.
    ///
    /// With `mayOverflow`, a request no local upstream takes within `overflowAfter` (or none can serve at all) may go
    /// to a hosted overflow upstream.
    func acquire(
        model: String, excluding tried: Set<Int>, failOpen: Bool, preferring preferred: Int? = nil, mayOverflow: Bool = false,
        priority: PriorityClass = .interactive
    ) async throws -> Int? {
        let time = now()
        enum First { case chosen(Int?), shed, wait(overflowNow: Bool) }
        let first: First = state.withLock { state in
            switch decide(&state, model: model, tried: tried, failOpen: failOpen, preferred: preferred, priority: priority, at: time) {
            case .send(let index): return .chosen(index)
            case .none:
                // No local upstream can ever serve it: the overflow may, at once.
                guard mayOverflow else { return .chosen(nil) }
                switch decide(&state, model: model, tried: tried, failOpen: failOpen, overflowNow: true, priority: priority, at: time) {
                case .send(let index): return .chosen(index)
                case .none: return .chosen(nil)
                case .wait: return state.queue.isFull ? .shed : .wait(overflowNow: true)
                }
            case .wait: return state.queue.isFull ? .shed : .wait(overflowNow: false)
            }
        }
        switch first {
        case .chosen(let index):
            if index != nil { refreshGauges() }
            return index
        case .shed:
            metrics.upstreamShed(reason: "queue_full")
            throw APIError.upstreamOverloaded()
        case .wait(let overflowNow):
            let waiter = Waiter(
                model: model, tried: tried, failOpen: failOpen, preferred: preferred, mayOverflow: mayOverflow, overflowNow: overflowNow,
                priority: priority, continuation: nil)
            return try await waitForSlot(waiter)
        }
    }

    /// Ends an attempt started by `acquire`, feeding its outcome to the breaker, and hands the slot on.
    func release(_ index: Int, outcome: Outcome, priority: PriorityClass = .interactive) {
        let time = now()
        let granted = state.withLock { state in
            state.entries[index].inFlight -= 1
            if priority == .batch { state.entries[index].batchInFlight -= 1 }
            switch outcome {
            case .success: state.entries[index].breaker.recordSuccess()
            case .failure: state.entries[index].breaker.recordFailure(at: time)
            case .neutral: state.entries[index].breaker.recordAbandoned()
            }
            return serveWaiters(&state, at: time)
        }
        resume(granted)
        refreshGauges()
    }

    /// Feeds a background probe's result to an upstream's breaker; returns the state before and after.
    ///
    /// A failed probe counts like a failed request. A successful one closes an open or half-open breaker, so an
    /// upstream comes back without a client paying for the trial; on a closed breaker it changes nothing, since
    /// a server that answers probes may still fail real requests.
    @discardableResult
    func recordProbe(_ index: Int, ok: Bool) -> (before: CircuitBreaker.State, after: CircuitBreaker.State) {
        let time = now()
        let (states, granted) = state.withLock { state in
            let before = state.entries[index].breaker.state(at: time)
            if !ok {
                state.entries[index].breaker.recordFailure(at: time)
            } else if before != .closed {
                state.entries[index].breaker.recordSuccess()
            }
            let after = state.entries[index].breaker.state(at: time)
            return ((before, after), after == .closed && before != .closed ? serveWaiters(&state, at: time) : [])
        }
        resume(granted)
        refreshGauges()
        return states
    }

    func state(of index: Int) -> CircuitBreaker.State {
        let time = now()
        return state.withLock { $0.entries[index].breaker.state(at: time) }
    }

    func inFlight(of index: Int) -> Int {
        state.withLock { $0.entries[index].inFlight }
    }

    var waiting: Int {
        state.withLock { $0.queue.count }
    }

    // MARK: Loaded models

    /// What `index` has loaded, as last reported; nil when unknown.
    func loaded(of index: Int) -> [LoadedModel]? {
        state.withLock { $0.entries[index].loaded }
    }

    /// Replaces what `index` has loaded with its `/api/ps` answer, and sets `sluice_upstream_model_loaded`.
    func setLoaded(_ index: Int, _ models: [LoadedModel]) {
        let (names, seen) = state.withLock { state in
            state.entries[index].loaded = models
            state.entries[index].seenModels.formUnion(models.map(\.name))
            return (Set(models.map(\.name)), state.entries[index].seenModels)
        }
        let upstream = upstreams[index].endpoint.name
        for model in seen { metrics.upstreamModelLoadedGauge(upstream: upstream, model: model).record(names.contains(model) ? 1 : 0) }
    }

    /// Whether any upstream reported the context length of a loaded model.
    var knowsContextLengths: Bool {
        state.withLock { $0.entries.contains { $0.loaded?.contains { $0.contextLength != nil } ?? false } }
    }

    /// The smallest context length the upstreams in `servers` report for `model`, loaded; nil when none does.
    func contextLength(of model: String, on servers: [Int]) -> Int? {
        state.withLock { state in
            servers.compactMap { i in
                state.entries[i].loaded?.first { UpstreamChooser.sameModel($0.name, model) }?.contextLength
            }.min()
        }
    }

    /// Notes that `index` just answered for `model`, which it therefore has loaded now, ahead of the next `/api/ps`.
    func noteAnswered(_ index: Int, model: String) {
        let added = state.withLock { state -> Bool in
            guard var loaded = state.entries[index].loaded, !loaded.contains(where: { UpstreamChooser.sameModel($0.name, model) }) else {
                return false
            }
            loaded.append(LoadedModel(name: model))
            state.entries[index].loaded = loaded
            state.entries[index].seenModels.insert(model)
            return true
        }
        if added { metrics.upstreamModelLoadedGauge(upstream: upstreams[index].endpoint.name, model: model).record(1) }
    }

    /// Sets the per-upstream gauges; open turns half-open by time alone, so readers call this too.
    func refreshGauges() {
        let time = now()
        let (states, counts, waiting) = state.withLock { state in
            (state.entries.map { $0.breaker.state(at: time) }, state.entries.map(\.inFlight), state.queue.count)
        }
        for i in upstreams.indices {
            stateGauges[i].record(states[i].rawValue)
            inFlightGauges[i].record(counts[i])
        }
        queueDepthGauge.record(waiting)
    }

    // MARK: Waiting for a slot

    private func waitForSlot(_ waiter: Waiter) async throws -> Int? {
        let id = state.withLock { state in
            state.lastWaiterID &+= 1
            state.openWaits.insert(state.lastWaiterID)
            return state.lastWaiterID
        }
        defer {
            state.withLock { state in
                state.openWaits.remove(id)
                state.overflowDue.remove(id)
            }
        }
        let timeout = limits.queueTimeout
        let overflowAfter = limits.overflowAfter
        let outcome: Result<Int?, any Error> = await withTaskGroup(of: Void.self) { group in
            // The timers are children, so they end with the wait whichever way the wait ends.
            group.addTask {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                self.expire(id)
            }
            if waiter.mayOverflow, !waiter.overflowNow, overflowAfter < timeout {
                group.addTask {
                    guard (try? await Task.sleep(for: overflowAfter)) != nil else { return }
                    self.overflow(id)
                }
            }
            defer { group.cancelAll() }
            do {
                return .success(try await enqueueAndWait(id: id, waiter))
            } catch {
                return .failure(error)
            }
        }
        refreshGauges()
        return try outcome.get()
    }

    private func enqueueAndWait(id: UInt64, _ waiter: Waiter) async throws -> Int? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int?, any Error>) in
                let time = now()
                var shed: String?
                let immediate: Result<Int?, any Error>? = state.withLock { state in
                    // Checked under the lock: a cancellation handler that ran before this found nothing to remove.
                    if Task.isCancelled { return .failure(CancellationError()) }
                    var waiter = waiter
                    if state.overflowDue.contains(id) { waiter.overflowNow = true }
                    // Decided again: a slot may have been freed since the first look, with nobody in line to take it.
                    switch decide(&state, waiter, at: time) {
                    case .send(let index): return .success(index)
                    case .none: return .success(nil)
                    case .wait:
                        guard state.openWaits.contains(id) else {
                            shed = "queue_timeout"
                            return .failure(APIError.upstreamOverloaded())
                        }
                        waiter.continuation = continuation
                        guard state.queue.enqueue(id: id, waiter) else {
                            shed = "queue_full"
                            return .failure(APIError.upstreamOverloaded())
                        }
                        return nil
                    }
                }
                if let shed { metrics.upstreamShed(reason: shed) }
                if let immediate {
                    continuation.resume(with: immediate)
                } else {
                    refreshGauges()
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.queue.remove(id: id) }
            waiter?.continuation?.resume(throwing: CancellationError())
        }
    }

    /// The wait of `id` ran out: it leaves the line with a 503, unless it was served or cancelled meanwhile.
    private func expire(_ id: UInt64) {
        let waiter = state.withLock { state in
            state.openWaits.remove(id)
            return state.queue.remove(id: id)
        }
        guard let waiter else { return }
        metrics.upstreamShed(reason: "queue_timeout")
        waiter.continuation?.resume(throwing: APIError.upstreamOverloaded(retryAfter: 1))
    }

    /// The wait of `id` has lasted `overflowAfter`: from now on an overflow upstream may take it, at once if one has room.
    private func overflow(_ id: UInt64) {
        let time = now()
        let granted: (CheckedContinuation<Int?, any Error>, Int)? = state.withLock { state in
            guard state.openWaits.contains(id) else { return nil }
            state.overflowDue.insert(id)
            guard let waiter = state.queue.update(id: id, { waiter -> Waiter in
                waiter.overflowNow = true
                return waiter
            }) else { return nil }
            guard case .send(let index) = decide(&state, waiter, at: time), let continuation = waiter.continuation else { return nil }
            _ = state.queue.remove(id: id)
            return (continuation, index)
        }
        if let (continuation, index) = granted {
            continuation.resume(returning: index)
            refreshGauges()
        }
    }

    // MARK: Under the lock

    /// Decides an attempt and, when it may go, claims the slot (and a half-open breaker's trial).
    private func decide(_ state: inout State, _ waiter: Waiter, at time: Double) -> UpstreamChooser.Decision {
        decide(
            &state, model: waiter.model, tried: waiter.tried, failOpen: waiter.failOpen, preferred: waiter.preferred,
            overflowNow: waiter.overflowNow, priority: waiter.priority, at: time)
    }

    /// With `overflowNow`, a local upstream is still preferred, and an overflow one is taken when no local one has room.
    private func decide(
        _ state: inout State, model: String, tried: Set<Int>, failOpen: Bool, preferred: Int? = nil, overflowNow: Bool = false,
        priority: PriorityClass = .interactive, at time: Double
    ) -> UpstreamChooser.Decision {
        var rng = BatchedSystemRandom()
        let candidates = upstreams.indices.map { i in
            var candidate = UpstreamChooser.Candidate(
                models: upstreams[i].endpoint.models, weight: upstreams[i].endpoint.weight, inFlight: state.entries[i].inFlight,
                admitted: state.entries[i].breaker.admits(at: time), loaded: state.entries[i].loaded?.map(\.name),
                overflow: upstreams[i].endpoint.overflow)
            candidate.batchInFlight = state.entries[i].batchInFlight
            return candidate
        }
        let batchLimit = priority == .batch ? limits.batchSlots : nil
        var decision = UpstreamChooser.decide(
            model: model, candidates: candidates, excluding: tried, failOpen: failOpen, maxInFlight: limits.maxInFlight,
            preferring: preferred, batchLimit: batchLimit, using: &rng)
        if overflowNow, !decision.sends {
            let hosted = UpstreamChooser.decide(
                model: model, candidates: candidates, excluding: tried, failOpen: failOpen, maxInFlight: limits.maxInFlight,
                overflow: .only, batchLimit: batchLimit, using: &rng)
            switch (decision, hosted) {
            case (_, .send): decision = hosted
            case (.none, .wait): decision = .wait
            default: break
            }
        }
        if case .send(let index) = decision {
            _ = state.entries[index].breaker.admit(at: time)
            state.entries[index].inFlight += 1
            if priority == .batch { state.entries[index].batchInFlight += 1 }
        }
        return decision
    }

    /// Gives free slots to waiters, interactive ones first, then batch ones, each first come first served; their
    /// continuations are resumed by the caller, outside the lock.
    private func serveWaiters(_ state: inout State, at time: Double) -> [(CheckedContinuation<Int?, any Error>, Int?)] {
        guard state.queue.count > 0 else { return [] }
        var queue = state.queue
        // Emptied while served, so the line is not copied on write.
        state.queue = AdmissionQueue(capacity: 0)
        var served: [(waiter: Waiter, grant: Grant)] = []
        for round in [PriorityClass.interactive, .batch] {
            served += queue.serve { waiter -> Grant? in
                guard waiter.priority == round else { return nil }
                switch decide(&state, waiter, at: time) {
                case .send(let index): return .slot(index)
                case .none: return .nothingLeft
                case .wait: return nil
                }
            }
        }
        state.queue = queue
        return served.compactMap { served in
            guard let continuation = served.waiter.continuation else { return nil }
            switch served.grant {
            case .slot(let index): return (continuation, index)
            case .nothingLeft: return (continuation, nil)
            }
        }
    }

    private func resume(_ granted: [(CheckedContinuation<Int?, any Error>, Int?)]) {
        for (continuation, index) in granted { continuation.resume(returning: index) }
    }
}

/// One attempt's hold on an upstream slot, from `acquire` until the exchange is over (a relayed stream included).
///
/// Ends once: explicitly with the outcome, or, if the answer is dropped unsent, as neutral when the lease goes
/// away, so no path can leak a slot.
final class UpstreamLease: Sendable {
    let index: Int
    private let pool: UpstreamPool
    /// A batch request's slot also counts against the upstream's batch share.
    private let priority: PriorityClass
    private let ended = Atomic(false)

    init(pool: UpstreamPool, index: Int, priority: PriorityClass = .interactive) {
        self.pool = pool
        self.index = index
        self.priority = priority
    }

    func end(_ outcome: UpstreamPool.Outcome) {
        guard !ended.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pool.release(index, outcome: outcome, priority: priority)
    }

    deinit {
        end(.neutral)
    }
}
