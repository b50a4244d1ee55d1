import NIOCore

/// Reads an upstream's streamed body into canonical deltas (Anthropic SSE, OpenAI chat SSE, Ollama NDJSON).
///
/// Bytes may arrive split anywhere; a decoder buffers at most one incomplete line or event.
public protocol GenerationStreamDecoder: Sendable {
    /// Feeds upstream bytes; appends the deltas they completed.
    mutating func decode(_ input: ByteBuffer, into deltas: inout [Generation.Delta]) throws(APIError)
    /// The upstream body ended: appends what was still pending, and throws when the stream ended before its end marker.
    mutating func finish(into deltas: inout [Generation.Delta]) throws(APIError)
}

/// Writes canonical deltas as one client dialect's stream (Anthropic SSE, Responses SSE, chat SSE, Ollama NDJSON).
///
/// Encoders accept deltas in any order and keep their wire format well formed; after a `finish` or `error` delta
/// they write nothing more.
public protocol GenerationStreamEncoder: Sendable {
    /// The client stream's content type.
    var contentType: String { get }
    /// True once the stream's last event was written.
    var isFinished: Bool { get }
    mutating func write(_ delta: Generation.Delta, into out: inout ByteBuffer)
}

/// An upstream stream of one dialect relayed to a client of another through canonical deltas, as a
/// `StreamTranslator`, so the gateway's existing stream relay can drive it unchanged.
///
/// An upstream failure inside the stream (an `error` delta) is thrown after the deltas before it are written, as
/// the other translators do; the relay then ends the client stream with `failureFrame(for:)`, the encoder's own
/// failure shape (Anthropic `error` event, `response.failed`, OpenAI `error` event, Ollama error line).
public struct CanonicalStreamTranslator<Decoder: GenerationStreamDecoder, Encoder: GenerationStreamEncoder>: StreamTranslator {
    public var contentType: String { encoder.contentType }
    public private(set) var usage: Usage?
    private var decoder: Decoder
    private var encoder: Encoder
    private var deltas: [Generation.Delta] = []
    /// Present only when the answer is wanted for the cache: building it copies every delta's text.
    private var builder: Generation.AnswerBuilder?
    /// Deltas of generated content so far (text, reasoning, tool arguments), about one token each as upstreams
    /// stream them; what a stream that ends early is charged when the upstream never said.
    private var generated = 0
    private var finished = false

    public init(decoder: Decoder, encoder: Encoder, collectsAnswer: Bool = false) {
        self.decoder = decoder
        self.encoder = encoder
        self.builder = collectsAnswer ? Generation.AnswerBuilder() : nil
    }

    public var canonicalAnswer: Generation.Answer? { builder?.answer }

    /// Nil once the answer finished with the upstream's own counts; otherwise the content deltas seen so far, so a
    /// client that leaves mid-stream, or an upstream that dies, still pays for what was generated.
    public var estimatedCompletionTokens: Int? { finished && usage != nil ? nil : generated }

    public mutating func translate(_ input: ByteBuffer, into output: inout ByteBuffer) throws(APIError) {
        deltas.removeAll(keepingCapacity: true)
        try decoder.decode(input, into: &deltas)
        try relay(into: &output)
    }

    public mutating func finish(into output: inout ByteBuffer) throws(APIError) {
        deltas.removeAll(keepingCapacity: true)
        try decoder.finish(into: &deltas)
        try relay(into: &output)
    }

    public func failureFrame(for error: APIError) -> ByteBuffer {
        var encoder = encoder
        var out = ByteBuffer()
        encoder.write(.error(error), into: &out)
        return out
    }

    private mutating func relay(into output: inout ByteBuffer) throws(APIError) {
        for delta in deltas {
            switch delta {
            case .messageStart(_, _, let counts?):
                usage = counts.openAI
            case .finish(_, _, let counts):
                finished = true
                if let counts { usage = counts.openAI }
            case .error(let error):
                throw error
            case .text, .reasoning, .toolCallArguments:
                generated += 1
            default:
                break
            }
            builder?.observe(delta)
            encoder.write(delta, into: &output)
        }
    }
}
