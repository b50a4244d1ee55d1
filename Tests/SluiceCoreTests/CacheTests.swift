import Foundation
import NIOCore
import Testing

@testable import SluiceCore

@Suite("Cache keys")
struct CacheKeyTests {
    let base = """
        {"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10}
        """

    func key(_ body: String, family: String = "chat", upstream: String = "ollama", scope: String? = nil) throws -> CacheKey {
        try CacheKey.make(family: family, upstream: upstream, body: ByteBuffer(string: body), scope: scope)
    }

    @Test func keyOrderAndWhitespaceDoNotMatter() throws {
        let reordered = """
            {
              "max_tokens": 10, "temperature": 0.2,
              "messages": [ { "content": "hi", "role": "user" } ],
              "model": "llama3.2"
            }
            """
        #expect(try key(base) == key(reordered))
    }

    @Test func deliveryFieldsDoNotMatter() throws {
        let streamed = """
            {"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10,
             "stream":true,"stream_options":{"include_usage":true},"user":"alice"}
            """
        #expect(try key(base) == key(streamed))
    }

    @Test func integralDoublesEqualIntegers() throws {
        #expect(try key(#"{"model":"m","max_tokens":10}"#) == key(#"{"model":"m","max_tokens":10.0}"#))
    }

    @Test(arguments: [
        #"{"model":"other","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi!"}],"temperature":0.2,"max_tokens":10}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.3,"max_tokens":10}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":11}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10,"seed":1}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10,"top_p":0.5}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10,"stop":["x"]}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10,"response_format":{"type":"json_object"}}"#,
        #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":10,"tools":[{"type":"function","function":{"name":"f"}}]}"#,
        #"{"model":"llama3.2","messages":[{"role":"system","content":"hi"}],"temperature":0.2,"max_tokens":10}"#,
    ])
    func everyMeaningfulParameterChangesTheKey(_ changed: String) throws {
        #expect(try key(base) != key(changed))
    }

    @Test func routeUpstreamAndScopeSeparateEntries() throws {
        let plain = try key(base)
        #expect(try key(base, family: "native-chat") != plain)
        #expect(try key(base, upstream: "openai") != plain)
        #expect(try key(base, scope: "key_a") != plain)
        #expect(try key(base, scope: "key_a") != key(base, scope: "key_b"))
        #expect(try key(base, scope: "key_a") == key(base, scope: "key_a"))
    }

    @Test func descriptionIsSixtyFourHexDigitsOrFewer() throws {
        let text = try key(base).description
        #expect(!text.isEmpty && text.count <= 64)
        #expect(text.allSatisfy { $0.isHexDigit })
    }

    @Test func canonicalJSONSortsKeysAndEscapes() throws {
        #expect(try canonical(#"{"b":1,"a":{"d":"x\"\n","c":[true,null,1.5]}}"#) == #"{"a":{"c":[true,null,1.5],"d":"x\"\n"},"b":1}"#)
    }

