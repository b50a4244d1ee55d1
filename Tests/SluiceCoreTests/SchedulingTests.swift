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
        costs.localComparisonPrices = [(["llama3.2"], ModelPrice(inputPerMillion: 1, outputPerMillion: 2))]
        let hosted = UsageRecord(
            id: "1", time: 0, requestID: "r", route: "/v1/chat/completions", model: "llama3.2", upstream: "hosted", status: 200,
            promptTokens: 1_000_000, completionTokens: 1_000_000, latencyMs: 1, overflowed: true)
        #expect(costs.outcome(for: hosted, isLocalUpstream: false) == .init(costUSD: 3, savedUSD: 0))
        var local = hosted
        local.upstream = "gpu"
        #expect(costs.outcome(for: local, isLocalUpstream: true) == .init(costUSD: 0, savedUSD: 3))
        // A model the overflow does not serve saves against the reference model, as without overflow.
        var other = local
        other.model = "qwen2.5:0.5b"
        #expect(costs.outcome(for: other, isLocalUpstream: true).savedUSD == CostCalculator().outcome(for: other, isLocalUpstream: true).savedUSD)
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

@Suite struct VirtualModelTests {
    var coder: VirtualModel {
        var model = VirtualModel(name: "coder", model: "qwen3-coder:30b")
        model.numCtx = 32768
        model.keepAlive = "30m"
        model.think = false
        model.temperature = 0.2
        model.maxTokens = 512
        model.systemPrefix = "Be terse."
        return model
    }

    @Test func defaultsFillWhatTheClientLeftOut() {
        var body: [String: JSONValue] = ["model": "coder", "temperature": 0.9, "messages": [["role": "user", "content": "hi"]]]
        coder.apply(to: &body, shape: .openAIChat, ollama: true)
        #expect(body["model"] == "qwen3-coder:30b")
        #expect(body["temperature"] == 0.9)
        #expect(body["max_tokens"] == 512)
        #expect(body["options"]?["num_ctx"] == 32768)
        #expect(body["keep_alive"] == "30m" && body["think"] == false)
        #expect(body["messages"]?.arrayValue?.first == ["role": "system", "content": "Be terse."])
    }

    /// SDKs write unset fields as null: a null is the client leaving the field out, and the default fills it.
    @Test func aNullIsLeftOutAndTheDefaultFillsIt() {
        var body: [String: JSONValue] = ["model": "coder", "max_tokens": .null, "temperature": .null, "messages": []]
        coder.apply(to: &body, shape: .openAIChat, ollama: true)
        #expect(body["max_tokens"] == 512 && body["temperature"] == 0.2)
    }

    @Test func pinnedDefaultsReplaceTheClients() {
        var pinned = coder
        pinned.overridable = false
        var body: [String: JSONValue] = ["model": "coder", "options": ["temperature": 0.9, "num_ctx": 2048], "prompt": "hi", "system": "Be kind."]
        pinned.apply(to: &body, shape: .ollamaGenerate, ollama: true)
        #expect(body["options"]?["temperature"] == 0.2 && body["options"]?["num_ctx"] == 32768 && body["options"]?["num_predict"] == 512)
        #expect(body["system"] == "Be terse.\n\nBe kind.")
    }

    @Test func ollamaFieldsStayAwayFromOtherUpstreams() {
        var body: [String: JSONValue] = ["model": "coder", "messages": []]
        coder.apply(to: &body, shape: .openAIChat, ollama: false)
        #expect(body["options"] == nil && body["keep_alive"] == nil && body["think"] == nil)
        #expect(body["temperature"] == 0.2)
    }

    /// `think` is the default of the client's reasoning setting, whatever its dialect calls it.
    @Test func theClientsReasoningBeatsTheThinkDefault() {
        for (shape, asked) in [
            (RequestShape.openAIChat, ["reasoning_effort": JSONValue.string("high")]), (.anthropicMessages, ["thinking": ["type": "disabled"]]),
            (.openAIResponses, ["reasoning": ["effort": "low"]]), (.ollamaChat, ["think": true]),
        ] {
            var body: [String: JSONValue] = ["model": "coder", "messages": []].merging(asked) { a, _ in a }
            #expect(coder.ollamaSettings(for: body, shape: shape)["think"] == nil, "\(shape)")
            coder.apply(to: &body, shape: shape, ollama: true)
            #expect(body["think"] == asked["think"], "\(shape)")
            var pinned = coder
            pinned.overridable = false
            #expect(pinned.ollamaSettings(for: body, shape: shape)["think"] == false, "\(shape)")
        }
        #expect(coder.ollamaSettings(for: ["model": "coder"], shape: .anthropicMessages) == ["options": ["num_ctx": 32768], "keep_alive": "30m", "think": false])
    }
}

@Suite struct ContextGuardTests {
    @Test func theEstimateCountsTextNotImages() {
        let body: [String: JSONValue] = [
            "system": .string(String(repeating: "a", count: 400)),
            "messages": [["role": "user", "content": [["type": "text", "text": .string(String(repeating: "b", count: 400))], ["type": "image_url", "image_url": ["url": .string(String(repeating: "c", count: 100_000))]]]]],
        ]
        // 800 bytes of text and a few of roles and types: about 200 tokens and 4 for the message; the image's
        // 100,000 bytes of base64 are not counted.
        #expect((204...215).contains(ContextGuard.estimatedTokens(body)))
    }

    @Test func eachPolicyDecides() {
        func decide(_ policy: ContextPolicy, estimate: Int = 5000, canRaise: Bool = true) -> ContextGuard.Verdict {
            ContextGuard.decide(estimate: estimate, limit: 4096, model: "m", policy: policy, answerReserve: 1000, canRaise: canRaise, maximum: 8192)
        }
        #expect(decide(.warn, estimate: 4096) == .fits)
        guard case .warn(let message) = decide(.warn) else { Issue.record("expected a warning"); return }
        #expect(message.contains("5000") && message.contains("4096"))
        guard case .reject(let refusal) = decide(.reject) else { Issue.record("expected a refusal"); return }
        #expect(ContextGuard.error(refusal, shape: .openAIChat).code == "context_length_exceeded")
        // The error names where each API keeps its prompt.
        #expect(ContextGuard.error(refusal, shape: .openAIResponses).param == "input")
        #expect(ContextGuard.error(refusal, shape: .openAICompletion).param == "prompt")
        #expect(ContextGuard.error(refusal, shape: .anthropicMessages).param == "messages")
        #expect(decide(.raise) == .raise(6144))
        guard case .reject = decide(.raise, estimate: 7500) else { Issue.record("past the maximum, raise refuses"); return }
        guard case .warn = decide(.raise, canRaise: false) else { Issue.record("where num_ctx cannot be sent, raise warns"); return }
    }
}
