import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOFoundationCompat
import SluiceCore

/// Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`).
///
/// Requests are read and answers written as plain JSON here, on purpose apart from SluiceCore's Anthropic dialect: the
/// mock stands in for the real server, so a bug in the gateway's own encoders or decoders cannot hide behind a mock
/// that shares them.
extension MockServer {
    /// What the mock needs from a Messages request.
    struct AnthropicRequest {
        var model: String
        var stream: Bool
        /// The text blocks of the last user message, joined by newlines: the prompt the triggers and the reply use.
        var lastUserText: String
        /// Every text of the system prompt and the messages (tool results included), for the token count.
        var texts: [String]
        /// The declared tools, in order, with their input schemas.
        var tools: [(name: String, schema: JSONValue?)]
    }

    /// A request the API refuses, with Anthropic's error type.
    struct AnthropicRejection: Error {
        var status: Int
        var message: String
    }

    static let anthropicAPIKeyHeader = HTTPField.Name("x-api-key")!
    static let anthropicRequestID = "req_mock"
    static let requestIDHeader = HTTPField.Name("request-id")!

    func anthropicMessages(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let body: AnthropicRequest
        do {
            body = try await anthropicRequest(request, context: context, counting: false)
        } catch let rejection as AnthropicRejection {
            return Self.anthropicError(status: rejection.status, message: rejection.message)
        }
        let triggers = MockBehaviour.Triggers(body.lastUserText)
        if triggers.error { return Self.anthropicError(status: 500, message: "Internal server error") }
        try await delayFirstByte()

        let text = MockBehaviour.replyText(to: body.lastUserText)
        let tool = triggers.tool ? body.tools.first.map { (id: "toolu_mock_0", name: $0.name, input: MockBehaviour.arguments(forSchema: $0.schema)) } : nil
        let pieces = tool == nil ? MockBehaviour.pieces(of: text) : []
        let thinking = triggers.think ? MockBehaviour.thinkingText(about: body.lastUserText) : nil
        let thinkingPieces = thinking.map(MockBehaviour.pieces) ?? []
        let inputTokens = MockBehaviour.tokenCount(body.texts)
        let outputTokens = (tool == nil ? max(1, pieces.count) : 1) + thinkingPieces.count
        let id = "msg_mock"
        // Like Anthropic: `input_tokens` leaves out what was read from or written to the prompt cache.
        let cacheRead = triggers.cached ? MockBehaviour.cachedPromptTokens : 0
        let cacheWrite = triggers.cached ? MockBehaviour.cacheWriteTokens : 0
        let stopReason: JSONValue = tool == nil ? "end_turn" : "tool_use"

        guard body.stream else {
            if triggers.die { return dropConnection() }
            var content: [JSONValue] = []
            if let thinking {
                content.append(["type": "thinking", "thinking": .string(thinking), "signature": .string(MockBehaviour.thinkingSignature)])
            }
            if let tool {
                content.append(["type": "tool_use", "id": .string(tool.id), "name": .string(tool.name), "input": tool.input])
            } else {
                content.append(["type": "text", "text": .string(text)])
            }
            let message: JSONValue = [
                "id": .string(id), "type": "message", "role": "assistant", "model": .string(body.model), "content": .array(content),
                "stop_reason": stopReason, "stop_sequence": nil,
                "usage": [
                    "input_tokens": .int(inputTokens), "output_tokens": .int(outputTokens), "cache_read_input_tokens": .int(cacheRead),
                    "cache_creation_input_tokens": .int(cacheWrite),
                ],
            ]
            var response = try json(message)
            response.headers[Self.requestIDHeader] = Self.anthropicRequestID
            return response
        }

        var events: [JSONValue] = [
            [
                "type": "message_start",
                "message": [
                    "id": .string(id), "type": "message", "role": "assistant", "model": .string(body.model), "content": [],
                    "stop_reason": nil, "stop_sequence": nil,
                    "usage": [
                        "input_tokens": .int(inputTokens), "output_tokens": 1, "cache_read_input_tokens": .int(cacheRead),
                        "cache_creation_input_tokens": .int(cacheWrite),
                    ],
                ],
            ],
            ["type": "ping"],
        ]
        var index = 0
        func block(_ start: JSONValue, _ deltas: [JSONValue]) {
            events.append(["type": "content_block_start", "index": .int(index), "content_block": start])
            events += deltas.map { delta -> JSONValue in ["type": "content_block_delta", "index": .int(index), "delta": delta] }
            events.append(["type": "content_block_stop", "index": .int(index)])
            index += 1
        }
        if thinking != nil {
            let deltas: [JSONValue] = thinkingPieces.map { piece -> JSONValue in ["type": "thinking_delta", "thinking": .string(piece)] }
            block(["type": "thinking", "thinking": ""], deltas + [["type": "signature_delta", "signature": .string(MockBehaviour.thinkingSignature)]])
        }
        if let tool {
            // Like Anthropic: the block starts with an empty input, then the JSON text follows in pieces, the first empty.
            let json = String(decoding: try Self.encoder.encode(tool.input), as: UTF8.self)
            let deltas = ([""] + MockBehaviour.argumentPieces(of: json)).map { piece -> JSONValue in ["type": "input_json_delta", "partial_json": .string(piece)] }
            block(["type": "tool_use", "id": .string(tool.id), "name": .string(tool.name), "input": [:]], deltas)
        } else {
            // `[[flood]]` repeats the text deltas only: the stream keeps its one message_start and message_stop.
            let sent = triggers.flood ? Array(repeating: pieces, count: 500).flatMap { $0 } : pieces
            block(["type": "text", "text": ""], sent.map { piece -> JSONValue in ["type": "text_delta", "text": .string(piece)] })
        }
        events.append(["type": "message_delta", "delta": ["stop_reason": stopReason, "stop_sequence": nil], "usage": ["output_tokens": .int(outputTokens)]])
        events.append(["type": "message_stop"])

        var streamed = triggers
        streamed.flood = false
        var response = stream(try events.map(anthropicEvent), contentType: "text/event-stream; charset=utf-8", triggers: streamed)
        response.headers[.cacheControl] = "no-cache"
        response.headers[Self.requestIDHeader] = Self.anthropicRequestID
        return response
    }

