import Foundation
import NIOCore
import NIOFoundationCompat

/// Turns an upstream's streamed body into the client's stream, chunk by chunk, and watches it for usage and its end.
///
/// Translators never buffer more than one incomplete line: every complete upstream event is written out
/// as soon as it arrives.
public protocol StreamTranslator: Sendable {
    /// The client stream's content type.
    var contentType: String { get }
    /// Token counts seen so far (final once the stream is complete).
    var usage: Usage? { get }
    /// Feeds upstream bytes and appends what the client should get now.
    mutating func translate(_ input: ByteBuffer, into output: inout ByteBuffer) throws(APIError)
    /// The upstream body ended: appends trailing bytes, or throws if the stream ended before its terminator.
    mutating func finish(into output: inout ByteBuffer) throws(APIError)
    /// The bytes that end a client stream which failed after it started.
    func failureFrame(for error: APIError) -> ByteBuffer
    /// Completion tokens guessed from the stream when the upstream reported no usage; nil when it cannot guess.
    var estimatedCompletionTokens: Int? { get }
    /// The whole answer in the canonical model, once the stream finished cleanly, when the translator collects it
    /// (for the cache); nil otherwise.
    var canonicalAnswer: Generation.Answer? { get }
}

extension StreamTranslator {
    public var estimatedCompletionTokens: Int? { nil }
    public var canonicalAnswer: Generation.Answer? { nil }
}

