import HTTPTypes
import Hummingbird
import NIOCore
import Logging
import SluiceCore
import SluiceUpstream

/// `/healthz`, `/readyz` and `/metrics`.
struct OperationsRoutes {
    let upstreams: [any UpstreamProvider]
    /// Whose breaker states `/readyz` reports.
    let pool: UpstreamPool
    let metrics: GatewayMetrics
    /// A probe slower than this counts as failed, so `/readyz` answers promptly.
    let probeTimeout: Duration
    /// The prober's last results, which `/readyz` reports instead of probing on every call.
    let probeResults: ProbeResults
    /// Not ready until the API keys have been loaded from the store.
    let directory: KeyDirectory
    /// Knows the warm models: an upstream is not ready until it has them loaded.
    var scheduler: Scheduler? = nil


    /// One upstream's probe result.
    struct UpstreamStatus: Codable, Sendable {
        var name: String
        var kind: String
        var ok: Bool
        var error: String?
        /// The circuit breaker: `closed`, `half_open` or `open`.
        var state: String
        /// The models an Ollama upstream has in memory, from its `/api/ps`; absent when unknown.
        var loadedModels: [String]?

        enum CodingKeys: String, CodingKey {
            case name, kind, ok, error, state
            case loadedModels = "loaded_models"
        }
    }

    struct Readiness: Codable, Sendable {
        var status: String
        var keysLoaded: Bool
        var upstreams: [UpstreamStatus]

        enum CodingKeys: String, CodingKey {
            case status
            case keysLoaded = "keys_loaded"
            case upstreams
        }
    }

    func addRoutes(to router: Router<SluiceRequestContext>) {
        router.get("healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }
        router.get("readyz") { _, context in
            let results = await statuses(logger: context.logger)
            let keysLoaded = directory.isReady
            // A hosted overflow answers only keys allowed to overflow, and only after a local upstream kept them
            // waiting: the gateway is ready when a local upstream is (or, with only hosted ones, when one is).
            let local = upstreams.indices.filter { !upstreams[$0].endpoint.overflow }
            let ready = keysLoaded && (local.isEmpty ? results.contains { $0.ok } : local.contains { results[$0].ok })
            return try JSONResponse(Readiness(status: ready ? "ready" : "unavailable", keysLoaded: keysLoaded, upstreams: results))
                .response(status: ready ? .ok : .serviceUnavailable)
        }
        router.get("metrics") { _, _ in
            pool.refreshGauges()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
    }

    /// Each upstream's last probe result with its breaker state, in configuration order.
    func statuses(logger: Logger) async -> [UpstreamStatus] {
        let results = await probeResults.current(pool: pool, timeout: probeTimeout, logger: logger)
        return upstreams.enumerated().map { index, upstream in
            let result = results[index]
            var status = UpstreamStatus(
                name: upstream.endpoint.name, kind: upstream.endpoint.kind.rawValue, ok: result?.ok ?? false,
                error: result?.error, state: pool.state(of: index).name, loadedModels: pool.loaded(of: index)?.map(\.name))
            if status.ok, let warming = scheduler?.unwarmed(index), !warming.isEmpty {
                status.ok = false
                status.error = "warming: " + warming.map(\.model).joined(separator: ", ")
            }
            return status
        }
    }
}

/// Runs `body`, cancelling it and throwing `CancellationError` once `timeout` has passed.
func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw CancellationError() }
        return value
    }
}