    func anthropicCountTokens(_ request: Request, context: BasicRequestContext) async throws -> Response {
        do {
            let body = try await anthropicRequest(request, context: context, counting: true)
            return try json(["input_tokens": .int(MockBehaviour.tokenCount(body.texts))] as JSONValue)
        } catch let rejection as AnthropicRejection {
            return Self.anthropicError(status: rejection.status, message: rejection.message)
        }
    }

    /// Reads and checks a Messages request the way the API does: the key (when the mock has one), then the body's
    /// required fields, then the model.
    func anthropicRequest(_ request: Request, context: BasicRequestContext, counting: Bool) async throws -> AnthropicRequest {
        if let key = options.anthropicAPIKey {
            // The key comes as `x-api-key`, or as `Authorization: Bearer` (how the Python SDK sends it since 2.x).
            let bearer = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
            guard let sent = request.headers[Self.anthropicAPIKeyHeader] ?? bearer else {
                throw AnthropicRejection(status: 401, message: "x-api-key header is required")
            }
            guard sent == key else { throw AnthropicRejection(status: 401, message: "invalid x-api-key") }
        }
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        guard let body = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: buffer)), body.objectValue != nil else {
            throw AnthropicRejection(status: 400, message: "There was an error parsing the body of your request: expected a JSON object")
        }
        guard let model = body["model"]?.stringValue else { throw AnthropicRejection(status: 400, message: "model: Field required") }
        guard let messages = body["messages"]?.arrayValue else { throw AnthropicRejection(status: 400, message: "messages: Field required") }
        if !counting, body["max_tokens"]?.doubleValue == nil {
            throw AnthropicRejection(status: 400, message: "max_tokens: Field required")
        }
        var texts = Self.anthropicTexts(body["system"])
        var lastUserText = ""
        for (i, message) in messages.enumerated() {
            guard let role = message["role"]?.stringValue, role == "user" || role == "assistant" else {
                throw AnthropicRejection(status: 400, message: "messages.\(i).role: Input should be 'user' or 'assistant'")
            }
            guard let content = message["content"], content.stringValue != nil || content.arrayValue != nil else {
                throw AnthropicRejection(status: 400, message: "messages.\(i).content: Field required")
            }
            let messageTexts = Self.anthropicTexts(content)
            texts += messageTexts
            if role == "user" {
                lastUserText = content.stringValue ?? (content.arrayValue ?? []).compactMap { $0["type"] == "text" ? $0["text"]?.stringValue : nil }.joined(separator: "\n")
            }
        }
        guard resolve(model) != nil else { throw AnthropicRejection(status: 404, message: "model: \(model)") }
        let tools = (body["tools"]?.arrayValue ?? []).compactMap { tool in tool["name"]?.stringValue.map { (name: $0, schema: tool["input_schema"]) } }
        return AnthropicRequest(model: model, stream: body["stream"] == .bool(true), lastUserText: lastUserText, texts: texts, tools: tools)
    }

    /// The texts in a system prompt or message content: a string, or the text of its text blocks and tool results.
    static func anthropicTexts(_ content: JSONValue?) -> [String] {
        if let text = content?.stringValue { return [text] }
        return (content?.arrayValue ?? []).flatMap { block -> [String] in
            switch block["type"]?.stringValue ?? "" {
            case "text": block["text"]?.stringValue.map { [$0] } ?? []
            case "tool_result": anthropicTexts(block["content"])
            default: []
            }
        }
    }

    /// One named server-sent event, `event: <type>` then its data, as Anthropic frames them.
    func anthropicEvent(_ value: JSONValue) throws -> ByteBuffer {
        var buffer = ByteBuffer(string: "event: \(value["type"]?.stringValue ?? "message")\ndata: ")
        var json = try Self.encoder.encodeAsByteBuffer(value, allocator: ByteBufferAllocator())
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }

    /// Anthropic's error shape, its type following the status as the API's does.
    static func anthropicError(status: Int, message: String) -> Response {
        let type =
            switch status {
            case 400: "invalid_request_error"
            case 401: "authentication_error"
            case 403: "permission_error"
            case 404: "not_found_error"
            case 413: "request_too_large"
            case 429: "rate_limit_error"
            case 529: "overloaded_error"
            default: "api_error"
            }
        let body: JSONValue = ["type": "error", "error": ["type": .string(type), "message": .string(message)]]
        return Response(
            status: .init(code: status),
            headers: [.contentType: "application/json", requestIDHeader: anthropicRequestID],
            body: .init(byteBuffer: (try? encoder.encodeAsByteBuffer(body, allocator: ByteBufferAllocator())) ?? ByteBuffer()))
    }
}
