import NIOCore
import Testing
@testable import SluiceCore

/// `input` cut at `offsets` (sorted byte positions): every chunking a network could produce is one of these.
func chunks(_ input: String, cutAt offsets: [Int]) -> [ByteBuffer] {
    let bytes = Array(input.utf8)
    var out: [ByteBuffer] = []
    var start = 0
    for offset in offsets + [bytes.count] where offset >= start {
        out.append(ByteBuffer(bytes: bytes[start..<offset]))
        start = offset
    }
    return out
}

/// Every two-piece split of `input`, plus one byte at a time.
func everyChunking(_ input: String) -> [[ByteBuffer]] {
    let count = input.utf8.count
    return (0...count).map { chunks(input, cutAt: [$0]) } + [chunks(input, cutAt: Array(1..<max(1, count)))]
}

/// One named SSE event of an encoder's output, its data parsed.
struct NamedEvent {
    var name: String
    var data: JSONValue
}

func namedEvents(_ text: String) throws -> [NamedEvent] {
    var decoder = SSEDecoder()
    return try decoder.feed(ByteBuffer(string: text)).map { NamedEvent(name: $0.event ?? "", data: try json($0.data)) }
}

/// Runs Ollama NDJSON chunks through the canonical decoder and returns the deltas.
func ollamaDeltas(_ pieces: [ByteBuffer]) throws(APIError) -> [Generation.Delta] {
    var decoder = OllamaChat.StreamDecoder(identity: ResponseIdentity(id: "chatcmpl-abc123", created: 1))
    var deltas: [Generation.Delta] = []
    for piece in pieces { try decoder.decode(piece, into: &deltas) }
    try decoder.finish(into: &deltas)
    return deltas
}

/// Deltas merged so that consecutive text, reasoning and argument fragments are one: equal for any chunking.
func coalesced(_ deltas: [Generation.Delta]) -> [Generation.Delta] {
    var out: [Generation.Delta] = []
    for delta in deltas {
        switch (out.last, delta) {
        case (.text(let a)?, .text(let b)): out[out.count - 1] = .text(a + b)
        case (.reasoning(let a)?, .reasoning(let b)): out[out.count - 1] = .reasoning(a + b)
        case (.toolCallArguments(let i, let a)?, .toolCallArguments(let j, let b)) where i == j:
            out[out.count - 1] = .toolCallArguments(index: i, a + b)
        default: out.append(delta)
        }
    }
    return out
}

func encodeAnthropic(_ deltas: [Generation.Delta]) -> String {
    var encoder = AnthropicMessages.StreamEncoder(id: "msg_test", model: "claude-test")
    var out = ByteBuffer()
    for delta in deltas { encoder.write(delta, into: &out) }
    return String(buffer: out)
}

func encodeResponses(_ deltas: [Generation.Delta]) -> String {
    var encoder = OpenAIResponses.StreamEncoder(id: "resp_test", model: "gpt-test", createdAt: 1_790_000_000)
    var out = ByteBuffer()
    for delta in deltas { encoder.write(delta, into: &out) }
    return String(buffer: out)
}
