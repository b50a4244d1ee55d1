import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SluiceCore
import SluiceMockUpstream
import Testing

/// The mock upstream's deterministic pieces, and its Anthropic and recording routes in process.
@Suite struct MockUpstreamTests {
    static let weather: JSONValue = [
        "type": "object", "properties": ["city": ["type": "string"], "unit": ["type": "string"]], "required": ["city", "unit"],
    ]

    @Test func triggersIncludeToolAndThink() {
        let triggers = MockBehaviour.Triggers("weather? [[tool]] [[think]]")
        #expect(triggers.tool && triggers.think && !triggers.die && !triggers.error)
        #expect(!MockBehaviour.Triggers("plain").tool)
    }

    @Test func argumentsSetEveryRequiredParameterToMock() {
        #expect(MockBehaviour.arguments(forSchema: Self.weather) == ["city": "mock", "unit": "mock"])
        #expect(MockBehaviour.arguments(forSchema: nil) == [:])
        let tool = Tool(function: .init(name: "get_weather", parameters: Self.weather))
        #expect(MockBehaviour.toolCall(for: [tool])?.name == "get_weather")
        #expect(MockBehaviour.toolCall(for: [tool])?.arguments == ["city": "mock", "unit": "mock"])
    }

    @Test func argumentPiecesAreAtLeastThreeAndJoinToTheText() {
        let json = #"{"city":"mock","unit":"mock"}"#
        let pieces = MockBehaviour.argumentPieces(of: json)
        #expect(pieces.count >= 3)
        #expect(pieces.joined() == json)
        #expect(MockBehaviour.argumentPieces(of: "{}").joined() == "{}")
        #expect(MockBehaviour.argumentPieces(of: "{\"é\":1}").joined() == "{\"é\":1}")
    }

    @Test func thinkingNamesThePrompt() {
        #expect(MockBehaviour.thinkingText(about: "why [[think]]") == "Thinking about: why [[think]]")
    }

    // MARK: Routes

    func app(_ configure: (inout MockUpstreamOptions) -> Void = { _ in }) -> some ApplicationProtocol {
        var options = MockUpstreamOptions()
        configure(&options)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return buildMockUpstream(options: options, logger: logger)
    }

    static func messages(_ prompt: String, stream: Bool = false, tools: Bool = false, model: String = "llama3.2") -> ByteBuffer {
        var body: JSONValue = [
            "model": .string(model), "max_tokens": 100, "stream": .bool(stream), "messages": [["role": "user", "content": .string(prompt)]],
        ]
        if tools, case .object(var members) = body {
            members["tools"] = [["name": "get_weather", "description": "Weather", "input_schema": weather]]
            body = .object(members)
        }
        return ByteBuffer(data: try! JSONEncoder().encode(body))
    }

    static let anthropicHeaders: HTTPFields = [
        .contentType: "application/json", HTTPField.Name("anthropic-version")!: "2023-06-01", HTTPField.Name("x-api-key")!: "sk-ant-secret",
    ]

