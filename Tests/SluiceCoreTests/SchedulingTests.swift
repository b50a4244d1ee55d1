import Testing
@testable import SluiceCore

@Suite struct ModelAwareChoiceTests {
    @Test func prefersTheUpstreamWithTheModelLoadedOverAnIdleOne() {
        var rng = SeededGenerator(state: 1)
        let candidates = [
            UpstreamChooser.Candidate(models: [], inFlight: 0, loaded: ["qwen2.5:0.5b"]),
            UpstreamChooser.Candidate(models: [], inFlight: 3, loaded: ["llama3.2:latest"]),
        ]
        for _ in 0..<20 {
            #expect(UpstreamChooser.choose(model: "llama3.2", candidates: candidates, excluding: [], using: &rng) == 1)
        }
    }

    @Test func aFullWarmUpstreamLosesToACold() {
        var rng = SeededGenerator(state: 2)
        let candidates = [
            UpstreamChooser.Candidate(models: [], inFlight: 0, loaded: []),
            UpstreamChooser.Candidate(models: [], inFlight: 4, loaded: ["llama3.2:latest"]),
        ]
        let decision = UpstreamChooser.decide(
            model: "llama3.2", candidates: candidates, excluding: [], failOpen: true, maxInFlight: 4, using: &rng)
        #expect(decision == .send(0))
    }

    @Test func whereNoneHasItTheOneWithFewestModelsLoadedTakesIt() {
        var rng = SeededGenerator(state: 3)
        let candidates = [
            UpstreamChooser.Candidate(models: [], loaded: ["a", "b"]),
            UpstreamChooser.Candidate(models: [], loaded: ["c"]),
            UpstreamChooser.Candidate(models: [], loaded: ["d", "e", "f"]),
        ]
        for _ in 0..<20 {
            #expect(UpstreamChooser.choose(model: "llama3.2", candidates: candidates, excluding: [], using: &rng) == 1)
        }
    }

    @Test func unknownResidencyLeavesTheWeightedDraw() {
        var rng = SeededGenerator(state: 4)
        let candidates = [UpstreamChooser.Candidate(models: []), UpstreamChooser.Candidate(models: [])]
        var seen = Set<Int>()
        for _ in 0..<50 {
            seen.insert(UpstreamChooser.choose(model: "m", candidates: candidates, excluding: [], using: &rng)!)
        }
        #expect(seen == [0, 1])
    }

    @Test func theConversationsUpstreamWinsWhileItHasRoom() {
        var rng = SeededGenerator(state: 5)
        let candidates = [
            UpstreamChooser.Candidate(models: [], inFlight: 0, loaded: ["m"]),
            UpstreamChooser.Candidate(models: [], inFlight: 2, loaded: ["m"]),
        ]
        #expect(UpstreamChooser.decide(model: "m", candidates: candidates, excluding: [], failOpen: true, maxInFlight: 4, preferring: 1, using: &rng) == .send(1))
        // Saturated: the conversation moves rather than wait.
        #expect(UpstreamChooser.decide(model: "m", candidates: candidates, excluding: [], failOpen: true, maxInFlight: 2, preferring: 1, using: &rng) == .send(0))
        // Its breaker open: likewise.
        var broken = candidates
        broken[1].admitted = false
        #expect(UpstreamChooser.decide(model: "m", candidates: broken, excluding: [], failOpen: true, maxInFlight: 4, preferring: 1, using: &rng) == .send(0))
    }
}

@Suite struct ConversationTests {
    @Test func theSessionHeaderWinsThenTheUserThenTheOpening() {
        let body: JSONValue = ["user": "alice", "messages": [["role": "user", "content": "hi"]]]
        #expect(ConversationKey.of(sessionID: "s1", model: "m", body: body)?.value == "session:s1")
        #expect(ConversationKey.of(sessionID: nil, model: "m", body: body)?.value.hasPrefix("user:") == true)
        let anonymous: JSONValue = ["messages": [["role": "user", "content": "hi"]]]
        #expect(ConversationKey.of(sessionID: nil, model: "m", body: anonymous)?.value.hasPrefix("hash:") == true)
        #expect(ConversationKey.of(sessionID: nil, model: "m", body: ["model": "m"]) == nil)
    }

    @Test func laterTurnsKeepTheKeyOfTheFirst() {
        let turn1: JSONValue = ["messages": [["role": "system", "content": "be brief"], ["role": "user", "content": "hi"]]]
        let turn2: JSONValue = [
            "messages": [
                ["role": "system", "content": "be brief"], ["role": "user", "content": "hi"], ["role": "assistant", "content": "hello"],
                ["role": "user", "content": "and then?"],
            ]
        ]
        let key1 = ConversationKey.of(sessionID: nil, model: "m", body: turn1)
        #expect(key1 != nil)
        #expect(key1 == ConversationKey.of(sessionID: nil, model: "m", body: turn2))
        // Another system prompt or model is another conversation.
        let other: JSONValue = ["messages": [["role": "system", "content": "be long"], ["role": "user", "content": "hi"]]]
        #expect(key1 != ConversationKey.of(sessionID: nil, model: "m", body: other))
        #expect(key1 != ConversationKey.of(sessionID: nil, model: "n", body: turn1))
        // Anthropic's top-level system and block content read alike.
        let anthropic: JSONValue = ["system": "be brief", "messages": [["role": "user", "content": [["type": "text", "text": "hi"]]]]]
        #expect(key1 == ConversationKey.of(sessionID: nil, model: "m", body: anthropic))
    }

