import NIOCore

extension AnthropicMessages {
    /// Encodes a canonical answer as a Messages response body:
    /// `{"id":"msg_…","type":"message","role":"assistant","model",…,"content":[…],"stop_reason",…,"stop_sequence",…,
    /// "usage":{"input_tokens","output_tokens","cache_read_input_tokens","cache_creation_input_tokens"}}`.
    ///
    /// Tool-call ids get the `toolu_` prefix when they lack it (the client sends them back verbatim, so the mapping
    /// needs no memory); arguments that are not a JSON object become `{}`, since `input` must be an object.
    public static func encodeAnswer(_ answer: Generation.Answer) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(256 + answer.text.utf8.count)
        out.writeStaticString(#"{"id":"#)
        out.writeJSONString(prefixed(answer.id, "msg_"))
        out.writeStaticString(#","type":"message","role":"assistant","model":"#)
        out.writeJSONString(answer.model)
        out.writeStaticString(#","content":["#)
        var first = true
        for part in answer.content {
            switch part {
            case .text(let text):
                comma(&first, &out)
                out.writeStaticString(#"{"type":"text","text":"#)
                out.writeJSONString(text.text)
                out.writeStaticString("}")
            case .toolCall(let call):
                comma(&first, &out)
                out.writeStaticString(#"{"type":"tool_use","id":"#)
                out.writeJSONString(toolUseID(call.id))
                out.writeStaticString(#","name":"#)
                out.writeJSONString(call.name)
                out.writeStaticString(#","input":"#)
                out.writeJSONValue(inputObject(call.arguments))
                out.writeStaticString("}")
            case .reasoning(let reasoning):
                comma(&first, &out)
                if let data = reasoning.redactedData {
                    out.writeStaticString(#"{"type":"redacted_thinking","data":"#)
                    out.writeJSONString(data)
                } else {
                    out.writeStaticString(#"{"type":"thinking","thinking":"#)
                    out.writeJSONString(reasoning.text)
                    out.writeStaticString(#","signature":"#)
                    out.writeJSONString(reasoning.signature ?? "")
                }
                out.writeStaticString("}")
            case .image, .toolResult:
                // Inputs only: an answer never holds them.
                continue
            }
        }
        out.writeStaticString(#"],"stop_reason":"#)
        out.writeJSONString(stopReason(answer.stopReason))
        out.writeStaticString(#","stop_sequence":"#)
        out.writeJSONStringOrNull(answer.stopReason == .stopSequence ? answer.stopSequence : nil)
        out.writeStaticString(#","usage":"#)
        writeUsage(answer.usage, into: &out)
        out.writeStaticString("}")
        return out
    }

    /// `{"input_tokens":…,"cache_creation_input_tokens":…,"cache_read_input_tokens":…,"output_tokens":…}`;
    /// Anthropic's input count excludes cached tokens, the canonical one includes them.
    static func writeUsage(_ usage: Generation.Usage, into out: inout ByteBuffer) {
        out.writeStaticString(#"{"input_tokens":"#)
        out.writeJSONInt(usage.uncachedPromptTokens)
        out.writeStaticString(#","cache_creation_input_tokens":"#)
        out.writeJSONInt(usage.cacheCreationTokens)
        out.writeStaticString(#","cache_read_input_tokens":"#)
        out.writeJSONInt(usage.cachedPromptTokens)
        out.writeStaticString(#","output_tokens":"#)
        out.writeJSONInt(usage.completionTokens)
        out.writeStaticString("}")
    }

    /// Anthropic's `stop_reason` for a canonical one.
    public static func stopReason(_ reason: Generation.StopReason) -> String {
        switch reason {
        case .endTurn, .error: "end_turn"
        case .maxTokens: "max_tokens"
        case .stopSequence: "stop_sequence"
        case .toolUse: "tool_use"
        case .contentFilter: "refusal"
        case .other(let s): s
        }
    }

    /// The canonical stop reason for Anthropic's `stop_reason`.
    public static func canonicalStopReason(_ reason: String?) -> Generation.StopReason {
        switch reason {
        case nil, "end_turn": .endTurn
        case "max_tokens": .maxTokens
        case "stop_sequence": .stopSequence
        case "tool_use": .toolUse
        case "refusal": .contentFilter
        case let other?: .other(other)
        }
    }

    static func toolUseID(_ id: String) -> String { prefixed(id, "toolu_") }

    static func inputObject(_ arguments: String) -> JSONValue {
        if case .object(let members)? = JSONValue(jsonText: arguments) { return .object(members) }
        return .object([:])
    }

    static func comma(_ first: inout Bool, _ out: inout ByteBuffer) {
        if first { first = false } else { out.writeStaticString(",") }
    }
}

/// `id` with `prefix` in front unless it already starts with it: each dialect's ids carry its own prefix.
func prefixed(_ id: String, _ prefix: String) -> String {
    id.hasPrefix(prefix) ? id : prefix + id
}
