import Logging
import NIOCore
import ServiceLifecycle
import SluiceCore
import SluiceUpstream

/// Loads the models marked `warm: true` on every Ollama upstream that serves them, and loads them again whenever
/// `/api/ps` no longer lists them, as a service. Until a warm model is loaded, its upstream is not ready.
struct ModelWarmer: Service {
    let scheduler: Scheduler
    let residency: ModelResidency
    /// How often the loaded models are checked against the warm ones.
    let interval: Duration
    let logger: Logger

    func run() async throws {
        guard !scheduler.warmModels.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await cancelWhenGracefulShutdown { await warmOnce() }
            try? await cancelWhenGracefulShutdown { [interval] in try await Task.sleep(for: interval) }
        }
    }

    /// Asks each upstream to load the warm models it lacks, all at once, then reads what it has loaded.
    func warmOnce() async {
        await withTaskGroup(of: Void.self) { group in
            for index in scheduler.pool.upstreams.indices {
                let missing = scheduler.unwarmed(index)
                guard !missing.isEmpty else { continue }
                group.addTask {
                    for model in missing { await load(model, on: index) }
                    await residency.refresh(index)
                }
            }
        }
    }

    /// A generate request without a prompt: Ollama loads the model and answers at once, keeping it `keep_alive`
    /// (for ever, unless the virtual model says otherwise).
    func load(_ model: VirtualModel, on index: Int) async {
        let upstream = scheduler.pool.upstreams[index]
        let body: JSONValue = ["model": .string(model.model), "prompt": "", "stream": false, "keep_alive": model.keepAlive ?? .int(-1)]
        do {
            let bytes = try WireJSON.encoder().encodeAsByteBuffer(body, allocator: ByteBufferAllocator())
            _ = try await upstream.native(NativeRequest(method: .post, path: "/api/generate", body: bytes, streams: false), logger: logger)
            logger.info("warm model loaded", metadata: ["upstream": .string(upstream.endpoint.name), "model": .string(model.model)])
        } catch {
            logger.warning(
                "could not load a warm model; will try again", metadata: ["upstream": .string(upstream.endpoint.name), "model": .string(model.model)])
        }
    }
}
