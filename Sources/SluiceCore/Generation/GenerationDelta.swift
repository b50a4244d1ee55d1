extension Generation {
    /// One step of a streamed answer, what upstream stream decoders produce and client stream encoders consume.
    ///
    /// A well-formed stream is `messageStart`, then parts, then `finish` (or `error`). Within it a part runs from
    /// its first delta to `partStop` or to the first delta of another kind of part; encoders open and close their
    /// dialect's blocks from that, so decoders need not send `partStop` at all.
    public enum Delta: Sendable, Equatable {
        /// The answer began. `id` and `model` when the upstream says them; `usage` when it already counts the
        /// prompt (Anthropic does, in `message_start`).
        case messageStart(id: String?, model: String?, usage: Usage?)
        /// More answer text.
        case text(String)
        /// More reasoning text.
        case reasoning(String)
        /// The reasoning part's signature (Anthropic `signature_delta`), sent once, after its text.
        case reasoningSignature(String)
        /// A tool call begins. `index` counts tool calls from 0 within the answer (OpenAI `tool_calls[].index`).
        case toolCallStart(index: Int, id: String, name: String)
        /// More of tool call `index`'s arguments JSON text; concatenated in order they make the arguments.
        case toolCallArguments(index: Int, String)
        /// The current part is complete.
        case partStop
        /// The answer is complete. `usage` holds the final counts when known.
        case finish(StopReason, stopSequence: String?, usage: Usage?)
        /// The upstream failed mid-answer; nothing follows.
        case error(APIError)
    }
}
