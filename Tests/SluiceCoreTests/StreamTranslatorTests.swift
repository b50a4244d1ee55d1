import NIOCore
import Testing
@testable import SluiceCore

@Suite struct StreamTranslatorTests {
    static let ollamaChat = """
        {"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}
        {"model":"m","message":{"role":"assistant","content":"lo \\"world\\""},"done":false}
        {"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":2}

        """

    @Test(arguments: [1, 2, 7, 64, 100_000])
    func ollamaChatToSSEIsTheSameWhateverTheChunking(pieceSize: Int) throws {
        var whole = chatTranslator(includeUsage: true)
        var pieces = chatTranslator(includeUsage: true)
        let expected = try run(&whole, Self.ollamaChat, pieceSize: 100_000)
        #expect(try run(&pieces, Self.ollamaChat, pieceSize: pieceSize) == expected)
        #expect(pieces.usage == Usage(promptTokens: 4, completionTokens: 2))
    }

    @Test func ollamaChatToSSEShape() throws {
        var translator = chatTranslator(includeUsage: true)
        let events = try sseData(run(&translator, Self.ollamaChat, pieceSize: 5))
        #expect(events.last == "[DONE]")
        let chunks = try events.dropLast().map { try json($0) }
        #expect(chunks[0]["choices"]?.arrayValue?[0]["delta"]?["role"] == "assistant")
        let text = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
        #expect(text == "Hello \"world\"")
        #expect(chunks.allSatisfy { $0["object"] == "chat.completion.chunk" && $0["id"] == .string(identity.id) })
        let finish = chunks.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue }
        #expect(finish == ["stop"])
        let usageChunk = try #require(chunks.last)
        #expect(usageChunk["choices"] == [])
        #expect(usageChunk["usage"]?["total_tokens"] == 6)
    }

    @Test func withoutIncludeUsageThereIsNoUsageChunk() throws {
        var translator = chatTranslator(includeUsage: false)
        let chunks = try sseData(run(&translator, Self.ollamaChat, pieceSize: 1000)).dropLast().map { try json($0) }
        #expect(chunks.allSatisfy { $0["usage"] == nil })
        #expect(translator.usage == Usage(promptTokens: 4, completionTokens: 2))
    }

    /// Thinking-only lines (empty content) become reasoning deltas, not empty ones; then content, then tool calls.
    @Test(arguments: [1, 13, 100_000])
    func thinkingThenContentThenToolCalls(pieceSize: Int) throws {
        let input = """
            {"model":"m","message":{"role":"assistant","content":"","thinking":"Let me "},"done":false}
            {"model":"m","message":{"role":"assistant","content":"","thinking":"think é"},"done":false}
            {"model":"m","message":{"role":"assistant","content":"Answer"},"done":false}
            {"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":false}
            {"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}

            """
        var translator = chatTranslator(includeUsage: false)
        let chunks = try sseData(run(&translator, input, pieceSize: pieceSize)).dropLast().map { try json($0) }
        let deltas = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"] }
        let reasoning = deltas.compactMap { $0["reasoning_content"]?.stringValue }.joined()
        #expect(reasoning == "Let me think é")
        #expect(deltas.compactMap { $0["reasoning"]?.stringValue }.joined() == reasoning)
        #expect(deltas.compactMap { $0["content"]?.stringValue }.joined() == "Answer")
        let kinds = deltas.map { d in d["reasoning_content"] != nil ? "r" : d["tool_calls"] != nil ? "t" : d["content"] != nil ? "c" : "-" }
        // A tool call opens with its name and id, then its arguments follow, as OpenAI streams them.
        #expect(kinds.filter { $0 != "-" } == ["r", "r", "c", "t", "t"])
        #expect(chunks.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue } == ["tool_calls"])
    }

    @Test func streamedToolCallsGetIndexesAndFinishReason() throws {
        let input = """
            {"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":false}
            {"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}

            """
        var translator = chatTranslator(includeUsage: false)
        let chunks = try sseData(run(&translator, input, pieceSize: 9)).dropLast().map { try json($0) }
        let calls = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["tool_calls"]?.arrayValue?.first }
        #expect(calls.allSatisfy { $0["index"] == 0 })
        #expect(calls.first?["function"]?["name"] == "f")
        #expect(calls.first?["id"]?.stringValue?.hasPrefix("call_") == true)
        let arguments = calls.compactMap { $0["function"]?["arguments"]?.stringValue }.joined()
        #expect(try json(arguments) == ["a": 1])
        #expect(chunks.last?["choices"]?.arrayValue?[0]["finish_reason"] == "tool_calls")
    }

    @Test func streamWithoutDoneLineIsTruncated() {
        var translator = chatTranslator(includeUsage: false)
        let partial = #"{"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}"# + "\n"
        #expect(throws: APIError.truncatedStream) { try run(&translator, partial, pieceSize: 10) }
    }

    @Test func errorLineMidStreamFails() {
        var translator = chatTranslator(includeUsage: false)
        let input = #"{"model":"m","message":{"role":"assistant","content":"a"},"done":false}"# + "\n" + #"{"error":"out of memory"}"# + "\n"
        do {
            _ = try run(&translator, input, pieceSize: 1000)
            Issue.record("expected a failure")
        } catch {
            #expect(error.status == 502)
            #expect(error.message.contains("out of memory"))
        }
    }

    @Test func malformedLineFails() {
        var translator = chatTranslator(includeUsage: false)
        #expect(throws: APIError.malformedStream) { try run(&translator, "{not json}\n", pieceSize: 3) }
    }

    @Test func failureFramesEndWithoutDone() throws {
        let sse = String(buffer: sseFailureFrame(for: .upstreamTimeout()))
        #expect(sse.hasPrefix("event: error\ndata: "))
        #expect(!sse.contains("[DONE]"))
        var decoder = SSEDecoder()
        let event = try #require(try decoder.feed(ByteBuffer(string: sse)).first)
        #expect(try json(event.data)["error"]?["code"] == "upstream_timeout")
        let ndjson = String(buffer: ndjsonFailureFrame(for: .upstreamTimeout()))
        #expect(try json(ndjson)["error"]?.stringValue?.isEmpty == false)
    }

    @Test(arguments: [1, 3, 50])
    func generateToCompletionChunks(pieceSize: Int) throws {
        let input = """
            {"model":"m","response":"Hi","done":false}
            {"model":"m","response":" there","done":false}
            {"model":"m","response":"","done":true,"done_reason":"length","prompt_eval_count":1,"eval_count":2}

            """
        var translator = OllamaGenerateStreamTranslator(model: "m", identity: identity, includeUsage: true)
        let events = try sseData(run(&translator, input, pieceSize: pieceSize))
        #expect(events.last == "[DONE]")
        let chunks = try events.dropLast().map { try json($0) }
        #expect(chunks.compactMap { $0["choices"]?.arrayValue?.first?["text"]?.stringValue }.joined() == "Hi there")
        #expect(chunks.contains { $0["choices"]?.arrayValue?.first?["finish_reason"] == "length" })
        #expect(chunks.last?["usage"]?["completion_tokens"] == 2)
    }

    @Test(arguments: [1, 4, 1000])
    func openAIPassthroughIsByteIdenticalAndFindsUsage(pieceSize: Int) throws {
        let input = """
            data: {"choices":[{"delta":{"content":"a"}}]}

            data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}

            data: [DONE]


            """
        var translator = OpenAIStreamPassthrough()
        #expect(try run(&translator, input, pieceSize: pieceSize) == input)
        #expect(translator.usage == Usage(promptTokens: 2, completionTokens: 3))
    }

    @Test func openAIPassthroughWithoutDoneIsTruncated() {
        var translator = OpenAIStreamPassthrough()
        #expect(throws: APIError.truncatedStream) { try run(&translator, "data: {\"choices\":[]}\n\n", pieceSize: 4) }
    }

    @Test func nativePassthroughFindsCountsAndEnd() throws {
        var translator = OllamaStreamPassthrough()
        #expect(try run(&translator, Self.ollamaChat, pieceSize: 13) == Self.ollamaChat)
        #expect(translator.usage == Usage(promptTokens: 4, completionTokens: 2))
        var truncated = OllamaStreamPassthrough()
        #expect(throws: APIError.truncatedStream) {
            try run(&truncated, #"{"message":{"content":"a"},"done":false}"# + "\n", pieceSize: 13)
        }
    }
}

