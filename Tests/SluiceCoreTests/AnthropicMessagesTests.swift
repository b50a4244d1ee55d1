import NIOCore
import Testing
@testable import SluiceCore

@Suite struct AnthropicRequestTests {
    /// What Claude Code sends, trimmed: cached system blocks, tools, a tool round trip, thinking.
    static let claudeCodeBody = #"""
        {"model":"claude-sonnet-4-5","max_tokens":32000,"stream":true,"temperature":1,
         "system":[{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Be terse."}],
         "messages":[
           {"role":"user","content":"List the files."},
           {"role":"assistant","content":[
             {"type":"thinking","thinking":"I should call ls.","signature":"sig=="},
             {"type":"text","text":"Listing."},
             {"type":"tool_use","id":"toolu_01A","name":"Bash","input":{"command":"ls","timeout":5}}]},
           {"role":"user","content":[
             {"type":"tool_result","tool_use_id":"toolu_01A","content":[{"type":"text","text":"a.swift\nb.swift"}]},
             {"type":"tool_result","tool_use_id":"toolu_01B","content":"boom","is_error":true},
             {"type":"text","text":"Now count them.","cache_control":{"type":"ephemeral"}},
             {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}],
         "tools":[{"name":"Bash","description":"Run a command","input_schema":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"]},"cache_control":{"type":"ephemeral"}},
                  {"type":"web_search_20250305","name":"web_search","max_uses":3}],
         "tool_choice":{"type":"auto","disable_parallel_tool_use":true},
         "thinking":{"type":"enabled","budget_tokens":10000,"display":"summarized"},
         "metadata":{"user_id":"user_42"},
         "stop_sequences":["END"],"top_k":40,"service_tier":"auto"}
        """#

    @Test func claudeCodeRequestDecodes() throws {
        let request = try AnthropicMessages.decodeRequest(buffer(Self.claudeCodeBody))
        #expect(request.model == "claude-sonnet-4-5")
        #expect(request.origin == .anthropicMessages)
        #expect(request.stream)
        #expect(request.sampling == Generation.Sampling(temperature: 1, topK: 40, maxTokens: 32000, stopSequences: ["END"]))
        #expect(request.system == [.text(.init("You are Claude Code.", extensions: ["cache_control": ["type": "ephemeral"]])), .text("Be terse.")])
        #expect(request.reasoning == .budget(tokens: 10000))
        #expect(request.toolChoice == .auto)
        #expect(request.parallelToolCalls == false)
        #expect(request.user == "user_42")
        #expect(request.metadata == ["user_id": "user_42"])
        #expect(request.extensions == ["service_tier": "auto", "thinking.display": "summarized"])

        #expect(request.messages.map(\.role) == [.user, .assistant, .tool, .user])
        let assistant = request.messages[1].content
        #expect(assistant[0] == .reasoning(.init(text: "I should call ls.", signature: "sig==")))
        #expect(assistant[1] == .text("Listing."))
        guard case .toolCall(let call) = assistant[2] else { Issue.record("expected a tool call"); return }
        #expect(call.id == "toolu_01A")
        #expect(try json(call.arguments) == ["command": "ls", "timeout": 5])
        #expect(
            request.messages[2].content == [
                .toolResult(.init(callID: "toolu_01A", content: [.text("a.swift\nb.swift")])),
                .toolResult(.init(callID: "toolu_01B", content: [.text("boom")], isError: true)),
            ])
        #expect(
            request.messages[3].content == [
                .text(.init("Now count them.", extensions: ["cache_control": ["type": "ephemeral"]])),
                .image(.init(source: .base64(mediaType: "image/png", data: "iVBORw0KGgo="))),
            ])
        #expect(request.tools.count == 2)
        #expect(request.tools[0].name == "Bash")
        #expect(request.tools[0].parameters?["required"] == ["command"])
        #expect(request.tools[0].extensions == ["cache_control": ["type": "ephemeral"]])
        #expect(request.tools[1].kind == "web_search_20250305")
    }

    @Test func stringSystemAndContent() throws {
        let request = try AnthropicMessages.decodeRequest(
            buffer(#"{"model":"m","max_tokens":10,"system":"Be nice.","messages":[{"role":"user","content":"hi"}]}"#))
        #expect(request.system == [.text("Be nice.")])
        #expect(request.messages == [Generation.Message(role: .user, content: [.text("hi")])])
        #expect(!request.stream)
        #expect(request.reasoning == nil)
    }

    func decodeError(_ body: String) -> APIError? {
        do {
            _ = try AnthropicMessages.decodeRequest(buffer(body))
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#, "max_tokens", "missing_field"),
        (#"{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#, "model", "missing_field"),
        (#"{"model":"m","max_tokens":5}"#, "messages", "missing_field"),
        (#"{"model":"m","max_tokens":"5","messages":[{"role":"user","content":"hi"}]}"#, "max_tokens", "invalid_type"),
        (#"{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"hi"}]}"#, "max_tokens", "invalid_type"),
        (#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}"#, "max_tokens", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"messages":[]}"#, "messages", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"hi"}]}"#, "messages[0].role", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":5}]}"#, "messages[0].content", "invalid_type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"video","url":"x"}]}]}"#, "messages[0].content[0].type", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text"}]}]}"#, "messages[0].content[0].text", "missing_field"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#, "messages[0].content[0].source.type", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"temperature":1.5,"messages":[{"role":"user","content":"hi"}]}"#, "temperature", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"stream":"yes","messages":[{"role":"user","content":"hi"}]}"#, "stream", "invalid_type"),
        (#"{"model":"m","max_tokens":5,"tool_choice":{"type":"maybe"},"messages":[{"role":"user","content":"hi"}]}"#, "tool_choice.type", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"tools":[{"name":"t"}],"messages":[{"role":"user","content":"hi"}]}"#, "tools[0].input_schema", "missing_field"),
        (#"{"model":"m","max_tokens":5000,"thinking":{"type":"enabled","budget_tokens":100},"messages":[{"role":"user","content":"hi"}]}"#, "thinking.budget_tokens", "invalid_value"),
        (#"{"model":"m","max_tokens":5,"system":[{"type":"image"}],"messages":[{"role":"user","content":"hi"}]}"#, "system[0].type", "invalid_value"),
    ])
    func badRequestsNameTheField(body: String, param: String, code: String) {
        let error = decodeError(body)
        #expect(error?.status == 400)
        #expect(error?.param == param)
        #expect(error?.code == code)
        #expect(error?.message.contains(param) == true)
    }

    @Test func countTokensNeedsNoMaxTokens() throws {
        let body = #"{"model":"m","system":"s","messages":[{"role":"user","content":"hi"}],"tools":[{"name":"t","input_schema":{"type":"object"}}]}"#
        let request = try AnthropicMessages.decodeCountTokensRequest(buffer(body))
        #expect(request.sampling.maxTokens == nil)
        #expect(request.tools.map(\.name) == ["t"])
        #expect(decodeError(body) == .missingField("max_tokens"))
    }

    @Test func nonObjectBodiesAreInvalidJSON() {
        #expect(decodeError("")?.code == "invalid_json")
        #expect(decodeError("[1]")?.code == "invalid_json")
        #expect(decodeError("{nope")?.code == "invalid_json")
    }
}

@Suite struct AnthropicAnswerTests {
    @Test func answerEncodesAsAMessage() throws {
        let answer = Generation.Answer(
            id: "abc", model: "claude-test",
            content: [
                .reasoning(.init(text: "hmm", signature: "s1")), .text("Let me look."),
                .toolCall(.init(id: "call_9", name: "read", arguments: #"{"path":"/tmp/a"}"#)),
            ],
            stopReason: .toolUse,
            usage: .init(promptTokens: 100, completionTokens: 20, cachedPromptTokens: 60, cacheCreationTokens: 10))
        let value = try json(AnthropicMessages.encodeAnswer(answer))
        #expect(
            value
                == [
                    "id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-test",
                    "content": [
                        ["type": "thinking", "thinking": "hmm", "signature": "s1"],
                        ["type": "text", "text": "Let me look."],
                        ["type": "tool_use", "id": "toolu_call_9", "name": "read", "input": ["path": "/tmp/a"]],
                    ],
                    "stop_reason": "tool_use", "stop_sequence": nil,
                    "usage": ["input_tokens": 30, "output_tokens": 20, "cache_read_input_tokens": 60, "cache_creation_input_tokens": 10],
                ])
    }

    @Test(arguments: [
        (Generation.StopReason.endTurn, "end_turn"), (.maxTokens, "max_tokens"), (.stopSequence, "stop_sequence"), (.toolUse, "tool_use"),
    ])
    func stopReasonsRoundTrip(reason: Generation.StopReason, wire: String) {
        #expect(AnthropicMessages.stopReason(reason) == wire)
        #expect(AnthropicMessages.canonicalStopReason(wire) == reason)
    }

    @Test func stopSequenceIsReported() throws {
        let answer = Generation.Answer(id: "msg_1", model: "m", content: [.text("a")], stopReason: .stopSequence, stopSequence: "END")
        let value = try json(AnthropicMessages.encodeAnswer(answer))
        #expect(value["stop_sequence"] == "END")
        #expect(value["id"] == "msg_1")
    }

    @Test(arguments: [
        (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
        (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"), (503, "overloaded_error"),
        (529, "overloaded_error"),
    ])
    func errorBodiesPerStatus(status: Int, type: String) throws {
        let error = APIError(status: status, type: "x", code: "y", message: "went \"wrong\"")
        let value = try json(AnthropicMessages.errorBody(for: error))
        #expect(value == ["type": "error", "error": ["type": .string(type), "message": "went \"wrong\""]])
    }

    @Test func fieldErrorsKeepTheFieldInTheMessage() throws {
        let value = try json(AnthropicMessages.errorBody(for: .missingField("max_tokens")))
        #expect(value["error"]?["type"] == "invalid_request_error")
        #expect(value["error"]?["message"]?.stringValue?.contains("max_tokens") == true)
    }
}

@Suite struct AnthropicStreamEncoderTests {
    @Test func textThenToolCallClosesTheTextBlockFirst() throws {
        let events = try namedEvents(
            encodeAnthropic([
                .messageStart(id: nil, model: nil, usage: .init(promptTokens: 12)),
                .text("Hi "), .text("there"),
                .toolCallStart(index: 0, id: "call_1", name: "get"), .toolCallArguments(index: 0, #"{"a":"#), .toolCallArguments(index: 0, "1}"),
                .finish(.toolUse, stopSequence: nil, usage: .init(promptTokens: 12, completionTokens: 7)),
            ]))
        #expect(
            events.map(\.name) == [
                "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
            ])
        #expect(events.allSatisfy { $0.data["type"] == .string($0.name) })
        #expect(events[0].data["message"]?["id"] == "msg_test")
        #expect(events[0].data["message"]?["content"] == [])
        #expect(events[0].data["message"]?["usage"]?["input_tokens"] == 12)
        #expect(events[2].data == ["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]])
        #expect(events[3].data == ["type": "content_block_delta", "index": 0, "delta": ["type": "text_delta", "text": "Hi "]])
        #expect(events[5].data == ["type": "content_block_stop", "index": 0])
        #expect(
            events[6].data
                == ["type": "content_block_start", "index": 1, "content_block": ["type": "tool_use", "id": "toolu_call_1", "name": "get", "input": [:]]])
        #expect(events[7].data == ["type": "content_block_delta", "index": 1, "delta": ["type": "input_json_delta", "partial_json": #"{"a":"#]])
        #expect(events[9].data == ["type": "content_block_stop", "index": 1])
        #expect(events[10].data["delta"] == ["stop_reason": "tool_use", "stop_sequence": nil])
        #expect(events[10].data["usage"]?["output_tokens"] == 7)
    }

    @Test func thinkingWithSignatureThenText() throws {
        let events = try namedEvents(
            encodeAnthropic([
                .messageStart(id: nil, model: nil, usage: nil), .reasoning("Think"), .reasoningSignature("SIG"), .partStop, .text("Answer"),
                .finish(.endTurn, stopSequence: nil, usage: nil),
            ]))
        #expect(events[2].data["content_block"]?["type"] == "thinking")
        #expect(events[3].data["delta"] == ["type": "thinking_delta", "thinking": "Think"])
        #expect(events[4].data["delta"] == ["type": "signature_delta", "signature": "SIG"])
        #expect(events[5].name == "content_block_stop")
        #expect(events[6].data["index"] == 1)
        #expect(events[6].data["content_block"]?["type"] == "text")
        #expect(events.last?.name == "message_stop")
    }

    @Test func deltasWithoutStartOrStopStillMakeAWellFormedStream() throws {
        // No messageStart, no partStop, arguments before their start: every delta names an open block.
        let events = try namedEvents(
            encodeAnthropic([.toolCallArguments(index: 0, "{}"), .text("x"), .finish(.endTurn, stopSequence: nil, usage: nil)]))
        var open: Set<Int> = []
        var seen: Set<Int> = []
        for event in events {
            guard case .int(let index)? = event.data["index"] else { continue }
            switch event.name {
            case "content_block_start":
                #expect(!seen.contains(index))
                open.insert(index)
                seen.insert(index)
            case "content_block_delta": #expect(open.contains(index))
            case "content_block_stop": #expect(open.remove(index) != nil)
            default: break
            }
        }
        #expect(open.isEmpty)
        #expect(events.first?.name == "message_start")
        #expect(events.last?.name == "message_stop")
    }

    @Test func failureAfterStartEndsWithAnErrorEvent() throws {
        var encoder = AnthropicMessages.StreamEncoder(id: "m", model: "x")
        var out = ByteBuffer()
        encoder.write(.text("partial"), into: &out)
        encoder.fail(.upstreamTimeout(), into: &out)
        encoder.write(.text("ignored"), into: &out)
        let events = try namedEvents(String(buffer: out))
        #expect(events.last?.name == "error")
        #expect(events.last?.data == ["type": "error", "error": ["type": "api_error", "message": "The upstream server did not answer in time."]])
        #expect(!events.contains { $0.name == "message_stop" })
        #expect(encoder.isFinished)
    }
}

@Suite struct AnthropicUpstreamTests {
    @Test func canonicalRequestEncodesForAnAnthropicUpstream() throws {
        let original = try AnthropicMessages.decodeRequest(buffer(AnthropicRequestTests.claudeCodeBody))
        let body = try json(AnthropicMessages.encodeRequest(original))
        #expect(body["max_tokens"] == 32000)
        #expect(body["service_tier"] == "auto")
        #expect(body["thinking"] == ["type": "enabled", "budget_tokens": 10000, "display": "summarized"])
        #expect(body["tool_choice"] == ["type": "auto", "disable_parallel_tool_use": true])
        #expect(body["system"]?.arrayValue?.first == ["type": "text", "text": "You are Claude Code.", "cache_control": ["type": "ephemeral"]])
        let messages = try #require(body["messages"]?.arrayValue)
        #expect(messages.map { $0["role"] } == ["user", "assistant", "user"])
        let lastBlocks = try #require(messages[2]["content"]?.arrayValue)
        #expect(lastBlocks.map { $0["type"] } == ["tool_result", "tool_result", "text", "image"])
        #expect(lastBlocks[1]["is_error"] == true)
        #expect(messages[1]["content"]?.arrayValue?[2]["input"] == ["command": "ls", "timeout": 5])
        #expect(body["tools"]?.arrayValue?[1] == ["type": "web_search_20250305", "name": "web_search", "max_uses": 3])
        // And it decodes back to the same request.
        #expect(try AnthropicMessages.decodeRequest(AnthropicMessages.encodeRequest(original)) == original)
    }

    @Test func foreignRequestGetsDefaultsAndNoForeignExtensions() throws {
        var request = Generation.Request(
            model: "m", messages: [.init(role: .system, content: [.text("late rule")]), .init(role: .user, content: [.text("hi")])],
            origin: .openAIResponses)
        request.extensions = ["store": true]
        request.reasoning = .effort(.high)
        request.user = "u1"
        let body = try json(AnthropicMessages.encodeRequest(request))
        #expect(body["max_tokens"] == 8192)
        #expect(body["store"] == nil)
        #expect(body["system"] == [["type": "text", "text": "late rule"]])
        #expect(body["thinking"]?["budget_tokens"] == 6553)
        #expect(body["metadata"] == ["user_id": "u1"])
        var serverTool = Generation.Tool(name: "web_search")
        serverTool.kind = "web_search"
        request.tools = [serverTool]
        #expect(throws: APIError.self) { try AnthropicMessages.encodeRequest(request) }
    }

    @Test func messagesResponseDecodes() throws {
        let body = #"""
            {"id":"msg_01","type":"message","role":"assistant","model":"claude-x","content":[
              {"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"ok"},
              {"type":"tool_use","id":"toolu_1","name":"f","input":{"x":[1,2]}}],
             "stop_reason":"tool_use","stop_sequence":null,
             "usage":{"input_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":3,"output_tokens":9}}
            """#
        let answer = try AnthropicMessages.decodeAnswer(buffer(body))
        #expect(
            answer
                == Generation.Answer(
                    id: "msg_01", model: "claude-x",
                    content: [
                        .reasoning(.init(text: "t", signature: "s")), .text("ok"),
                        .toolCall(.init(id: "toolu_1", name: "f", arguments: #"{"x":[1,2]}"#)),
                    ],
                    stopReason: .toolUse,
                    usage: .init(promptTokens: 108, completionTokens: 9, cachedPromptTokens: 100, cacheCreationTokens: 3)))
        // The canonical answer encodes back to the same Messages body.
        #expect(try json(AnthropicMessages.encodeAnswer(answer)) == json(body))
    }

    static let upstreamSSE = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_up","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

        event: ping
        data: {"type": "ping"}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm…"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: content_block_start
        data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Café 🦙 ok"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":1}

        event: content_block_start
        data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_7","name":"get_weather","input":{}}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Zü"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"rich\\"}"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":2}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    static let expectedDeltas: [Generation.Delta] = [
        .messageStart(id: "msg_up", model: "claude-x", usage: .init(promptTokens: 30, completionTokens: 1, cachedPromptTokens: 5)),
        .reasoning("Hmm…"), .reasoningSignature("EqQB"), .partStop,
        .text("Café 🦙 ok"), .partStop,
        .toolCallStart(index: 0, id: "toolu_7", name: "get_weather"), .toolCallArguments(index: 0, #"{"city": "Zürich"}"#), .partStop,
        .finish(.toolUse, stopSequence: nil, usage: .init(promptTokens: 30, completionTokens: 42, cachedPromptTokens: 5)),
    ]

    @Test func upstreamSSEDecodesTheSameAtEveryByteBoundary() throws {
        for pieces in everyChunking(Self.upstreamSSE) {
            var decoder = AnthropicMessages.StreamDecoder()
            var deltas: [Generation.Delta] = []
            for piece in pieces { try decoder.decode(piece, into: &deltas) }
            try decoder.finish(into: &deltas)
            #expect(coalesced(deltas) == Self.expectedDeltas)
        }
    }

    @Test func upstreamErrorEventAndTruncation() throws {
        var decoder = AnthropicMessages.StreamDecoder()
        var deltas: [Generation.Delta] = []
        try decoder.decode(
            buffer("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"), into: &deltas)
        guard case .error(let error)? = deltas.last else { Issue.record("expected an error delta"); return }
        #expect(error.status == 503)
        #expect(error.message.contains("Overloaded"))

        var truncated = AnthropicMessages.StreamDecoder()
        try truncated.decode(buffer(String(Self.upstreamSSE.prefix(400))), into: &deltas)
        #expect(throws: APIError.truncatedStream) { try truncated.finish(into: &deltas) }
    }

    @Test func anthropicUpstreamToAnthropicClientReproducesTheBlocks() throws {
        // Pass the decoded deltas straight back out: the client sees the upstream's block structure.
        var decoder = AnthropicMessages.StreamDecoder()
        var deltas: [Generation.Delta] = []
        try decoder.decode(buffer(Self.upstreamSSE), into: &deltas)
        let events = try namedEvents(encodeAnthropic(deltas))
        #expect(
            events.map(\.name) == [
                "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                "content_block_start", "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta",
                "content_block_delta", "content_block_stop", "message_delta", "message_stop",
            ])
        #expect(events[0].data["message"]?["usage"] == ["input_tokens": 25, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 0, "output_tokens": 1])
        #expect(events[9].data["content_block"]?["id"] == "toolu_7")
        #expect(events.last?.name == "message_stop")
    }
}