    func json(_ response: TestResponse) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
    }

    /// The `event:` names and parsed data of an SSE body.
    func events(_ response: TestResponse) throws -> [(name: String, data: JSONValue)] {
        try String(buffer: response.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { frame in
            let lines = frame.split(separator: "\n")
            let name = try #require(lines.first { $0.hasPrefix("event: ") }).dropFirst(7)
            let data = try #require(lines.first { $0.hasPrefix("data: ") }).dropFirst(6)
            return (String(name), try JSONDecoder().decode(JSONValue.self, from: Data(data.utf8)))
        }
    }

    @Test func messagesAnswersTextInAnthropicsShape() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: Self.messages("hi there")) { response in
                #expect(response.status == .ok)
                let body = try json(response)
                #expect(body["type"] == "message")
                #expect(body["role"] == "assistant")
                #expect(body["model"] == "llama3.2")
                #expect(body["content"] == [["type": "text", "text": .string(MockBehaviour.replyText(to: "hi there"))]])
                #expect(body["stop_reason"] == "end_turn")
                #expect(body["stop_sequence"] == .null)
                #expect(body["usage"] == ["input_tokens": 2, "output_tokens": 9, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0])
            }
        }
    }

    @Test func messagesStreamsThinkingThenAToolCall() async throws {
        try await app().test(.router) { client in
            let body = Self.messages("weather [[tool]] [[think]]", stream: true, tools: true)
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: body) { response in
                #expect(response.headers[.contentType] == "text/event-stream; charset=utf-8")
                let events = try events(response)
                #expect(events.allSatisfy { $0.name == $0.data["type"]?.stringValue })
                #expect(events.prefix(3).map(\.name) == ["message_start", "ping", "content_block_start"])
                #expect(events.suffix(2).map(\.name) == ["message_delta", "message_stop"])
                #expect(
                    events[0].data["message"]?["usage"]
                        == ["input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0])
                #expect(events[2].data["content_block"] == ["type": "thinking", "thinking": ""])
                let deltas = events.filter { $0.name == "content_block_delta" }.map { $0.data }
                let thinking = deltas.compactMap { $0["delta"]?["thinking"]?.stringValue }.joined()
                #expect(thinking == MockBehaviour.thinkingText(about: "weather [[tool]] [[think]]"))
                #expect(deltas.contains { $0["delta"] == ["type": "signature_delta", "signature": "mock-signature"] })
                let toolStart = try #require(events.first { $0.data["content_block"]?["type"] == "tool_use" })
                #expect(toolStart.data["index"] == 1)
                #expect(toolStart.data["content_block"]?["input"] == [:])
                let partials = deltas.filter { $0["index"] == 1 }.compactMap { $0["delta"]?["partial_json"]?.stringValue }
                #expect(partials.count >= 4)
                let input = try JSONDecoder().decode(JSONValue.self, from: Data(partials.joined().utf8))
                #expect(input == ["city": "mock", "unit": "mock"])
                #expect(events[events.count - 2].data["delta"] == ["stop_reason": "tool_use", "stop_sequence": nil])
            }
        }
    }

    @Test func messagesWithoutTheToolTriggerAnswerText() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: Self.messages("weather", tools: true)) { response in
                let body = try json(response)
                #expect(body["content"]?.arrayValue?.first?["type"] == "text")
            }
        }
    }

    @Test func messagesErrorsHaveAnthropicsShape() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: Self.messages("hi", model: "claude-nope")) { response in
                #expect(response.status == .notFound)
                let body = try json(response)
                #expect(body == ["type": "error", "error": ["type": "not_found_error", "message": "model: claude-nope"]])
            }
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: Self.messages("hi [[error]]")) { response in
                #expect(response.status == .internalServerError)
                let body = try json(response)
                #expect(body["error"]?["type"] == "api_error")
            }
            let noMaxTokens = ByteBuffer(string: #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#)
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: noMaxTokens) { response in
                #expect(response.status == .badRequest)
                let body = try json(response)
                #expect(body["error"] == ["type": "invalid_request_error", "message": "max_tokens: Field required"])
            }
            try await client.execute(uri: "/v1/messages/count_tokens", method: .post, headers: Self.anthropicHeaders, body: noMaxTokens) { response in
                let body = try json(response)
                #expect(body == ["input_tokens": 1])
            }
        }
    }

    @Test func aConfiguredKeyIsRequired() async throws {
        try await app { $0.anthropicAPIKey = "sk-ant-secret" }.test(.router) { client in
            try await client.execute(uri: "/v1/messages", method: .post, headers: [.contentType: "application/json"], body: Self.messages("hi")) { response in
                #expect(response.status == .unauthorized)
                let body = try json(response)
                #expect(body["error"] == ["type": "authentication_error", "message": "x-api-key header is required"])
            }
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: Self.messages("hi")) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func requestsAreRecordedWithCredentialsMaskedAndResetClearsThem() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/messages", method: .post, headers: Self.anthropicHeaders, body: Self.messages("hi")) { _ in }
            try await client.execute(uri: "/api/tags", method: .get, headers: [.authorization: "Bearer x", HTTPField.Name("x-other")!: "no"]) { _ in }
            try await client.execute(uri: "/mock/requests", method: .get) { response in
                let recorded = try #require(try json(response).arrayValue)
                #expect(recorded.count == 2)
                #expect(recorded[0]["path"] == "/v1/messages")
                #expect(recorded[0]["headers"] == ["anthropic-version": "2023-06-01", "x-api-key": "set", "content-type": "application/json"])
                #expect(recorded[0]["body"]?["max_tokens"] == 100)
                #expect(recorded[1] == ["path": "/api/tags", "headers": ["authorization": "set"], "body": nil])
            }
            try await client.execute(uri: "/mock/reset", method: .post) { _ in }
            try await client.execute(uri: "/mock/requests", method: .get) { response in
                let body = try json(response)
                #expect(body == [])
            }
        }
    }

    @Test func onlyTheLastFiftyRequestsAreKept() async throws {
        try await app().test(.router) { client in
            for i in 0..<55 {
                try await client.execute(uri: "/api/version?n=\(i)", method: .get) { _ in }
            }
            try await client.execute(uri: "/mock/requests", method: .get) { response in
                let body = try json(response)
                #expect(body.arrayValue?.count == 50)
            }
        }
    }
}