    func canonical(_ text: String, dropping: Set<String> = []) throws -> String {
        let bytes = try Array(text.utf8).withUnsafeBytes { try CanonicalJSON.bytes(of: $0, dropping: dropping) }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test func canonicalJSONNormalisesWhitespaceAndZeroFractions() throws {
        #expect(try canonical(" { \"z\" : [ 1 , 2.0 , 2.50 , -0.000 , 1e3 , 1.0e2 ] ,\n\t\"a\" : { } , \"m\":[ ] } ") == #"{"a":{},"m":[],"z":[1,2,2.50,-0,1e3,1.0e2]}"#)
    }

    @Test func canonicalJSONDropsOnlyTopLevelMembers() throws {
        #expect(try canonical(#"{"stream":true,"a":{"stream":false}}"#, dropping: ["stream"]) == #"{"a":{"stream":false}}"#)
    }

    func member(_ name: String, _ text: String) -> String? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw in
            CanonicalJSON.topLevelMember(name, in: raw).map { String(decoding: bytes[$0], as: UTF8.self) }
        }
    }

    @Test func topLevelMemberFindsOnlyTheTopLevelOne() {
        let answer = #"""
            { "choices" : [ {"message": {"content": "\"usage\": 1", "usage": {"x": 1}}} ], "id":"a",
              "usage" : {"prompt_tokens":2,"completion_tokens":3,"total_tokens":5} , "z": [1, 2.5e3, true, null] }
            """#
        #expect(member("usage", answer) == #"{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}"#)
        #expect(member("id", answer) == #""a""#)
        #expect(member("z", answer) == "[1, 2.5e3, true, null]")
        #expect(member("missing", answer) == nil)
        #expect(member("usage", "[1, 2]") == nil)
        #expect(member("usage", #"{"usage": "#) == nil)
    }

    @Test func usageIsReadFromAnAnswerWithoutDecodingTheRest() {
        let answer = ByteBuffer(string: #"{"choices":[{"message":{"content":"long answer"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#)
        #expect(Usage(inAnswer: answer) == Usage(promptTokens: 2, completionTokens: 3))
        // OpenAI's details: cached prompt tokens and reasoning tokens, part of the totals; others are ignored.
        let detailed = ByteBuffer(
            string: #"{"usage":{"prompt_tokens":2000,"completion_tokens":300,"total_tokens":2300,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":256,"accepted_prediction_tokens":0}}}"#)
        #expect(Usage(inAnswer: detailed) == Usage(promptTokens: 2000, completionTokens: 300, cachedTokens: 1024, reasoningTokens: 256))
        #expect(Usage(inAnswer: ByteBuffer(string: #"{"choices":[],"usage":null}"#)) == nil)
        #expect(Usage(inAnswer: ByteBuffer(string: #"{"choices":[]}"#)) == nil)
    }

    @Test func usageInAnAnswerNeedsIntegerCountsAndMayLackCompletionTokens() {
        func usage(_ member: String) -> Usage? { Usage(inAnswer: ByteBuffer(string: #"{"object":"list","usage":"# + member + "}")) }
        // Embeddings answers count only the prompt.
        #expect(usage(#"{"prompt_tokens": 8, "total_tokens": 8}"#) == Usage(promptTokens: 8, completionTokens: 0))
        #expect(usage(#"{ "completion_tokens" : 40 , "prompt_tokens" : 1234567 }"#) == Usage(promptTokens: 1_234_567, completionTokens: 40))
        #expect(usage(#"{"prompt_tokens":2,"completion_tokens":3,"total_tokens":99}"#)?.totalTokens == 5)
        #expect(usage(#"{"prompt_tokens":2,"completion_tokens_details":{"prompt_tokens":7},"completion_tokens":3}"#) == Usage(promptTokens: 2, completionTokens: 3))
        for broken in [
            #"{"completion_tokens":3}"#, #"{"prompt_tokens":-2,"completion_tokens":3}"#, #"{"prompt_tokens":2.5}"#,
            #"{"prompt_tokens":"2"}"#, #"{"prompt_tokens":2,"completion_tokens":null}"#, #"{"prompt_tokens":1e3}"#,
            #"{"prompt_tokens":12345678901234567890}"#, #"[2, 3]"#, #"{"prompt_tokens":2"#,
        ] {
            #expect(usage(broken) == nil, "\(broken)")
        }
    }

    @Test func canonicalJSONRefusesBrokenDocuments() {
        for broken in [#"{"a":1"#, #"{"a" 1}"#, #"[1,]"#, #"{"a":tru}"#, #""abc"#, #"{} {}"#, "", #"{"a":x}"#, String(repeating: "[", count: 200) + String(repeating: "]", count: 200)] {
            #expect(throws: CanonicalJSON.InvalidJSON.self, "\(broken)") { try canonical(broken) }
        }
    }
}

@Suite("LRU cache")
struct LRUCacheTests {
    @Test func totalCostNeverExceedsTheBound() {
        var lru = LRUCache<Int, String>(maxCost: 1000)
        var evicted = 0
        // Fill with ten times the bound.
        for i in 0..<100 {
            evicted += lru.insert("v\(i)", for: i, cost: 100, expires: 1e12)
            #expect(lru.totalCost <= 1000)
        }
        #expect(lru.count == 10)
        #expect(evicted == 90)
        // The newest survive.
        #expect(lru.value(for: 99, now: 0) == "v99")
        #expect(lru.value(for: 89, now: 0) == nil)
    }

    @Test func leastRecentlyUsedIsEvictedFirst() {
        var lru = LRUCache<String, Int>(maxCost: 300)
        lru.insert(1, for: "a", cost: 100, expires: 1e12)
        lru.insert(2, for: "b", cost: 100, expires: 1e12)
        lru.insert(3, for: "c", cost: 100, expires: 1e12)
        // Touch a: b becomes the oldest.
        #expect(lru.value(for: "a", now: 0) == 1)
        lru.insert(4, for: "d", cost: 100, expires: 1e12)
        #expect(lru.value(for: "b", now: 0) == nil)
        #expect(lru.value(for: "a", now: 0) == 1)
        #expect(lru.value(for: "c", now: 0) == 3)
        #expect(lru.value(for: "d", now: 0) == 4)
    }

    @Test func oversizedValueIsNotStored() {
        var lru = LRUCache<String, Int>(maxCost: 100)
        lru.insert(1, for: "small", cost: 50, expires: 1e12)
        lru.insert(2, for: "huge", cost: 101, expires: 1e12)
        #expect(lru.value(for: "huge", now: 0) == nil)
        #expect(lru.value(for: "small", now: 0) == 1)
        #expect(lru.totalCost == 50)
    }

    @Test func replacingAKeyReplacesItsCost() {
        var lru = LRUCache<String, Int>(maxCost: 100)
        lru.insert(1, for: "a", cost: 60, expires: 1e12)
        lru.insert(2, for: "a", cost: 30, expires: 1e12)
        #expect(lru.totalCost == 30)
        #expect(lru.count == 1)
        #expect(lru.value(for: "a", now: 0) == 2)
    }

    @Test func entriesExpireAtTheirTime() {
        var lru = LRUCache<String, Int>(maxCost: 1000)
        lru.insert(1, for: "short", cost: 10, expires: 100)
        lru.insert(2, for: "long", cost: 10, expires: 200)
        #expect(lru.value(for: "short", now: 99.9) == 1)
        #expect(lru.value(for: "short", now: 100) == nil)
        #expect(lru.totalCost == 10)
        #expect(lru.removeExpired(now: 250) == 1)
        #expect(lru.count == 0)
        #expect(lru.totalCost == 0)
    }

    @Test func slotsAreReusedAfterRemoval() {
        var lru = LRUCache<Int, Int>(maxCost: 10)
        for round in 0..<1000 {
            lru.insert(round, for: round, cost: 5, expires: 1e12)
        }
        #expect(lru.count == 2)
        let removed = lru.removeValue(for: 999)
        let removedAgain = lru.removeValue(for: 999)
        #expect(removed)
        #expect(!removedAgain)
        #expect(lru.totalCost == 5)
    }
}

@Suite("Cached answers")
struct CachedAnswerTests {
    let ollamaStream = """
        {"model":"m","created_at":"t","message":{"role":"assistant","content":"Hel"},"done":false}
        {"model":"m","created_at":"t","message":{"role":"assistant","content":"lo"},"done":false}
        {"model":"m","created_at":"t","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":2}

        """

    func collect(_ format: AnswerFormat, streaming: Bool, _ text: String, pieceSize: Int = 7) -> CachedGeneration? {
        var collector = AnswerCollector(format: format, streaming: streaming)
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let end = min(i + pieceSize, bytes.count)
            collector.observe(ByteBuffer(bytes: bytes[i..<end]))
            i = end
        }
        return collector.answer()
    }

    @Test func collectsAnOllamaStreamAcrossSplitLines() throws {
        let g = try #require(collect(.ollamaChat, streaming: true, ollamaStream))
        #expect(g.pieces.joined() == "Hello")
        #expect(g.finishReason == "stop")
        #expect(g.usage?.promptTokens == 3)
        #expect(g.usage?.completionTokens == 2)
    }

    @Test func truncatedStreamsAreNotCached() {
        let truncated = ollamaStream.split(separator: "\n").prefix(2).joined(separator: "\n") + "\n"
        #expect(collect(.ollamaChat, streaming: true, truncated) == nil)
        let sse = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
        #expect(collect(.openAIChat, streaming: true, sse) == nil)
    }

    @Test func streamsEndingInAnErrorEventAreNotCached() {
        let sse = """
            data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}

            event: error
            data: {"error":{"message":"upstream died","type":"upstream_error"}}

            data: [DONE]


            """
        #expect(collect(.openAIChat, streaming: true, sse) == nil)
    }

    @Test func streamedReplayRoundTripsThroughTheCollector() throws {
        let g = CachedGeneration(pieces: ["Hel", "lo", " world"], finishReason: "stop", usage: Usage(promptTokens: 4, completionTokens: 3))
        for format in [AnswerFormat.openAIChat, .openAICompletion, .ollamaChat, .ollamaGenerate] {
            let frames = CacheReplay.frames(g, format: format, model: "m", identity: identity, createdAt: "2026-01-01T00:00:00Z", includeUsage: true)
            var collector = AnswerCollector(format: format, streaming: true)
            for frame in frames { collector.observe(frame) }
            let answer = collector.answer()
            let replayed = try #require(answer, "format \(format)")
            #expect(replayed.pieces.joined() == "Hello world")
            #expect(replayed.usage?.promptTokens == 4)
            #expect(replayed.usage?.completionTokens == 3)
        }
    }

    @Test func openAIReplayKeepsPiecesAsChunks() throws {
        let g = CachedGeneration(pieces: ["a", "b", "c"], finishReason: "stop", usage: nil)
        let frames = CacheReplay.frames(g, format: .openAIChat, model: "m", identity: identity, createdAt: "", includeUsage: false)
        let text = frames.map { String(buffer: $0) }.joined()
        let data = try sseData(text)
        #expect(data.last == "[DONE]")
        let contents = try data.dropLast().compactMap { payload -> String? in
            guard case .object(let chunk) = try json(payload), case .array(let choices)? = chunk["choices"],
                case .object(let choice)? = choices.first, case .object(let delta)? = choice["delta"],
                case .string(let content)? = delta["content"]
            else { return nil }
            return content
        }
        #expect(contents.joined() == "abc")
        #expect(contents.filter { !$0.isEmpty }.count == 3)
    }

    @Test func nonStreamedBodyRoundTrips() throws {
        let g = CachedGeneration(pieces: ["Hel", "lo"], finishReason: "length", usage: Usage(promptTokens: 1, completionTokens: 2))
        for format in [AnswerFormat.openAIChat, .openAICompletion, .ollamaChat, .ollamaGenerate] {
            let body = CacheReplay.body(g, format: format, model: "m", identity: identity, createdAt: "2026-01-01T00:00:00Z")
            var collector = AnswerCollector(format: format, streaming: false)
            collector.observe(body)
            let answer = collector.answer()
            let replayed = try #require(answer, "format \(format)")
            #expect(replayed.text == "Hello")
            #expect(replayed.usage?.completionTokens == 2)
        }
    }

    @Test(arguments: [
        CachedGeneration(pieces: ["Hel", "lo \"quoted\" / ü"], finishReason: "length", usage: Usage(promptTokens: 1, completionTokens: 2)),
        CachedGeneration(pieces: ["no usage"], finishReason: "stop", usage: nil),
        CachedGeneration(
            pieces: [], toolCalls: [ToolCall(id: "call_1", name: "f", arguments: #"{"a":1}"#)], finishReason: "tool_calls",
            usage: Usage(promptTokens: 3, completionTokens: 4)),
    ])
    func templatedBodyIsByteIdenticalToTheEncodedOne(_ g: CachedGeneration) {
        for format in [AnswerFormat.openAIChat, .openAICompletion] {
            let plain = CacheReplay.body(g, format: format, model: "llama3.2 \"x\"", identity: identity, createdAt: "")
            let templated = g.withTemplate(format: format, model: "llama3.2 \"x\"")
            #expect(templated.template != nil)
            let fast = CacheReplay.body(templated, format: format, model: "llama3.2 \"x\"", identity: identity, createdAt: "")
            #expect(String(buffer: fast) == String(buffer: plain), "format \(format)")
            // A template for another model or format is not used.
            let other = CacheReplay.body(templated, format: format, model: "other", identity: identity, createdAt: "")
            #expect(String(buffer: other).contains(#""model":"other""#))
        }
        #expect(g.withTemplate(format: .ollamaChat, model: "m").template == nil)
    }

    @Test func costGrowsWithContent() {
        let small = CachedAnswer.generation(CachedGeneration(pieces: ["a"], finishReason: "stop", usage: nil))
        let large = CachedAnswer.generation(CachedGeneration(pieces: [String(repeating: "a", count: 10_000)], finishReason: "stop", usage: nil))
        #expect(large.cost > small.cost + 9_000)
        #expect(CachedAnswer.raw(Array(repeating: 0, count: 5000)).cost >= 5000)
    }
}

@Suite("Cache probe")
struct CacheProbeTests {
    func probe(_ text: String) -> CacheProbe? {
        Array(text.utf8).withUnsafeBytes { CacheProbe(json: $0) }
    }

    @Test func readsThePlainDeliveryFields() {
        #expect(probe(#"{"model":"llama3.2","messages":[]}"#) == CacheProbe(model: "llama3.2", stream: false, includeUsage: false))
        #expect(
            probe(#"{"messages":[{"role":"user","content":"\"model\""}], "stream" : true, "stream_options": {"include_usage": true}, "model": "m", "user": "u"}"#)
                == CacheProbe(model: "m", stream: true, includeUsage: true))
        #expect(probe(#"{"model":"m","stream":null,"stream_options":null,"user":null}"#) == CacheProbe(model: "m", stream: false, includeUsage: false))
        #expect(probe(#"{"model":"m","stream_options":{}}"#) == CacheProbe(model: "m", stream: false, includeUsage: false))
    }

    @Test(arguments: [
        #"{"messages":[]}"#, #"{"model":5}"#, #"{"model":"ll\u0061ma"}"#, #"{"model":"m","stream":"yes"}"#,
        #"{"model":"m","stream":1}"#, #"{"model":"m","stream_options":true}"#, #"{"model":"m","stream_options":{"include_usage":"yes"}}"#,
        #"{"model":"m","user":5}"#, #"["model"]"#, "",
    ])
    func anythingUnusualTakesTheFullPath(_ text: String) {
        #expect(probe(text) == nil)
    }
}
