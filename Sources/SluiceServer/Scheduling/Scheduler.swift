import Foundation
import HTTPTypes
import NIOCore
import NIOFoundationCompat
import SluiceCore
import Synchronization

/// What the scheduler decided for one request before its first attempt.
struct SchedulingPlan: Sendable {
    /// The conversation the request continues, when it has one.
    var conversation: ConversationKey?
    /// The upstream that served the conversation's previous turn, to try first.
    var preferred: Int?

    static let none = SchedulingPlan()
}

/// The stateful part of local-first scheduling: which upstream each conversation is on, and what the upstreams
/// have loaded (kept fresh by ``ModelResidency``).
final class Scheduler: Sendable {
    /// What scheduling is configured with.
    struct Settings: Sendable {
        /// How many conversations the affinity table remembers, and how long after their last turn.
        var affinityCapacity = 10_000
        var affinityTTL = Duration.seconds(1_800)
        /// The `models:` section, by the name clients send.
        var virtualModels: [String: VirtualModel] = [:]
        var contextPolicy = ContextPolicy.warn
        /// The largest `num_ctx` the `raise` policy sets.
        var contextMax = 131_072
    }

    let pool: UpstreamPool
    let residency: ModelResidency?
    let now: @Sendable () -> Double
    let settings: Settings
    private let affinity: Mutex<ConversationAffinity>

    init(pool: UpstreamPool, residency: ModelResidency?, settings: Settings = .init(), now: @escaping @Sendable () -> Double) {
        self.pool = pool
        self.residency = residency
        self.now = now
        self.settings = settings
        let ttl = Double(settings.affinityTTL.components.seconds) + Double(settings.affinityTTL.components.attoseconds) / 1e18
        self.affinity = Mutex(ConversationAffinity(capacity: settings.affinityCapacity, ttl: ttl))
    }

    static let sessionHeader = HTTPField.Name("x-session-id")!

    /// The virtual model a client's name stands for (`coder` and `coder:latest` alike).
    func virtualModel(named name: String) -> VirtualModel? {
        settings.virtualModels[name] ?? settings.virtualModels.first { UpstreamChooser.sameModel($0.key, name) }?.value
    }

    /// Whether request bodies need reading before they are decoded: to apply a virtual model, or to check a prompt
    /// against a context length some upstream reported.
    var inspectsBodies: Bool {
        !settings.virtualModels.isEmpty || pool.knowsContextLengths
    }

    /// The plan of a request for `model` that `servers` could serve: with one server there is nothing to choose.
    func plan(model: String, body: ByteBuffer, headers: HTTPFields, servers: [Int]) -> SchedulingPlan {
        guard servers.count > 1 else { return .none }
        let session = headers[Self.sessionHeader].map { String($0.prefix(256)) }
        // Parsed only when there is a choice to make and no header names the conversation.
        let json = session == nil ? try? JSONDecoder().decode(JSONValue.self, from: body) : nil
        guard let key = ConversationKey.of(sessionID: session, model: model, body: json) else { return .none }
        let time = now()
        let name = affinity.withLock { $0.upstream(for: key, now: time) }
        let preferred = name.flatMap { name in servers.first { pool.upstreams[$0].endpoint.name == name } }
        return SchedulingPlan(conversation: key, preferred: preferred)
    }

    /// Whether a caller's requests may overflow to hosted upstreams: keys only with `allow_overflow`; the master
    /// key and, with auth off, everyone.
    func mayOverflow(_ identity: ClientIdentity) -> Bool {
        guard pool.hasOverflow else { return false }
        if case .key(let record) = identity { return record.allowOverflow }
        return true
    }

    /// The virtual models marked `warm: true`.
    var warmModels: [VirtualModel] {
        settings.virtualModels.values.filter(\.warm).sorted { $0.name < $1.name }
    }

    /// The warm models `index` serves and has not loaded (or not said it has): while any is left, it is not ready.
    func unwarmed(_ index: Int) -> [VirtualModel] {
        guard pool.upstreams[index].endpoint.kind == .ollama else { return [] }
        let warm = warmModels
        guard !warm.isEmpty else { return [] }
        let loaded = pool.loaded(of: index) ?? []
        return warm.filter { model in
            pool.servers(of: model.model).contains(index) && !loaded.contains { UpstreamChooser.sameModel($0.name, model.model) }
        }
    }

    /// The priority class of a caller's requests: a key's own; the master key and anonymous callers are interactive.
    func priority(_ identity: ClientIdentity) -> PriorityClass {
        if case .key(let record) = identity { return record.priority }
        return .interactive
    }

    /// An upstream answered (or began to stream) a request for `model`: it has the model loaded, and the
    /// conversation's next turn should find its prompt cache there. A hosted overflow upstream is marked on the
    /// trace (and so the usage record), and never becomes a conversation's home: the next turn tries local first.
    func served(_ plan: SchedulingPlan, model: String, by index: Int, trace: RequestTrace) {
        if pool.upstreams[index].endpoint.overflow {
            trace.update { $0.overflowed = true }
            pool.metrics.overflowed(upstream: pool.upstreams[index].endpoint.name)
            return
        }
        if let key = plan.conversation {
            let time = now()
            let name = pool.upstreams[index].endpoint.name
            affinity.withLock { $0.record(key, upstream: name, now: time) }
        }
        pool.noteAnswered(index, model: model)
        residency?.refreshSoon(index)
    }
}
