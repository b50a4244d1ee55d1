import CoreMetrics

/// The usage writer's and retention's metrics, made from the application's own metrics factory.
struct AccountingMetrics: Sendable {
    let recordsWritten: Counter
    /// Records lost: refused because the queue was full, or still unwritten when shutdown gave up.
    let recordsDropped: Counter
    let writeFailures: Counter
    /// Records accepted but not yet written (queued plus the batch being written or retried).
    let queueDepth: Meter
    let recordsDeleted: Counter
    /// Stored Responses API answers deleted by retention after they expired.
    let responsesDeleted: Counter
    /// Records written without their bodies because the writer's body budget was full (`store-bodies`).
    let bodiesDropped: Counter

    init(_ metrics: GatewayMetrics) {
        // The Prometheus registry hands back the existing collector for a name it already has, so the writer and
        // the retention service can each build this without double-registering.
        let factory = metrics.factory
        recordsWritten = Counter(label: "sluice_usage_records_written_total", dimensions: [], factory: factory)
        recordsDropped = Counter(label: "sluice_usage_records_dropped_total", dimensions: [], factory: factory)
        writeFailures = Counter(label: "sluice_usage_write_failures_total", dimensions: [], factory: factory)
        queueDepth = Meter(label: "sluice_usage_queue_depth", dimensions: [], factory: factory)
        recordsDeleted = Counter(label: "sluice_usage_records_deleted_total", dimensions: [], factory: factory)
        responsesDeleted = Counter(label: "sluice_stored_responses_deleted_total", dimensions: [], factory: factory)
        bodiesDropped = Counter(label: "sluice_usage_bodies_dropped_total", dimensions: [], factory: factory)
    }
}
