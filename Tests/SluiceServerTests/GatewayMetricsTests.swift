import Testing

@testable import SluiceServer

/// Label values that come from clients are bounded, so no client can grow the gateway's series without end.
struct GatewayMetricsTests {
    @Test func modelLabelsOfTheTokenCounterAreBounded() {
        let metrics = GatewayMetrics()
        for i in 0..<(GatewayMetrics.maxModelLabels + 50) {
            metrics.tokens(model: "model-\(i)", prompt: 2, completion: 1)
        }
        metrics.tokens(model: "model-0", prompt: 2, completion: 1)
        let lines = String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix("sluice_tokens_total{") && $0.contains(#"kind="prompt""#) }
        #expect(lines.count == GatewayMetrics.maxModelLabels + 1)
        #expect(lines.contains { $0.hasPrefix(#"sluice_tokens_total{model="model-0",kind="prompt"}"#) && $0.hasSuffix(" 4") })
        #expect(lines.contains { $0.hasPrefix(#"sluice_tokens_total{model="other",kind="prompt"}"#) && $0.hasSuffix(" 100") })
    }
}
