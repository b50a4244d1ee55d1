import CoreMetrics
import Prometheus
import Synchronization

/// The gateway's Prometheus metrics, all named `sluice_…`.
///
/// Owned per application rather than bootstrapped globally, so tests can build many apps in one process.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    let streamsInFlight: Meter
    let requestsInFlight: Meter
    /// Client connections open now (`sluice_client_connections_open`).
    let clientConnectionsOpen: CoreMetrics.Gauge
    /// `sluice_client_connections_closed_total` by reason, made at start so every reason shows from 0.
    private let clientConnectionClosures: [ConnectionCloseReason: CoreMetrics.Counter]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60),
        ]
        self.factory = factory
        self.streamsInFlight = Meter(label: "sluice_streams_in_flight", dimensions: [], factory: factory)
        self.requestsInFlight = Meter(label: "sluice_http_requests_in_flight", dimensions: [], factory: factory)
        self.clientConnectionsOpen = Gauge(label: "sluice_client_connections_open", dimensions: [], factory: factory)
        var closures: [ConnectionCloseReason: CoreMetrics.Counter] = [:]
        for reason in ConnectionCloseReason.allCases {
            closures[reason] = CoreMetrics.Counter(
                label: "sluice_client_connections_closed_total", dimensions: [("reason", reason.rawValue)], factory: factory)
        }
        self.clientConnectionClosures = closures
    }

    private struct RequestSeries: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    /// The counter and timer of each route, method and status seen.
    private let requestSeries = MetricHandles<RequestSeries, (CoreMetrics.Counter, CoreMetrics.Timer)>()

    func requestFinished(route: String, method: String, status: Int, nanoseconds: Int64) {
        let handles = requestSeries.get(RequestSeries(route: route, method: method, status: status)) { series in
            (
                CoreMetrics.Counter(
                    label: "sluice_http_requests_total",
                    dimensions: [("route", series.route), ("method", series.method), ("status", String(series.status))], factory: factory),
                CoreMetrics.Timer(label: "sluice_http_request_duration_seconds", dimensions: [("route", series.route)], factory: factory)
            )
        }
        handles.0.increment()
        handles.1.recordNanoseconds(nanoseconds)
    }

    func upstreamError(upstream: String, code: String) {
        Counter(label: "sluice_upstream_errors_total", dimensions: [("upstream", upstream), ("code", code)], factory: factory).increment()
    }

    /// The latency timer of each upstream.
    private let upstreamTimers = MetricHandles<String, CoreMetrics.Timer>()

    func upstreamLatency(upstream: String, nanoseconds: Int64) {
        upstreamTimers.get(upstream) { upstream in
            CoreMetrics.Timer(label: "sluice_upstream_duration_seconds", dimensions: [("upstream", upstream)], factory: factory)
        }.recordNanoseconds(nanoseconds)
    }

    /// Breaker state of one upstream: 0 closed, 1 half-open, 2 open.
    func upstreamStateGauge(upstream: String) -> CoreMetrics.Gauge {
        Gauge(label: "sluice_upstream_state", dimensions: [("upstream", upstream)], factory: factory)
    }

    /// Requests of one upstream in flight, relayed streams included.
    func upstreamInFlightGauge(upstream: String) -> CoreMetrics.Gauge {
        Gauge(label: "sluice_upstream_in_flight", dimensions: [("upstream", upstream)], factory: factory)
    }

    /// 1 while the upstream has the model in memory, 0 once it reported it unloaded.
    func upstreamModelLoadedGauge(upstream: String, model: String) -> CoreMetrics.Gauge {
        Gauge(label: "sluice_upstream_model_loaded", dimensions: [("upstream", upstream), ("model", model)], factory: factory)
    }

    /// Requests waiting for an upstream slot, all upstreams together.
    func upstreamQueueDepthGauge() -> CoreMetrics.Gauge {
        Gauge(label: "sluice_upstream_queue_depth", dimensions: [], factory: factory)
    }

    /// The gateway closed a client connection on its own (a client timeout, or `max-connections` reached).
    func clientConnectionClosed(_ reason: ConnectionCloseReason) {
        clientConnectionClosures[reason]?.increment()
    }

    /// A request answered 503 because every upstream it could use was full: `queue_full` or `queue_timeout`.
    func upstreamShed(reason: String) {
        Counter(label: "sluice_upstream_shed_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    /// A call a hosted overflow upstream took because no local one could in time.
    func overflowed(upstream: String) {
        Counter(label: "sluice_overflow_total", dimensions: [("upstream", upstream)], factory: factory).increment()
    }

    /// One background probe of an upstream: `ok` or `failed`.
    func upstreamProbe(upstream: String, ok: Bool) {
        Counter(label: "sluice_upstream_probes_total", dimensions: [("upstream", upstream), ("result", ok ? "ok" : "failed")], factory: factory)
            .increment()
    }

    /// Distinct model labels `sluice_tokens_total` takes before the rest count as `other`.
    static let maxModelLabels = 256

    /// The prompt and completion counters of each model seen. The model name comes from the client, so past
    /// ``maxModelLabels`` the rest share `other`.
    private let tokenSeries = MetricHandles<String, (prompt: CoreMetrics.Counter, completion: CoreMetrics.Counter)>(
        limit: maxModelLabels, overflow: "other")

    func tokens(model: String, prompt: Int, completion: Int) {
        let counters = tokenSeries.get(model) { label in
            (
                prompt: CoreMetrics.Counter(label: "sluice_tokens_total", dimensions: [("model", label), ("kind", "prompt")], factory: factory),
                completion: CoreMetrics.Counter(
                    label: "sluice_tokens_total", dimensions: [("model", label), ("kind", "completion")], factory: factory)
            )
        }
        counters.prompt.increment(by: prompt)
        counters.completion.increment(by: completion)
    }

    func authFailure(reason: String) {
        Counter(label: "sluice_auth_failures_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    /// Client connections the gateway closed, by reason (`write_timeout`, …).
    func clientConnectionClosedCounter(reason: String) -> CoreMetrics.Counter {
        Counter(label: "sluice_client_connections_closed_total", dimensions: [("reason", reason)], factory: factory)
    }

    func rateLimited(limit: String) {
        let name =
            switch limit {
            case let l where l.contains("global"): "global"
            case let l where l.contains("address"): "ip"
            case let l where l.contains("team") && l.contains("tokens"): "team_tokens"
            case let l where l.contains("team"): "team_requests"
            case let l where l.contains("tokens"): "key_tokens"
            default: "key_requests"
            }
        Counter(label: "sluice_rate_limited_total", dimensions: [("limit", name)], factory: factory).increment()
    }

    /// A budgeted call refused because its worst-case cost did not fit what its budget had left.
    func budgetReservationRefused() {
        Counter(label: "sluice_budget_reservations_refused_total", dimensions: [], factory: factory).increment()
    }

    /// A soft budget alert sent (`sluice_budget_alerts_total{owner}`, owner `key` or `team`).
    func budgetAlert(owner: String) {
        Counter(label: "sluice_budget_alerts_total", dimensions: [("owner", owner)], factory: factory).increment()
    }

    /// One exchange of shared rate-limit leases with the store (`sluice_rate_limit_exchanges_total{result}`).
    func rateLimitExchange(ok: Bool) {
        Counter(label: "sluice_rate_limit_exchanges_total", dimensions: [("result", ok ? "ok" : "failed")], factory: factory).increment()
    }

    /// Shared rate limits switched to (true) or back from (false) the per-instance fallback of a store outage:
    /// `sluice_rate_limit_fallback` is 1 while it lasts, `sluice_rate_limit_fallbacks_total` counts the switches.
    func rateLimitFallback(_ on: Bool) {
        Gauge(label: "sluice_rate_limit_fallback", dimensions: [], factory: factory).record(on ? 1 : 0)
        if on { Counter(label: "sluice_rate_limit_fallbacks_total", dimensions: [], factory: factory).increment() }
    }

    /// The exposition text for `/metrics`.
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8 * 1024)
        registry.emit(into: &buffer)
        return buffer
    }
}

/// Metric handles made on first use of their labels and kept: asking the registry on every request would validate the
/// name, build label arrays and take the registry's lock each time.
///
/// Bounded when its labels come from clients: past `limit` entries a new key gets the `overflow` key's handles, and
/// is not remembered itself.
final class MetricHandles<Key: Hashable & Sendable, Handles: Sendable>: Sendable {
    private let table = Mutex<[Key: Handles]>([:])
    private let limit: Int
    private let overflow: Key?

    init(limit: Int = .max, overflow: Key? = nil) {
        self.limit = limit
        self.overflow = overflow
    }

    /// The handles of `key`, made by `make` (with the key they are labelled by) the first time.
    func get(_ key: Key, make: (Key) -> Handles) -> Handles {
        table.withLock { table in
            if let handles = table[key] { return handles }
            let label = table.count < limit ? key : (overflow ?? key)
            if let handles = table[label] { return handles }
            let handles = make(label)
            table[label] = handles
            return handles
        }
    }
}
