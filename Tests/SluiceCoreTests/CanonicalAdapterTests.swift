import Foundation
import NIOCore
import Testing
@testable import SluiceCore

@Suite struct ChatCanonicalTests {
    static let chatBody = #"""
        {"model":"m","stream":true,"stream_options":{"include_usage":true},"n":1,"temperature":0.3,"max_completion_tokens":99,"stop":"END","seed":4,
         "messages":[
           {"role":"system","content":"Be brief."},
           {"role":"user","content":[{"type":"text","text":"What is in "},{"type":"image_url","image_url":{"url":"https://x/cat.png"}}]},
           {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"look","arguments":"{\"at\":\"cat\"}"}}]},
           {"role":"tool","tool_call_id":"call_1","content":"a cat"},
           {"role":"developer","content":"Answer in French."}],
         "tools":[{"type":"function","function":{"name":"look","description":"Looks","parameters":{"type":"object"}}}],
         "tool_choice":{"type":"function","function":{"name":"look"}},
         "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"},"strict":true}},"user":"u"}
        """#

    @Test func chatRequestToCanonicalAndBack() throws {
        let chat = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: buffer(Self.chatBody))
        let request = try OpenAIChat.canonicalRequest(chat)
        #expect(request.system == [.text("Be brief.")])
        #expect(request.messages.map(\.role) == [.user, .assistant, .tool, .system])
        #expect(request.messages[0].content[1] == .image(.init(source: .url("https://x/cat.png"))))
        #expect(request.messages[1].content == [.toolCall(.init(id: "call_1", name: "look", arguments: #"{"at":"cat"}"#))])
        #expect(request.messages[2].content == [.toolResult(.init(callID: "call_1", name: "look", content: [.text("a cat")]))])
        #expect(request.sampling == Generation.Sampling(temperature: 0.3, maxTokens: 99, stopSequences: ["END"]).with { $0.seed = 4 })
        #expect(request.toolChoice == .tool(name: "look"))
        #expect(request.responseFormat == .jsonSchema(name: "r", schema: ["type": "object"], strict: true, description: nil))
        #expect(request.extensions == ["n": 1, "stream_options": ["include_usage": true]])

        let back = try OpenAIChat.chatRequest(request)
        #expect(back.messages.map(\.role) == ["system", "user", "assistant", "tool", "system"])
        #expect(back.messages[2].content == nil)
        #expect(back.messages[2].toolCalls == chat.messages[2].toolCalls)
        #expect(back.messages[3].toolCallID == "call_1")
        #expect(back.toolChoice == chat.toolChoice)
        #expect(back.responseFormat == chat.responseFormat)
        #expect(back.streamOptions?.includeUsage == true)
        #expect(back.maxTokens == 99)
    }

    @Test func chatAnswerRoundTrip() throws {
        let response = ChatCompletionResponse(
            id: "chatcmpl-1", created: 5, model: "m",
            choices: [.init(index: 0, message: ChatMessage(role: "assistant", content: .text("ok"), toolCalls: [ToolCall(id: "c", name: "f", arguments: "{}")]), finishReason: "tool_calls")],
            usage: Usage(promptTokens: 3, completionTokens: 2))
        let answer = OpenAIChat.canonicalAnswer(response)
        #expect(answer.stopReason == .toolUse)
        #expect(answer.content == [.text("ok"), .toolCall(.init(id: "c", name: "f", arguments: "{}"))])
        #expect(OpenAIChat.chatResponse(answer, identity: ResponseIdentity(id: "chatcmpl-1", created: 5)) == response)
    }

    @Test func openAIStreamDecodesAtEveryByteBoundary() throws {
        let sse = """
            data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}

            data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}

            data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Olá 👋"}}]}

            data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_z","type":"function","function":{"name":"f","arguments":"{\\"q\\":"}}]}}]}

            data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"é\\"}"}}]}}]}

            data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

            data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":6,"total_tokens":14}}

            data: [DONE]


            """
        let expected: [Generation.Delta] = [
            .messageStart(id: "c1", model: "m", usage: nil), .reasoning("hm"), .text("Olá 👋"),
            .toolCallStart(index: 0, id: "call_z", name: "f"), .toolCallArguments(index: 0, #"{"q":"é"}"#),
            .finish(.toolUse, stopSequence: nil, usage: .init(promptTokens: 8, completionTokens: 6)),
        ]
        for pieces in everyChunking(sse) {
            var decoder = OpenAIChat.StreamDecoder()
            var deltas: [Generation.Delta] = []
            for piece in pieces { try decoder.decode(piece, into: &deltas) }
            try decoder.finish(into: &deltas)
            #expect(coalesced(deltas) == expected)
        }
    }
}

extension Generation.Sampling {
    func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }
}

@Suite struct OllamaCanonicalTests {
    @Test func ollamaRequestToCanonicalAndBack() throws {
        let body = #"""
            {"model":"qwen3","think":true,"keep_alive":"5m","format":"json","options":{"temperature":0.1,"top_k":20,"num_predict":50},
             "messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi","images":["iVBORw0KGgo="]},
               {"role":"assistant","content":"","thinking":"need weather","tool_calls":[{"function":{"name":"weather","arguments":{"city":"Oslo"}}}]},
               {"role":"tool","content":"-3C","tool_name":"weather"}],
             "tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}]}
            """#
        let native = try JSONDecoder().decode(Ollama.ChatRequest.self, from: Data(body.utf8))
        let request = try OllamaChat.canonicalRequest(native)
        #expect(request.system == [.text("sys")])
        #expect(request.reasoning == .effort(.medium))
        #expect(request.responseFormat == .jsonObject)
        #expect(request.sampling == Generation.Sampling(temperature: 0.1, topK: 20, maxTokens: 50))
        #expect(request.messages[0].content[1] == .image(.init(source: .base64(mediaType: "image/png", data: "iVBORw0KGgo="))))
        #expect(
            request.messages[1].content == [
                .reasoning(.init(text: "need weather")), .toolCall(.init(id: "call_0", name: "weather", arguments: #"{"city":"Oslo"}"#)),
            ])
        #expect(request.messages[2].content == [.toolResult(.init(callID: "call_0", name: "weather", content: [.text("-3C")]))])
        #expect(request.extensions == ["keep_alive": "5m"])

        let back = try OllamaChat.ollamaRequest(request)
        #expect(back.messages == native.messages)
        #expect(back.think == true)
        #expect(back.format == "json")
        #expect(back.keepAlive == "5m")
        #expect(back.options?.topK == 20)
        #expect(back.tools == native.tools)
    }

    @Test func urlImagesCannotGoToOllama() {
        let request = Generation.Request(model: "m", messages: [.init(role: .user, content: [.image(.init(source: .url("https://x")))])], origin: .openAIChat)
        #expect(throws: APIError.self) { try OllamaChat.ollamaRequest(request) }
    }

    @Test func ollamaAnswerRoundTrip() {
        var response = Ollama.ChatResponse(
            model: "m", createdAt: "t",
            message: Ollama.Message(role: "assistant", content: "It is cold.", thinking: "check"), done: true)
        response.doneReason = "stop"
        response.promptEvalCount = 10
        response.evalCount = 4
        let answer = OllamaChat.canonicalAnswer(response, identity: ResponseIdentity(id: "chatcmpl-x", created: 1))
        #expect(answer.content == [.reasoning(.init(text: "check")), .text("It is cold.")])
        #expect(answer.usage == .init(promptTokens: 10, completionTokens: 4))
        #expect(OllamaChat.ollamaResponse(answer, createdAt: "t") == response)
    }
}

/// Ollama NDJSON, as a thinking model with tools streams it: reasoning, text with an "é" and an emoji, a tool call.
@Suite struct CrossDialectStreamTests {
    static let ndjson = """
        {"model":"qwen3","message":{"role":"assistant","content":"","thinking":"User wants "},"done":false}
        {"model":"qwen3","message":{"role":"assistant","content":"","thinking":"weather."},"done":false}
        {"model":"qwen3","message":{"role":"assistant","content":"Café "},"done":false}
        {"model":"qwen3","message":{"role":"assistant","content":"☕🦙"},"done":false}
        {"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"weather","arguments":{"city":"Zürich"}}}]},"done":false}
        {"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":31,"eval_count":17}

        """

    static let expectedDeltas: [Generation.Delta] = [
        .messageStart(id: "chatcmpl-abc123", model: "qwen3", usage: nil),
        .reasoning("User wants weather."), .text("Café ☕🦙"),
        .toolCallStart(index: 0, id: "call_tcmpl-abc123_0", name: "weather"), .toolCallArguments(index: 0, #"{"city":"Zürich"}"#), .partStop,
        .finish(.toolUse, stopSequence: nil, usage: .init(promptTokens: 31, completionTokens: 17)),
    ]

    @Test func ollamaDeltasAreTheSameAtEveryByteBoundary() throws {
        for pieces in everyChunking(Self.ndjson) {
            #expect(coalesced(try ollamaDeltas(pieces)) == Self.expectedDeltas)
        }
    }

    @Test func ollamaToAnthropicAtEveryByteBoundary() throws {
        for pieces in everyChunking(Self.ndjson) {
            let events = try namedEvents(encodeAnthropic(ollamaDeltas(pieces)))
            #expect(
                events.map(\.name) == [
                    "message_start", "ping",
                    "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                    "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                    "content_block_start", "content_block_delta", "content_block_stop",
                    "message_delta", "message_stop",
                ])
            #expect(events.map { $0.data["index"] } == [nil, nil, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, nil, nil])
            let text = events.compactMap { $0.data["delta"]?["text"]?.stringValue }.joined()
            #expect(text == "Café ☕🦙")
            let thinking = events.compactMap { $0.data["delta"]?["thinking"]?.stringValue }.joined()
            #expect(thinking == "User wants weather.")
            let arguments = events.compactMap { $0.data["delta"]?["partial_json"]?.stringValue }.joined()
            #expect(try json(arguments) == ["city": "Zürich"])
            #expect(events[10].data["content_block"]?["id"] == "toolu_call_tcmpl-abc123_0")
            #expect(events[13].data["delta"]?["stop_reason"] == "tool_use")
            #expect(events[13].data["usage"] == ["input_tokens": 31, "output_tokens": 17, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0])
        }
    }

    @Test func ollamaToResponsesAtEveryByteBoundary() throws {
        for pieces in everyChunking(Self.ndjson) {
            let events = try namedEvents(encodeResponses(ollamaDeltas(pieces)))
            #expect(
                events.map(\.name) == [
                    "response.created", "response.in_progress",
                    "response.output_item.added", "response.reasoning_summary_part.added",
                    "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
                    "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
                    "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                    "response.output_text.done", "response.content_part.done", "response.output_item.done",
                    "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done",
                    "response.output_item.done", "response.completed",
                ])
            #expect(events.map(\.data["sequence_number"]) == (0..<events.count).map { .int($0) })
            let outputIndexes = events.compactMap { $0.data["output_index"] }
            #expect(outputIndexes == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2])
            #expect(events[13].data["text"] == "Café ☕🦙")
            #expect(events[18].data["arguments"] == #"{"city":"Zürich"}"#)
            #expect(events[16].data["item"]?["call_id"] == "call_tcmpl-abc123_0")
            let final = try #require(events.last?.data["response"])
            #expect(final["output"]?.arrayValue?.map { $0["type"] } == ["reasoning", "message", "function_call"])
            #expect(final["usage"]?["input_tokens"] == 31)
        }
    }

    @Test func ollamaErrorLineBecomesAnErrorEvent() throws {
        let input = #"{"model":"m","message":{"role":"assistant","content":"a"},"done":false}"# + "\n" + #"{"error":"out of memory"}"# + "\n"
        let deltas = try ollamaDeltas([buffer(input)])
        let events = try namedEvents(encodeAnthropic(deltas))
        #expect(events.last?.name == "error")
        #expect(events.last?.data["error"]?["message"]?.stringValue?.contains("out of memory") == true)
        #expect(throws: APIError.truncatedStream) { try ollamaDeltas([buffer(#"{"model":"m","message":{"role":"assistant","content":"a"},"done":false}"# + "\n")]) }
    }
}

/// The other two surfaces served from an Anthropic upstream: its stream through the chat and Ollama encoders, read
/// back by the chat and Ollama decoders, gives the same answer.
@Suite struct AnthropicUpstreamToOtherSurfacesTests {
    func anthropicUpstreamDeltas() throws -> [Generation.Delta] {
        var decoder = AnthropicMessages.StreamDecoder()
        var deltas: [Generation.Delta] = []
        try decoder.decode(buffer(AnthropicUpstreamTests.upstreamSSE), into: &deltas)
        return deltas
    }

    @Test func chatChunksRoundTrip() throws {
        var encoder = OpenAIChat.StreamEncoder(model: "m", identity: ResponseIdentity(id: "chatcmpl-q", created: 7), includeUsage: true)
        var out = ByteBuffer()
        for delta in try anthropicUpstreamDeltas() { encoder.write(delta, into: &out) }
        let text = String(buffer: out)
        let data = try sseData(text)
        #expect(data.last == "[DONE]")
        let chunks = try data.dropLast().map { try json($0) }
        #expect(chunks.allSatisfy { $0["object"] == "chat.completion.chunk" && $0["id"] == "chatcmpl-q" && $0["created"] == 7 })
        // The role rides on the first chunk that says something, as the cache replays it.
        #expect(chunks[0]["choices"]?.arrayValue?[0]["delta"] == ["role": "assistant", "reasoning": "Hmm…", "reasoning_content": "Hmm…"])
        #expect(
            chunks.last?["usage"] == ["prompt_tokens": 30, "completion_tokens": 42, "total_tokens": 72, "prompt_tokens_details": ["cached_tokens": 5]])
        #expect(chunks.dropLast().last?["choices"]?.arrayValue?[0]["finish_reason"] == "tool_calls")

        var decoder = OpenAIChat.StreamDecoder()
        var deltas: [Generation.Delta] = []
        try decoder.decode(out, into: &deltas)
        try decoder.finish(into: &deltas)
        #expect(
            coalesced(deltas) == [
                .messageStart(id: "chatcmpl-q", model: "m", usage: nil), .reasoning("Hmm…"), .text("Café 🦙 ok"),
                .toolCallStart(index: 0, id: "toolu_7", name: "get_weather"), .toolCallArguments(index: 0, #"{"city": "Zürich"}"#),
                // The chat usage chunk carries the prompt-cache reads (`prompt_tokens_details`), not cache writes.
                .finish(.toolUse, stopSequence: nil, usage: .init(promptTokens: 30, completionTokens: 42, cachedPromptTokens: 5)),
            ])
    }

    @Test func ollamaLinesRoundTrip() throws {
        var encoder = OllamaChat.StreamEncoder(model: "m", createdAt: "2026-11-29T10:00:00Z")
        var out = ByteBuffer()
        for delta in try anthropicUpstreamDeltas() { encoder.write(delta, into: &out) }
        let lines = try String(buffer: out).split(separator: "\n").map { try json(String($0)) }
        #expect(lines.count == 4)
        #expect(lines[2]["message"]?["tool_calls"] == [["function": ["name": "get_weather", "arguments": ["city": "Zürich"]]]])
        #expect(lines[3]["done"] == true)
        let deltas = try ollamaDeltas([out])
        #expect(
            coalesced(deltas) == [
                .messageStart(id: "chatcmpl-abc123", model: "m", usage: nil), .reasoning("Hmm…"), .text("Café 🦙 ok"),
                .toolCallStart(index: 0, id: "call_tcmpl-abc123_0", name: "get_weather"), .toolCallArguments(index: 0, #"{"city":"Zürich"}"#),
                .partStop, .finish(.toolUse, stopSequence: nil, usage: .init(promptTokens: 30, completionTokens: 42)),
            ])
    }

    @Test func failuresEndEachSurfaceInItsOwnShape() throws {
        var chat = OpenAIChat.StreamEncoder(model: "m", identity: ResponseIdentity(id: "c", created: 1), includeUsage: false)
        var chatOut = ByteBuffer()
        chat.write(.text("a"), into: &chatOut)
        chat.write(.error(.upstreamTimeout()), into: &chatOut)
        #expect(String(buffer: chatOut).hasSuffix(String(buffer: sseFailureFrame(for: .upstreamTimeout()))))
        var ollama = OllamaChat.StreamEncoder(model: "m", createdAt: "t")
        var ollamaOut = ByteBuffer()
        ollama.write(.text("a"), into: &ollamaOut)
        ollama.write(.error(.upstreamTimeout()), into: &ollamaOut)
        #expect(String(buffer: ollamaOut).hasSuffix(String(buffer: ndjsonFailureFrame(for: .upstreamTimeout()))))
    }
}

@Suite struct CanonicalStreamTranslatorTests {
    @Test(arguments: [1, 7, 100_000])
    func ollamaUpstreamToAnthropicClientThroughTheExistingTranslatorProtocol(pieceSize: Int) throws {
        var translator = CanonicalStreamTranslator(
            decoder: OllamaChat.StreamDecoder(identity: ResponseIdentity(id: "chatcmpl-abc123", created: 1)),
            encoder: AnthropicMessages.StreamEncoder(id: "msg_test", model: "claude-test"))
        let output = try run(&translator, CrossDialectStreamTests.ndjson, pieceSize: pieceSize)
        #expect(translator.contentType == "text/event-stream")
        #expect(translator.usage == Usage(promptTokens: 31, completionTokens: 17))
        let events = try namedEvents(output)
        #expect(events.first?.name == "message_start")
        #expect(events.last?.name == "message_stop")
        #expect(events.compactMap { $0.data["delta"]?["text"]?.stringValue }.joined() == "Café ☕🦙")
    }

    @Test func upstreamErrorIsThrownAndTheFailureFrameIsTheClientDialects() throws {
        var translator = CanonicalStreamTranslator(
            decoder: OllamaChat.StreamDecoder(identity: ResponseIdentity(id: "chatcmpl-abc123", created: 1)),
            encoder: OpenAIResponses.StreamEncoder(id: "resp_x", model: "m", createdAt: 1))
        var output = ByteBuffer()
        try translator.translate(buffer(#"{"model":"m","message":{"role":"assistant","content":"a"},"done":false}"# + "\n"), into: &output)
        do {
            try translator.translate(buffer(#"{"error":"out of memory"}"# + "\n"), into: &output)
            Issue.record("expected the upstream error to be thrown")
        } catch {
            var frame = translator.failureFrame(for: error)
            output.writeBuffer(&frame)
        }
        let events = try namedEvents(String(buffer: output))
        #expect(events.last?.name == "response.failed")
        #expect(events.last?.data["response"]?["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"] == "a")
        #expect(events.map(\.data["sequence_number"]) == (0..<events.count).map { .int($0) })
    }
}
