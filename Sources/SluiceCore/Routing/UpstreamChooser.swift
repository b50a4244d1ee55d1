/// Picks the upstream for one attempt of a request, from a snapshot of the upstreams' state.
public enum UpstreamChooser {
    /// What the chooser needs to know about one upstream.
    public struct Candidate: Sendable, Equatable {
        /// Models served; empty means any.
        public var models: [String]
        public var weight: Int
        public var inFlight: Int
        /// False when its breaker refuses traffic.
        public var admitted: Bool
        /// The models it holds in memory, as its last `/api/ps` said; nil when unknown (not an Ollama server, or
        /// not asked yet).
        public var loaded: [String]?
        /// A hosted upstream used only when no local one can take a request in time.
        public var overflow: Bool
        /// Of `inFlight`, the requests of `batch` keys.
        public var batchInFlight = 0

        public init(
            models: [String], weight: Int = 1, inFlight: Int = 0, admitted: Bool = true, loaded: [String]? = nil, overflow: Bool = false
        ) {
            self.models = models
            self.weight = weight
            self.inFlight = inFlight
            self.admitted = admitted
            self.loaded = loaded
            self.overflow = overflow
        }

        /// Whether it has `model` in memory, so a request for it pays no load.
        public func hasLoaded(_ model: String) -> Bool {
            loaded?.contains { UpstreamChooser.sameModel($0, model) } ?? false
        }
    }

    /// `llama3.2` and `llama3.2:latest` name the same Ollama model.
    public static func sameModel(_ a: String, _ b: String) -> Bool {
        a == b || a == b + ":latest" || b == a + ":latest"
    }

    public static func serves(_ models: [String], model: String) -> Bool {
        models.isEmpty || models.contains { sameModel($0, model) }
    }

    /// Indices of the upstreams that serve `model`: those listing it, else those listing nothing.
    ///
    /// An explicit listing wins over a catch-all, so a model pinned to one upstream never lands elsewhere. Local and
    /// overflow upstreams are matched apart: a hosted overflow listing the model does not hide the local catch-alls.
    public static func servers(of model: String, in candidates: [Candidate]) -> [Int] {
        func tier(overflow: Bool) -> [Int] {
            let pool = candidates.indices.filter { candidates[$0].overflow == overflow }
            let listing = pool.filter { candidates[$0].models.contains { sameModel($0, model) } }
            return listing.isEmpty ? pool.filter { candidates[$0].models.isEmpty } : listing
        }
        return tier(overflow: false) + tier(overflow: true)
    }

    /// The index of the upstream to try next, or nil when none is left.
    ///
    /// Among untried servers of the model whose breaker admits traffic:
    /// 1. `preferred` (the upstream that served the conversation's last turn, whose prompt cache holds it) wins;
    /// 2. else those that have the model loaded are kept, since a cold load costs seconds; where none has it, those
    ///    with the fewest models loaded (the most room for it);
    /// 3. of those, the least busy per unit of weight (`inFlight / weight`) are kept, and one of them is drawn at
    ///    random in proportion to its weight: idle upstreams share traffic by weight, busy ones shed it to idle ones.
    public static func choose(
        model: String, candidates: [Candidate], excluding tried: Set<Int>, preferring preferred: Int? = nil,
        using rng: inout some RandomNumberGenerator
    ) -> Int? {
        var open = servers(of: model, in: candidates).filter { !tried.contains($0) && candidates[$0].admitted }
        guard !open.isEmpty else { return nil }
        if let preferred, open.contains(preferred) { return preferred }
        open = placed(model: model, among: open, candidates: candidates)
        func weight(_ i: Int) -> Int { max(1, candidates[i].weight) }
        // Compared by cross-multiplication: a / wa < b / wb without floating point.
        func lessLoaded(_ a: Int, _ b: Int) -> Bool { candidates[a].inFlight * weight(b) < candidates[b].inFlight * weight(a) }
        let least = open.min(by: lessLoaded)!
        let tied = open.filter { !lessLoaded(least, $0) }
        // Nothing to draw between; the system generator would cost a syscall per request for the usual single upstream.
        if tied.count == 1 { return tied[0] }
        let total = tied.reduce(0) { $0 + weight($1) }
        var draw = Int(rng.next(upperBound: UInt64(total)))
        for i in tied {
            if draw < weight(i) { return i }
            draw -= weight(i)
        }
        return tied.last
    }