/// Failure frame of OpenAI-style SSE streams: an `error` event with the error body, and no `[DONE]`.
public func sseFailureFrame(for error: APIError) -> ByteBuffer {
    var buffer = ByteBuffer()
    let json = (try? WireJSON.encoder().encode(error.body)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    SSEEncoder.write(ServerSentEvent(event: "error", data: json), into: &buffer)
    return buffer
}

/// Failure frame of Ollama-style NDJSON streams: a last `{"error":"…"}` line.
public func ndjsonFailureFrame(for error: APIError) -> ByteBuffer {
    var buffer = ByteBuffer()
    let data = (try? WireJSON.encoder().encode(Ollama.ErrorResponse(error: error.message))) ?? Data("{}".utf8)
    buffer.writeBytes(data)
    buffer.writeString("\n")
    return buffer
}

extension APIError {
    static let truncatedStream = APIError.upstreamFailed("The upstream stream ended before it was complete.")
    static let malformedStream = APIError.upstreamFailed("The upstream sent a stream that could not be read.")
}

/// Ollama `/api/generate` NDJSON lines in, OpenAI `text_completion` SSE events out.
public struct OllamaGenerateStreamTranslator: StreamTranslator {
    public let contentType = "text/event-stream"
    public private(set) var usage: Usage?
    private let identity: ResponseIdentity
    private let model: String
    private let includeUsage: Bool
    private var lines = LineSplitter()
    private var done = false
    private let encoder = WireJSON.encoder()

    public init(model: String, identity: ResponseIdentity, includeUsage: Bool) {
        self.model = model
        self.identity = identity
        self.includeUsage = includeUsage
    }

    public mutating func translate(_ input: ByteBuffer, into output: inout ByteBuffer) throws(APIError) {
        lines.append(input)
        while let line = try nextLine() {
            try handle(line, into: &output)
        }
    }

    public mutating func finish(into output: inout ByteBuffer) throws(APIError) {
        if let rest = lines.remainder() {
            try handle(rest, into: &output)
        }
        if !done { throw .truncatedStream }
    }

    public func failureFrame(for error: APIError) -> ByteBuffer { sseFailureFrame(for: error) }

    private mutating func nextLine() throws(APIError) -> ByteBuffer? {
        do {
            return try lines.nextLine()
        } catch {
            throw .malformedStream
        }
    }

    private mutating func handle(_ line: ByteBuffer, into output: inout ByteBuffer) throws(APIError) {
        guard !done, line.readableBytesView.contains(where: { $0 != 0x20 }) else { return }
        let response: Ollama.GenerateResponse
        do {
            response = try JSONDecoder().decode(Ollama.GenerateResponse.self, from: line)
        } catch {
            throw .malformedStream
        }
        if let message = response.error {
            throw .upstreamFailed("The upstream failed mid-stream: \(message)")
        }
        let finish: String? =
            response.done ? OllamaResponseTranslation.finishReason(response.doneReason, hasToolCalls: false) : nil
        if !response.response.isEmpty || response.done {
            try write(
                CompletionResponse(
                    id: identity.id, created: identity.created, model: model,
                    choices: [.init(text: response.response, index: 0, finishReason: finish)], usage: nil),
                into: &output)
        }
        guard response.done else { return }
        done = true
        usage = OllamaResponseTranslation.usage(prompt: response.promptEvalCount, completion: response.evalCount)
        if includeUsage {
            try write(
                CompletionResponse(
                    id: identity.id, created: identity.created, model: model, choices: [],
                    usage: usage ?? Usage(promptTokens: 0, completionTokens: 0)), into: &output)
        }
        SSEEncoder.writeDone(into: &output)
    }

    private func write(_ chunk: CompletionResponse, into output: inout ByteBuffer) throws(APIError) {
        do {
            try SSEEncoder.writeData(encoder.encodeAsByteBuffer(chunk, allocator: ByteBufferAllocator()), into: &output)
        } catch {
            throw .internalError()
        }
    }
}

/// OpenAI SSE in and out untouched; watched for the usage chunk and the `[DONE]` terminator.
public struct OpenAIStreamPassthrough: StreamTranslator {
    public let contentType = "text/event-stream"
    public private(set) var usage: Usage?
    private var decoder = SSEDecoder()
    private var complete = false
    /// A choice carried a finish reason: the answer is whole even if `[DONE]` never comes.
    private var finished = false
    /// Data chunks passed through; OpenAI-style servers send about one token per chunk.
    private var chunks = 0

    public init() {}

    /// One token per chunk, less the opening role-only chunk: a rough count, recorded as estimated.
    public var estimatedCompletionTokens: Int? { complete && usage == nil ? max(0, chunks - 1) : nil }

    private struct UsageProbe: Decodable {
        var usage: Usage?
    }

    private static let finishReasonKey = Array(#""finish_reason""#.utf8)
    private static let usageKey = Array(#""usage""#.utf8)

    public mutating func translate(_ input: ByteBuffer, into output: inout ByteBuffer) throws(APIError) {
        var input = input
        let events = try decoder.upstreamEvents(input)
        output.writeBuffer(&input)
        for event in events {
            if event.data == "[DONE]" || event.event == "error" {
                complete = true
                continue
            }
            chunks += 1
            var data = event.data
            // Byte searches: `String.contains` resolves to Foundation's, which bridges through CFString and was 13% of
            // the gateway's CPU holding 500 streams.
            let (finishReason, usageMember) = data.withUTF8 { bytes in
                (UTF8Search.valueAfter(Self.finishReasonKey, in: bytes), UTF8Search.range(of: Self.usageKey, in: bytes) != nil)
            }
            if !finished, let value = finishReason, value != UInt8(ascii: "n") {
                finished = true
            }
            if usageMember,
                let probe = try? JSONDecoder().decode(UsageProbe.self, from: Data(event.data.utf8)), let u = probe.usage
            {
                usage = u
            }
        }
    }

    public mutating func finish(into output: inout ByteBuffer) throws(APIError) {
        guard !complete else { return }
        // llama.cpp's server and others end a complete answer without `[DONE]`: after a finish reason the body's
        // clean end is the answer's end, and the client gets the terminator its SDK waits for. Before any finish
        // reason it is still a truncation.
        guard finished else { throw .truncatedStream }
        complete = true
        SSEEncoder.write(ServerSentEvent(data: "[DONE]"), into: &output)
    }

    public func failureFrame(for error: APIError) -> ByteBuffer { sseFailureFrame(for: error) }
}

/// Ollama NDJSON in and out untouched; watched for the final `done` line and its token counts.
public struct OllamaStreamPassthrough: StreamTranslator {
    public let contentType = "application/x-ndjson"
    public private(set) var usage: Usage?
    private var lines = LineSplitter()
    private var complete = false

    public init() {}

    private struct Probe: Decodable {
        var done: Bool?
        var error: String?
        var promptEvalCount: Int?
        var evalCount: Int?
        enum CodingKeys: String, CodingKey {
            case done, error
            case promptEvalCount = "prompt_eval_count"
            case evalCount = "eval_count"
        }
    }

    public mutating func translate(_ input: ByteBuffer, into output: inout ByteBuffer) throws(APIError) {
        lines.append(input)
        var input = input
        output.writeBuffer(&input)
        do {
            while let line = try lines.nextLine() { observe(line) }
        } catch {
            throw .malformedStream
        }
    }

    public mutating func finish(into output: inout ByteBuffer) throws(APIError) {
        if let rest = lines.remainder() { observe(rest) }
        if !complete { throw .truncatedStream }
    }

    public func failureFrame(for error: APIError) -> ByteBuffer { ndjsonFailureFrame(for: error) }

    private mutating func observe(_ line: ByteBuffer) {
        guard let probe = try? JSONDecoder().decode(Probe.self, from: line) else { return }
        if probe.error != nil { complete = true }
        if probe.done == true {
            complete = true
            usage = OllamaResponseTranslation.usage(prompt: probe.promptEvalCount, completion: probe.evalCount)
        }
    }
}
