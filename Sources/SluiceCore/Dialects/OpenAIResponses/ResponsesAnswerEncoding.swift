import NIOCore

extension OpenAIResponses {
    /// One item of a Response's `output`, as the encoders build it up.
    struct OutputItem: Sendable {
        enum Kind: Sendable {
            case message(text: String)
            case functionCall(callID: String, name: String, arguments: String)
            case reasoning(text: String, encrypted: String?)
        }

        var id: String
        var kind: Kind
    }

    /// The identity of one Response: its id (`resp_…`), model and creation time (Unix seconds).
    struct ResponseHeader: Sendable {
        var id: String
        var model: String
        var createdAt: Int

        /// `msg_`/`fc_`/`rs_` + the response id's suffix + the item's output index: unique within the response and
        /// stable, so a replayed answer names its items the same way.
        func itemID(_ prefix: String, _ index: Int) -> String {
            let base = id.hasPrefix("resp_") ? id.dropFirst(5) : Substring(id)
            return "\(prefix)\(base)_\(index)"
        }
    }

    /// Encodes a canonical answer as a Response object: `{"id":"resp_…","object":"response","created_at":…,
    /// "status":"completed"|"incomplete","model":…,"output":[message / function_call / reasoning items],
    /// "usage":{…},"incomplete_details":…}`.
    ///
    /// `createdAt` is Unix seconds. Tool-call ids get the `call_` prefix when they lack it; usage is always present,
    /// zero where the upstream did not count.
    public static func encodeAnswer(_ answer: Generation.Answer, createdAt: Int) -> ByteBuffer {
        let header = ResponseHeader(id: prefixed(answer.id, "resp_"), model: answer.model, createdAt: createdAt)
        var items: [OutputItem] = []
        for part in answer.content {
            switch part {
            case .text(let text):
                if case .message(let previous)? = items.last?.kind {
                    items[items.count - 1].kind = .message(text: previous + text.text)
                } else {
                    items.append(OutputItem(id: header.itemID("msg_", items.count), kind: .message(text: text.text)))
                }
            case .toolCall(let call):
                items.append(
                    OutputItem(
                        id: header.itemID("fc_", items.count),
                        kind: .functionCall(callID: prefixed(call.id, "call_"), name: call.name, arguments: call.arguments)))
            case .reasoning(let reasoning):
                items.append(OutputItem(id: header.itemID("rs_", items.count), kind: .reasoning(text: reasoning.text, encrypted: reasoning.signature)))
            case .image, .toolResult:
                continue
            }
        }
        var out = ByteBuffer()
        writeResponse(header, status: status(answer.stopReason), stopReason: answer.stopReason, items: items, usage: answer.usage, error: nil, into: &out)
        return out
    }

    /// `completed`, or `incomplete` when the answer was cut short.
    static func status(_ reason: Generation.StopReason) -> StaticString {
        switch reason {
        case .maxTokens, .contentFilter: "incomplete"
        case .error: "failed"
        default: "completed"
        }
    }

    static func writeResponse(
        _ header: ResponseHeader, status: StaticString, stopReason: Generation.StopReason?, items: [OutputItem], usage: Generation.Usage?,
        error: APIError?, into out: inout ByteBuffer
    ) {
        out.writeStaticString(#"{"id":"#)
        out.writeJSONString(header.id)
        out.writeStaticString(#","object":"response","created_at":"#)
        out.writeJSONInt(header.createdAt)
        out.writeStaticString(#","status":""#)
        out.writeStaticString(status)
        out.writeStaticString(#"","error":"#)
        if let error {
            out.writeStaticString(#"{"code":"#)
            out.writeJSONString(error.status == 429 ? "rate_limit_exceeded" : "server_error")
            out.writeStaticString(#","message":"#)
            out.writeJSONString(error.message)
            out.writeStaticString("}")
        } else {
            out.writeStaticString("null")
        }
        out.writeStaticString(#","incomplete_details":"#)
        switch stopReason {
        case .maxTokens?: out.writeStaticString(#"{"reason":"max_output_tokens"}"#)
        case .contentFilter?: out.writeStaticString(#"{"reason":"content_filter"}"#)
        default: out.writeStaticString("null")
        }
        out.writeStaticString(#","model":"#)
        out.writeJSONString(header.model)
        out.writeStaticString(#","output":["#)
        // A failed response's items were cut short, as were those of an answer stopped by its cap or a filter.
        let itemStatus: StaticString =
            error != nil || stopReason == .maxTokens || stopReason == .contentFilter ? "incomplete" : "completed"
        for (i, item) in items.enumerated() {
            if i > 0 { out.writeStaticString(",") }
            writeItem(item, status: itemStatus, into: &out)
        }
        out.writeStaticString(#"],"parallel_tool_calls":true,"usage":"#)
        if let usage {
            writeUsage(usage, into: &out)
        } else {
            out.writeStaticString("null")
        }
        out.writeStaticString("}")
    }

    /// An output item in its final form (`status` for message and function-call items), or as first announced
    /// (`inProgress`: empty content, empty arguments).
    static func writeItem(_ item: OutputItem, status: StaticString, inProgress: Bool = false, into out: inout ByteBuffer) {
        out.writeStaticString(#"{"id":"#)
        out.writeJSONString(item.id)
        switch item.kind {
        case .message(let text):
            out.writeStaticString(#","type":"message","status":""#)
            out.writeStaticString(inProgress ? "in_progress" : status)
            out.writeStaticString(#"","role":"assistant","content":["#)
            if !inProgress {
                out.writeStaticString(#"{"type":"output_text","annotations":[],"text":"#)
                out.writeJSONString(text)
                out.writeStaticString("}")
            }
            out.writeStaticString("]}")
        case .functionCall(let callID, let name, let arguments):
            out.writeStaticString(#","type":"function_call","status":""#)
            out.writeStaticString(inProgress ? "in_progress" : status)
            out.writeStaticString(#"","arguments":"#)
            out.writeJSONString(inProgress ? "" : arguments)
            out.writeStaticString(#","call_id":"#)
            out.writeJSONString(callID)
            out.writeStaticString(#","name":"#)
            out.writeJSONString(name)
            out.writeStaticString("}")
        case .reasoning(let text, let encrypted):
            out.writeStaticString(#","type":"reasoning","summary":["#)
            if !inProgress {
                out.writeStaticString(#"{"type":"summary_text","text":"#)
                out.writeJSONString(text)
                out.writeStaticString("}")
            }
            out.writeStaticString("]")
            if !inProgress, let encrypted {
                out.writeStaticString(#","encrypted_content":"#)
                out.writeJSONString(encrypted)
            }
            out.writeStaticString("}")
        }
    }

    /// `{"input_tokens":…,"input_tokens_details":{"cached_tokens":…},"output_tokens":…,
    /// "output_tokens_details":{"reasoning_tokens":…},"total_tokens":…}`.
    static func writeUsage(_ usage: Generation.Usage, into out: inout ByteBuffer) {
        out.writeStaticString(#"{"input_tokens":"#)
        out.writeJSONInt(usage.promptTokens)
        out.writeStaticString(#","input_tokens_details":{"cached_tokens":"#)
        out.writeJSONInt(usage.cachedPromptTokens)
        out.writeStaticString(#"},"output_tokens":"#)
        out.writeJSONInt(usage.completionTokens)
        out.writeStaticString(#","output_tokens_details":{"reasoning_tokens":"#)
        out.writeJSONInt(usage.reasoningTokens)
        out.writeStaticString(#"},"total_tokens":"#)
        out.writeJSONInt(usage.promptTokens + usage.completionTokens)
        out.writeStaticString("}")
    }
}