    /// The upstreams of `open` that may have `model` loaded: those that reported it, and those whose residency is
    /// unknown (never asked, or not Ollama), which are not known to lack it. When every one is known to lack it,
    /// those with the fewest models loaded.
    static func placed(model: String, among open: [Int], candidates: [Candidate]) -> [Int] {
        guard open.count > 1, open.contains(where: { candidates[$0].loaded != nil }) else { return open }
        let warm = open.filter { candidates[$0].loaded == nil || candidates[$0].hasLoaded(model) }
        if !warm.isEmpty { return warm }
        func count(_ i: Int) -> Int { candidates[i].loaded?.count ?? 0 }
        let fewest = open.map(count).min()!
        return open.filter { count($0) == fewest }
    }
}

extension UpstreamChooser {
    /// Whether a decision is among local upstreams or among the hosted overflow ones.
    public enum OverflowUse: Sendable {
        case none, only
    }

    /// What a request should do about its next attempt.
    public enum Decision: Sendable, Equatable {
        /// Send it to this upstream now.
        case send(Int)
        /// Every upstream that would take it is at its in-flight cap: wait for a slot.
        case wait
        /// No upstream is left to try.
        case none

        public var sends: Bool {
            if case .send = self { true } else { false }
        }
    }

    /// Decides the next attempt under a per-upstream in-flight cap (`maxInFlight` 0 means no cap).
    ///
    /// A full upstream is skipped rather than refused: the request waits only when every upstream that would
    /// take it is full. With `failOpen`, upstreams whose breaker refuses are used when none admits, as `choose`
    /// documents; but a request waits for a full healthy upstream rather than fall back on an unhealthy one.
    ///
    /// `preferred` is only taken while it admits traffic and has room: a conversation moves rather than wait.
    /// `batchLimit`, for a batch request, is how many batch requests an upstream may hold at once.
    /// Overflow upstreams are left out, unless `overflow` is `.only`: then only they are considered (for a request
    /// that waited its time for a local slot).
    public static func decide(
        model: String, candidates: [Candidate], excluding excluded: Set<Int>, failOpen: Bool, maxInFlight: Int,
        preferring preferred: Int? = nil, overflow: OverflowUse = .none, batchLimit: Int? = nil,
        using rng: inout some RandomNumberGenerator
    ) -> Decision {
        var tried = excluded
        for i in candidates.indices {
            if candidates[i].overflow != (overflow == .only) { tried.insert(i) }
        }
        // A batch request (`batchLimit` set) also needs room in the batch share of the upstream's slots.
        func hasRoom(_ i: Int) -> Bool {
            (maxInFlight <= 0 || candidates[i].inFlight < maxInFlight) && batchLimit.map { candidates[i].batchInFlight < $0 } ?? true
        }
        let untried = servers(of: model, in: candidates).filter { !tried.contains($0) }
        var eligible = untried.filter { candidates[$0].admitted }
        var pool = candidates
        if eligible.isEmpty, failOpen {
            eligible = untried
            for i in pool.indices { pool[i].admitted = true }
        }
        guard !eligible.isEmpty else { return .none }
        // Full upstreams are hidden from the draw by marking them refused; the draw itself is `choose`'s.
        for i in pool.indices where !hasRoom(i) { pool[i].admitted = false }
        if let pick = choose(model: model, candidates: pool, excluding: tried, preferring: preferred, using: &rng) { return .send(pick) }
        return .wait
    }
}
