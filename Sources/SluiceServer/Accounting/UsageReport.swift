import Foundation
import SluiceCore
import SluiceStore

/// A usage report as `/admin/usage` and `sluice usage --json` give it.
public struct UsageReport: Codable, Sendable {
    /// One row: totals plus the rates a reader wants.
    public struct Row: Codable, Sendable {
        public var group: String?
        /// The key's name, in a report by key: ids alone say little to the reader of a report.
        public var name: String?
        public var requests: Int
        public var promptTokens: Int
        public var completionTokens: Int
        public var costUSD: Double
        public var savedUSD: Double
        public var cacheHits: Int
        public var cacheHitRate: Double
        public var errors: Int
        public var errorRate: Double
        public var p50LatencyMs: Double
        public var p95LatencyMs: Double
        /// Calls served by a hosted `overflow` upstream because no local one could in time, and their cost (part of
        /// `cost_usd`); `saved_usd` is what local serving saved against the hosted price.
        public var overflowRequests: Int
        public var overflowCostUSD: Double

        enum CodingKeys: String, CodingKey {
            case group, name, requests
            case promptTokens = "prompt_tokens"
            case completionTokens = "completion_tokens"
            case costUSD = "cost_usd"
            case savedUSD = "saved_usd"
            case cacheHits = "cache_hits"
            case cacheHitRate = "cache_hit_rate"
            case errors
            case errorRate = "error_rate"
            case p50LatencyMs = "p50_latency_ms"
            case p95LatencyMs = "p95_latency_ms"
            case overflowRequests = "overflow_requests"
            case overflowCostUSD = "overflow_cost_usd"
        }

        init(group: String?, name: String? = nil, totals: UsageTotals) {
            self.group = group
            self.name = name
            requests = totals.requests
            promptTokens = totals.promptTokens
            completionTokens = totals.completionTokens
            costUSD = totals.costUSD
            savedUSD = totals.savedUSD
            cacheHits = totals.cacheHits
            errors = totals.errors
            let n = Double(max(1, totals.requests))
            cacheHitRate = totals.requests == 0 ? 0 : Double(totals.cacheHits) / n
            errorRate = totals.requests == 0 ? 0 : Double(totals.errors) / n
            p50LatencyMs = totals.p50LatencyMs
            p95LatencyMs = totals.p95LatencyMs
            overflowRequests = totals.overflowRequests
            overflowCostUSD = totals.overflowCostUSD
        }
    }

    public var since: Double
    public var until: Double?
    public var by: String?
    public var totals: Row
    public var groups: [Row]

    /// Reads totals (and groups, when `grouping` is set) from the store.
    ///
    /// A report over more than a day reads whole hours from the hourly rollups (see ``GatewayStore/usageReport(_:by:)``),
    /// so a month costs a few hundred rows per group; its latency percentiles cover only the partial hours at its
    /// ends, which it reads from the records.
    public static func make(
        store: any GatewayStore, query: UsageQuery, grouping: UsageGrouping?, now: Double = Date().timeIntervalSince1970
    ) async throws -> UsageReport {
        var bounded = query
        // Up to now: records are never written in the future, and a known end lets long reports use the rollups.
        bounded.until = query.until ?? now + 1
        let breakdown = try await store.usageReport(bounded, by: grouping)
        var names: [String: String] = [:]
        if grouping == .key {
            for key in try await store.listKeys() { names[key.id] = key.name }
        }
        if grouping == .team {
            for team in try await store.listTeams() { names[team.id] = team.name }
        }
        return UsageReport(
            since: query.since, until: query.until, by: grouping?.rawValue, totals: Row(group: nil, totals: breakdown.totals),
            groups: breakdown.groups.map { group in
                Row(group: group.group, name: names[group.group], totals: group.totals)
            })
    }

    /// A plain-text table for the terminal.
    public func table() -> String {
        let header = [by ?? "", "requests", "tokens in", "tokens out", "cost $", "saved $", "cache hit", "errors", "p50 ms", "p95 ms", "overflow", "overflow $"]
        func cells(_ row: Row, label: String) -> [String] {
            [
                label, String(row.requests), String(row.promptTokens), String(row.completionTokens),
                String(format: "%.4f", row.costUSD), String(format: "%.4f", row.savedUSD),
                String(format: "%.1f%%", row.cacheHitRate * 100), String(format: "%.1f%%", row.errorRate * 100),
                String(format: "%.1f", row.p50LatencyMs), String(format: "%.1f", row.p95LatencyMs), String(row.overflowRequests),
                String(format: "%.4f", row.overflowCostUSD),
            ]
        }
        var rows = groups.map { row in
            let group = row.group.map { $0.isEmpty ? "(none)" : $0 } ?? ""
            return cells(row, label: row.name.map { "\($0) (\(group))" } ?? group)
        }
        rows.append(cells(totals, label: "total"))
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, text in
                let pad = String(repeating: " ", count: widths[column] - text.count)
                return column == 0 ? text + pad : pad + text
            }.joined(separator: "  ")
        }
        var out = [line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        out += rows.dropLast().map(line)
        if !groups.isEmpty { out.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        out.append(line(rows.last!))
        return out.joined(separator: "\n")
    }
}
