import Testing

@testable import SluiceServer

/// Clients send dated snapshots of a model's name; an alias for the undated name covers them.
@Suite struct AliasTests {
    @Test func datedSnapshotsLoseTheirDate() {
        #expect(Gateway.undatedName("claude-haiku-4-5-20251001") == "claude-haiku-4-5")
        #expect(Gateway.undatedName("gpt-4o-2024-08-06") == "gpt-4o")
        #expect(Gateway.undatedName("claude-haiku-4-5") == nil)
        #expect(Gateway.undatedName("model-2025100") == nil)
        #expect(Gateway.undatedName("-20251001") == nil)
        #expect(Gateway.undatedName("qwen3:30b-a3b-2507") == nil)
    }
}

/// Upstream names label records, metrics and breakers: two upstreams may not share one.
@Suite struct UpstreamNameTests {
    @Test func twoUpstreamsWithOneNameAreRefused() throws {
        let list: [[String: Any]] = [
            ["name": "a", "url": "http://127.0.0.1:1", "kind": "ollama"], ["name": "a", "url": "http://127.0.0.1:2", "kind": "ollama"],
        ]
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.parseUpstreams(list, path: "sluice.yaml") }
        let distinct = try ConfigurationLoader.parseUpstreams([list[0], ["name": "b", "url": "http://127.0.0.1:2"]], path: "sluice.yaml")
        #expect(distinct.map(\.name) == ["a", "b"])
    }
}