@Suite("Usage estimates")
struct UsageEstimateTests {
    static let stream = """
        data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}

        data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}

        data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"}}]}

        data: [DONE]


        """

    @Test func aPassthroughStreamWithoutUsageEstimatesOneTokenPerContentChunk() throws {
        var translator = OpenAIStreamPassthrough()
        _ = try run(&translator, Self.stream, pieceSize: 9)
        #expect(translator.usage == nil)
        #expect(translator.estimatedCompletionTokens == 2)
    }

    /// llama.cpp's server ends a complete answer without `[DONE]`: a finish reason, then a clean end, is complete.
    @Test func aCleanEndAfterAFinishReasonIsCompleteAndGetsDone() throws {
        let body = """
            data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

            data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

            data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}


            """
        var translator = OpenAIStreamPassthrough()
        let out = try run(&translator, body, pieceSize: 7)
        #expect(out.hasSuffix("data: [DONE]\n\n"))
        #expect(translator.usage == Usage(promptTokens: 3, completionTokens: 1))
    }

    @Test func aCleanEndBeforeAnyFinishReasonIsATruncation() throws {
        var translator = OpenAIStreamPassthrough()
        var out = ByteBuffer()
        try translator.translate(
            ByteBuffer(string: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"), into: &out)
        #expect(throws: APIError.self) { try translator.finish(into: &out) }
    }

    @Test func noEstimateForAnUnfinishedStream() throws {
        var translator = OpenAIStreamPassthrough()
        var out = ByteBuffer()
        try translator.translate(ByteBuffer(string: String(Self.stream.prefix(200))), into: &out)
        #expect(translator.estimatedCompletionTokens == nil)
    }
}

/// The chat surface over an Ollama upstream, as the gateway relays it: Ollama's NDJSON decoded to canonical deltas and
/// encoded as chat completion chunks.
func chatTranslator(includeUsage: Bool) -> CanonicalStreamTranslator<OllamaChat.StreamDecoder, OpenAIChat.StreamEncoder> {
    CanonicalStreamTranslator(
        decoder: OllamaChat.StreamDecoder(identity: identity), encoder: OpenAIChat.StreamEncoder(model: "m", identity: identity, includeUsage: includeUsage))
}

struct UTF8SearchTests {
    func find(_ needle: String, in text: String) -> Range<Int>? {
        var text = text
        return text.withUTF8 { UTF8Search.range(of: Array(needle.utf8), in: $0) }
    }

    func valueAfter(_ key: String, in text: String) -> Character? {
        var text = text
        return text.withUTF8 { UTF8Search.valueAfter(Array(key.utf8), in: $0) }.map { Character(UnicodeScalar($0)) }
    }

    @Test func findsBytesAnywhereAndNothingElse() {
        #expect(find("abc", in: "xxabcxx") == 2..<5)
        #expect(find("abc", in: "abc") == 0..<3)
        #expect(find("abc", in: "ababc") == 2..<5)
        #expect(find("abc", in: "ab") == nil)
        #expect(find("abd", in: "abcabc") == nil)
        #expect(find("", in: "abc") == nil)
    }

    @Test func readsTheValueAfterAMemberName() {
        #expect(valueAfter(#""finish_reason""#, in: #"{"finish_reason":null}"#) == "n")
        #expect(valueAfter(#""finish_reason""#, in: #"{"finish_reason" :  "stop"}"#) == "\"")
        #expect(valueAfter(#""finish_reason""#, in: #"{"content":"the \"finish_reason\" is"}"#) == nil)
        #expect(valueAfter(#""finish_reason""#, in: #"{"finish_reason""#) == nil)
        #expect(valueAfter(#""usage""#, in: #"{"a":1}"#) == nil)
    }
}
