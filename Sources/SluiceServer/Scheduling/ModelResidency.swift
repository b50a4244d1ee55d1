import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import ServiceLifecycle
import SluiceCore
import SluiceUpstream
import Synchronization

/// Keeps each Ollama upstream's list of loaded models current, as a service: the prober asks after each probe,
/// the gateway after each answer (coalesced, and at most once per `answerRefreshInterval` per upstream, so busy
/// traffic costs a server a few `/api/ps` a second at most; the answer itself already marks its model loaded).
final class ModelResidency: Service, Sendable {
    static let answerRefreshInterval = Duration.milliseconds(250)

    let pool: UpstreamPool
    let timeout: Duration
    let logger: Logger
    private let requests: AsyncStream<Int>
    private let continuation: AsyncStream<Int>.Continuation
    /// Upstreams with a refresh asked for and not yet started, so each is in the stream at most once, and when each
    /// was last asked for after an answer.
    private let pending = Mutex<(waiting: Set<Int>, askedAt: [Int: ContinuousClock.Instant])>(([], [:]))

    init(pool: UpstreamPool, timeout: Duration = .seconds(2), logger: Logger) {
        self.pool = pool
        self.timeout = timeout
        self.logger = logger
        (requests, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Whether `index` is an upstream that reports what it has loaded.
    func tracks(_ index: Int) -> Bool {
        pool.upstreams[index].endpoint.kind == .ollama
    }

    /// Asks for `index`'s `/api/ps` soon, off the caller's path.
    func refreshSoon(_ index: Int) {
        guard tracks(index) else { return }
        let now = ContinuousClock.now
        let ask = pending.withLock { pending in
            if let last = pending.askedAt[index], now - last < Self.answerRefreshInterval { return false }
            guard pending.waiting.insert(index).inserted else { return false }
            pending.askedAt[index] = now
            return true
        }
        if ask { continuation.yield(index) }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await index in self.requests {
                self.pending.withLock { _ = $0.waiting.remove(index) }
                await self.refresh(index)
            }
        }
    }

    /// Asks `index` what it has loaded and records the answer; an upstream that does not answer keeps its last list.
    func refresh(_ index: Int) async {
        guard tracks(index) else { return }
        let upstream = pool.upstreams[index]
        do {
            let reply = try await withDeadline(timeout) { [logger] in
                try await upstream.native(NativeRequest(method: .get, path: "/api/ps", body: nil, streams: false), logger: logger)
            }
            guard case .complete(let body, _) = reply, let json = try? JSONDecoder().decode(JSONValue.self, from: body),
                let models = LoadedModel.list(fromPS: json)
            else { return }
            pool.setLoaded(index, models)
        } catch {
            logger.debug("could not read the upstream's loaded models", metadata: ["upstream": .string(upstream.endpoint.name)])
        }
    }
}
