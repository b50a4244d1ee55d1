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