    @Test func theTableIsBoundedAndForgets() {
        var table = ConversationAffinity(capacity: 2, ttl: 60)
        table.record(ConversationKey("a"), upstream: "x", now: 0)
        table.record(ConversationKey("b"), upstream: "y", now: 1)
        #expect(table.upstream(for: ConversationKey("a"), now: 2) == "x")
        // "b" is now the least recently used, and goes first.
        table.record(ConversationKey("c"), upstream: "z", now: 3)
        #expect(table.count == 2)
        #expect(table.upstream(for: ConversationKey("b"), now: 3) == nil)
        #expect(table.upstream(for: ConversationKey("a"), now: 59.9) == "x")
        #expect(table.upstream(for: ConversationKey("a"), now: 60) == nil)
        // A new turn starts the time again.
        table.record(ConversationKey("c"), upstream: "z", now: 100)
        #expect(table.upstream(for: ConversationKey("c"), now: 159) == "z")
    }

    @Test func psAnswersAreRead() {
        let ps: JSONValue = ["models": [["name": "llama3.2:latest", "size_vram": 100, "context_length": 8192], ["model": "qwen"]]]
        #expect(LoadedModel.list(fromPS: ps) == [LoadedModel(name: "llama3.2:latest", sizeVRAM: 100, contextLength: 8192), LoadedModel(name: "qwen")])
        #expect(LoadedModel.list(fromPS: ["error": "x"]) == nil)
    }
}

@Suite struct ResidencyUnknownTests {
    @Test func anUpstreamNotYetAskedIsNotAvoided() {
        var rng = SeededGenerator(state: 9)
        // 0 never reported; 1 has the model; 2 is known to lack it.
        let candidates = [
            UpstreamChooser.Candidate(models: []), UpstreamChooser.Candidate(models: [], loaded: ["m"]),
            UpstreamChooser.Candidate(models: [], loaded: []),
        ]
        var seen = Set<Int>()
        for _ in 0..<50 { seen.insert(UpstreamChooser.choose(model: "m", candidates: candidates, excluding: [], using: &rng)!) }
        #expect(seen == [0, 1])
    }
}

@Suite struct OverflowDecisionTests {
    let candidates = [
        UpstreamChooser.Candidate(models: [], inFlight: 1),
        UpstreamChooser.Candidate(models: ["llama3.2"], overflow: true),
    ]

    @Test func overflowUpstreamsAreLeftOutUnlessAsked() {
        var rng = SeededGenerator(state: 10)
        // The local catch-all is not hidden by the hosted one listing the model.
        #expect(UpstreamChooser.servers(of: "llama3.2", in: candidates) == [0, 1])
        #expect(UpstreamChooser.decide(model: "llama3.2", candidates: candidates, excluding: [], failOpen: true, maxInFlight: 1, using: &rng) == .wait)
        #expect(
            UpstreamChooser.decide(
                model: "llama3.2", candidates: candidates, excluding: [], failOpen: true, maxInFlight: 1, overflow: .only, using: &rng) == .send(1))
        // A free local upstream is never passed over for the overflow.
        #expect(UpstreamChooser.decide(model: "llama3.2", candidates: candidates, excluding: [], failOpen: true, maxInFlight: 2, using: &rng) == .send(0))
    }

    @Test func overflowCostsItsPriceAndLocalSavesAgainstIt() {
        var costs = CostCalculator()
        costs.upstreamPrices = ["hosted": ModelPrice(inputPerMillion: 1, outputPerMillion: 2)]
        costs.localComparisonPrice = ModelPrice(inputPerMillion: 1, outputPerMillion: 2)
        let hosted = UsageRecord(
            id: "1", time: 0, requestID: "r", route: "/v1/chat/completions", model: "llama3.2", upstream: "hosted", status: 200,
            promptTokens: 1_000_000, completionTokens: 1_000_000, latencyMs: 1, overflowed: true)
        #expect(costs.outcome(for: hosted, isLocalUpstream: false) == .init(costUSD: 3, savedUSD: 0))
        var local = hosted
        local.upstream = "gpu"
        #expect(costs.outcome(for: local, isLocalUpstream: true) == .init(costUSD: 0, savedUSD: 3))
    }
}

@Suite struct BatchShareTests {
    @Test func aBatchRequestNeedsRoomInTheBatchShare() {
        var rng = SeededGenerator(state: 11)
        var busy = UpstreamChooser.Candidate(models: [], inFlight: 2)
        busy.batchInFlight = 2
        #expect(UpstreamChooser.decide(model: "m", candidates: [busy], excluding: [], failOpen: true, maxInFlight: 4, batchLimit: 2, using: &rng) == .wait)
        #expect(UpstreamChooser.decide(model: "m", candidates: [busy], excluding: [], failOpen: true, maxInFlight: 4, using: &rng) == .send(0))
    }
}
