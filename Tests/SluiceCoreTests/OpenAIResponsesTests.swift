import NIOCore
import Testing
@testable import SluiceCore

@Suite struct ResponsesRequestTests {
    /// What Codex CLI sends, trimmed: instructions, a developer note, a function round trip, reasoning, tools.
    static let codexBody = #"""
        {"model":"gpt-5-codex","instructions":"You are Codex.","stream":true,"store":false,"parallel_tool_calls":false,
         "input":[
           {"type":"message","role":"developer","content":[{"type":"input_text","text":"Sandbox: workspace-write"}]},
           {"type":"message","role":"user","content":[{"type":"input_text","text":"Fix the test."},{"type":"input_image","image_url":"data:image/jpeg;base64,/9j/AAAA","detail":"high"}]},
           {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Look at the test first."}],"encrypted_content":"gAAAA"},
           {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Reading it.","annotations":[]}]},
           {"type":"function_call","call_id":"call_A","name":"shell","arguments":"{\"command\":[\"cat\",\"t.swift\"]}"},
           {"type":"function_call","call_id":"call_B","name":"shell","arguments":"{\"command\":[\"ls\"]}"},
           {"type":"function_call_output","call_id":"call_A","output":"import Testing"},
           {"type":"function_call_output","call_id":"call_B","output":"t.swift"},
           {"role":"user","content":"Go on."}],
         "tools":[{"type":"function","name":"shell","description":"Runs a command","strict":false,
                   "parameters":{"type":"object","properties":{"command":{"type":"array","items":{"type":"string"}}},"required":["command"]}},
                  {"type":"web_search"}],
         "tool_choice":"auto","reasoning":{"effort":"high","summary":"auto"},"text":{"verbosity":"low"},
         "include":["reasoning.encrypted_content"],"prompt_cache_key":"k1","max_output_tokens":4000,
         "metadata":{"session":"s1"},"user":"dev","previous_response_id":"resp_prev"}
        """#

    @Test func codexRequestDecodes() throws {
        let request = try OpenAIResponses.decodeRequest(buffer(Self.codexBody))
        #expect(request.model == "gpt-5-codex")
        #expect(request.origin == .openAIResponses)
        #expect(request.system == [.text("You are Codex.")])
        #expect(request.stream)
        #expect(request.store == false)
        #expect(request.parallelToolCalls == false)
        #expect(request.sampling.maxTokens == 4000)
        #expect(request.reasoning == .effort(.high))
        #expect(request.toolChoice == .auto)
        #expect(request.user == "dev")
        #expect(request.metadata == ["session": "s1"])
        #expect(request.previousResponseID == "resp_prev")
        #expect(
            request.extensions == [
                "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k1", "reasoning.summary": "auto", "text.verbosity": "low",
            ])
        // What Codex sends to steer serving is advisory; nothing in its request changes the answer unserved.
        let unserved = OpenAIResponses.unservedFields(request)
        #expect(unserved.advisory == ["include", "prompt_cache_key", "reasoning.summary", "text.verbosity"] && unserved.refused.isEmpty)
        #expect(unserved.refusal(model: "m") == nil)
        #expect(unserved.ignoredHeader == "include, prompt_cache_key, reasoning.summary, text.verbosity")
        var capped = request
        capped.extensions["max_tool_calls"] = 2
        #expect(OpenAIResponses.unservedFields(capped).refused == ["max_tool_calls"])
        #expect(OpenAIResponses.unservedFields(capped).refusal(model: "m")?.param == "max_tool_calls")
        // Chat bodies: members the chat request type does not decode, sorted into the two kinds.
        let chat = ChatCompletionRequest.unservedFields(
            in: buffer(#"{"model":"m","messages":[],"top_k":3,"store":true,"bogus":1,"prompt_cache_key":"k"}"#))
        #expect(chat == UnservedFields(["bogus", "prompt_cache_key", "store"], advisory: ChatCompletionRequest.advisoryFields))
        #expect(chat.refused == ["bogus"] && chat.advisory == ["prompt_cache_key", "store"])
        #expect(request.messages.map(\.role) == [.system, .user, .assistant, .tool, .user])
        #expect(request.messages[0].content == [.text("Sandbox: workspace-write")])
        #expect(request.messages[1].content[1] == .image(.init(source: .base64(mediaType: "image/jpeg", data: "/9j/AAAA"), detail: "high")))
        // Reasoning, text and both calls are one assistant turn.
        #expect(
            request.messages[2].content == [
                .reasoning(.init(text: "Look at the test first.", signature: "gAAAA", extensions: ["id": "rs_1"])),
                .text("Reading it."),
                .toolCall(.init(id: "call_A", name: "shell", arguments: #"{"command":["cat","t.swift"]}"#)),
                .toolCall(.init(id: "call_B", name: "shell", arguments: #"{"command":["ls"]}"#)),
            ])
        #expect(
            request.messages[3].content == [
                .toolResult(.init(callID: "call_A", name: "shell", content: [.text("import Testing")])),
                .toolResult(.init(callID: "call_B", name: "shell", content: [.text("t.swift")])),
            ])
        #expect(request.tools[0] == Generation.Tool(name: "shell", description: "Runs a command", parameters: request.tools[0].parameters, strict: false))
        #expect(request.tools[0].parameters?["required"] == ["command"])
        #expect(request.tools[1].kind == "web_search")
    }

    @Test func stringInputAndJSONSchemaFormat() throws {
        let request = try OpenAIResponses.decodeRequest(
            buffer(
                #"{"model":"m","input":"Hello","text":{"format":{"type":"json_schema","name":"out","schema":{"type":"object"},"strict":true}},"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":{"type":"function","name":"f"},"temperature":0.2}"#
            ))
        #expect(request.messages == [Generation.Message(role: .user, content: [.text("Hello")])])
        #expect(request.responseFormat == .jsonSchema(name: "out", schema: ["type": "object"], strict: true, description: nil))
        #expect(request.toolChoice == .tool(name: "f"))
        #expect(request.sampling.temperature == 0.2)
        #expect(!request.stream)
        // A choice of a tool the request does not offer is refused here, whichever upstream would get it.
        #expect(decodeError(#"{"model":"m","input":"Hello","tool_choice":{"type":"function","name":"f"}}"#)?.param == "tool_choice")
    }

    func decodeError(_ body: String) -> APIError? {
        do {
            _ = try OpenAIResponses.decodeRequest(buffer(body))
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        (#"{"input":"x"}"#, "model", "missing_field"),
        (#"{"model":"m"}"#, "input", "missing_field"),
        (#"{"model":"m","input":5}"#, "input", "invalid_type"),
        (#"{"model":"m","input":[{"type":"item_reference","id":"x"}]}"#, "input[0].type", "invalid_value"),
        (#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}"#, "input[0].content[0].type", "invalid_value"),
        (#"{"model":"m","input":[{"role":"wizard","content":"x"}]}"#, "input[0].role", "invalid_value"),
        (#"{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}"#, "input[0].call_id", "missing_field"),
        (#"{"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}"#, "input[0].output", "missing_field"),
        (#"{"model":"m","input":"x","max_output_tokens":0}"#, "max_output_tokens", "invalid_value"),
        (#"{"model":"m","input":"x","max_output_tokens":"many"}"#, "max_output_tokens", "invalid_type"),
        (#"{"model":"m","input":"x","temperature":3}"#, "temperature", "invalid_value"),
        (#"{"model":"m","input":"x","tool_choice":"sometimes"}"#, "tool_choice", "invalid_value"),
        (#"{"model":"m","input":"x","text":{"format":{"type":"yaml"}}}"#, "text.format.type", "invalid_value"),
        (#"{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"n"}}}"#, "text.format.schema", "missing_field"),
        (#"{"model":"m","input":"x","reasoning":{"effort":"extreme"}}"#, "reasoning.effort", "invalid_value"),
        (#"{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":"none"}]}"#, "tools[0].parameters", "invalid_type"),
        (#"{"model":"m","input":"x","metadata":{"a":1}}"#, "metadata.a", "invalid_type"),
        (#"{"model":"m","input":"x","stream":1}"#, "stream", "invalid_type"),
    ])
    func badRequestsNameTheField(body: String, param: String, code: String) {
        let error = decodeError(body)
        #expect(error?.status == 400)
        #expect(error?.param == param)
        #expect(error?.code == code)
    }
}

@Suite struct ResponsesAnswerTests {
    @Test func answerEncodesAsAResponse() throws {
        let answer = Generation.Answer(
            id: "abc", model: "gpt-test",
            content: [
                .reasoning(.init(text: "think")), .text("Hello "), .text("world"),
                .toolCall(.init(id: "x1", name: "f", arguments: #"{"a":1}"#)),
            ],
            stopReason: .toolUse, usage: .init(promptTokens: 10, completionTokens: 5, cachedPromptTokens: 4, reasoningTokens: 2))
        let value = try json(OpenAIResponses.encodeAnswer(answer, createdAt: 1_790_000_000))
        #expect(
            value
                == [
                    "id": "resp_abc", "object": "response", "created_at": 1_790_000_000, "status": "completed", "error": nil,
                    "incomplete_details": nil, "model": "gpt-test", "parallel_tool_calls": true,
                    "output": [
                        ["id": "rs_abc_0", "type": "reasoning", "summary": [["type": "summary_text", "text": "think"]]],
                        [
                            "id": "msg_abc_1", "type": "message", "status": "completed", "role": "assistant",
                            "content": [["type": "output_text", "text": "Hello world", "annotations": []]],
                        ],
                        ["id": "fc_abc_2", "type": "function_call", "status": "completed", "call_id": "call_x1", "name": "f", "arguments": #"{"a":1}"#],
                    ],
                    "usage": [
                        "input_tokens": 10, "input_tokens_details": ["cached_tokens": 4], "output_tokens": 5,
                        "output_tokens_details": ["reasoning_tokens": 2], "total_tokens": 15,
                    ],
                ])
    }

    @Test func maxTokensIsIncompleteWithZeroUsage() throws {
        let answer = Generation.Answer(id: "resp_1", model: "m", content: [.text("cut")], stopReason: .maxTokens)
        let value = try json(OpenAIResponses.encodeAnswer(answer, createdAt: 1))
        #expect(value["status"] == "incomplete")
        #expect(value["incomplete_details"] == ["reason": "max_output_tokens"])
        #expect(value["output"]?.arrayValue?[0]["status"] == "incomplete")
        #expect(value["usage"]?["total_tokens"] == 0)
        #expect(value["usage"]?["output_tokens_details"] == ["reasoning_tokens": 0])
    }
}

@Suite struct ResponsesStreamEncoderTests {
    @Test func reasoningTextAndCallMakeTheDocumentedSequence() throws {
        let events = try namedEvents(
            encodeResponses([
                .messageStart(id: nil, model: nil, usage: nil), .reasoning("Plan"), .text("Hi"), .text("!"),
                .toolCallStart(index: 0, id: "call_1", name: "shell"), .toolCallArguments(index: 0, #"{"c":"#), .toolCallArguments(index: 0, "1}"),
                .finish(.toolUse, stopSequence: nil, usage: .init(promptTokens: 3, completionTokens: 4)),
            ]))
        #expect(
            events.map(\.name) == [
                "response.created", "response.in_progress",
                "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
                "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                "response.output_text.done", "response.content_part.done", "response.output_item.done",
                "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                "response.function_call_arguments.done", "response.output_item.done",
                "response.completed",
            ])
        #expect(events.map(\.data["sequence_number"]) == (0..<events.count).map { .int($0) })
        #expect(events.allSatisfy { $0.data["type"] == .string($0.name) })
        #expect(events[0].data["response"]?["status"] == "in_progress")
        #expect(events[0].data["response"]?["id"] == "resp_test")
        #expect(events[8].data["item"] == ["id": "msg_test_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []])
        #expect(
            events[10].data
                == [
                    "type": "response.output_text.delta", "sequence_number": 10, "item_id": "msg_test_1", "output_index": 1, "content_index": 0,
                    "delta": "Hi", "logprobs": [],
                ])
        #expect(events[12].data["text"] == "Hi!")
        #expect(events[13].data["part"] == ["type": "output_text", "text": "Hi!", "annotations": []])
        #expect(
            events[15].data["item"]
                == ["id": "fc_test_2", "type": "function_call", "status": "in_progress", "call_id": "call_1", "name": "shell", "arguments": ""])
        #expect(events[18].data["arguments"] == #"{"c":1}"#)
        #expect(events[19].data["item"]?["status"] == "completed")
        let final = try #require(events.last?.data["response"])
        #expect(final["status"] == "completed")
        #expect(final["output"]?.arrayValue?.count == 3)
        #expect(final["usage"]?["total_tokens"] == 7)
    }

    @Test func maxTokensEndsIncompleteAndFailureEndsFailed() throws {
        let incomplete = try namedEvents(encodeResponses([.text("a"), .finish(.maxTokens, stopSequence: nil, usage: nil)]))
        #expect(incomplete.last?.name == "response.incomplete")
        #expect(incomplete.last?.data["response"]?["incomplete_details"] == ["reason": "max_output_tokens"])

        var encoder = OpenAIResponses.StreamEncoder(id: "r", model: "m", createdAt: 1)
        var out = ByteBuffer()
        encoder.write(.text("partial"), into: &out)
        encoder.fail(.upstreamTimeout(), into: &out)
        encoder.write(.text("ignored"), into: &out)
        let failed = try namedEvents(String(buffer: out))
        #expect(failed.last?.name == "response.failed")
        #expect(failed.last?.data["response"]?["status"] == "failed")
        #expect(failed.last?.data["response"]?["error"]?["message"] == "The upstream server did not answer in time.")
        #expect(failed.map(\.data["sequence_number"]) == (0..<failed.count).map { .int($0) })
    }
}
