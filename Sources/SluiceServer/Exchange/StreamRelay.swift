import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import ServiceLifecycle
import SluiceCore
import SluiceStore
import SluiceUpstream

/// Turning an upstream reply into the client's response, a stream chunk by chunk.
extension Gateway {
    /// Turns an upstream reply into the client's response; a stream's `lease` is held until the stream is over.
    func relay(
        _ reply: UpstreamReply, call: Call?, upstream: any UpstreamProvider, lease: UpstreamLease?, ticket: CacheTicket?,
        context: SluiceRequestContext
    ) -> Response {
        switch reply {
        case .complete(let body, let usage):
            context.trace.update {
                $0.usage = usage
                $0.firstByteAt = .now
            }
            if let ticket, let call {
                if let format = call.format {
                    var collector = AnswerCollector(format: format, streaming: false)
                    collector.observe(body)
                    ticket.finish(collector.answer().map { .generation($0.withTemplate(format: format, model: call.model)) })
                } else {
                    ticket.finish(.raw(Array(body.readableBytesView)))
                }
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        case .generated(let body, let answer):
            context.trace.update {
                $0.usage = answer.usage.openAI
                $0.firstByteAt = .now
            }
            ticket?.finish(.canonical(answer))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        case .stream(let stream):
            let collector = ticket != nil ? call?.format.map { AnswerCollector(format: $0, streaming: true) } : nil
            return Response(
                status: .ok,
                headers: [.contentType: stream.translator.contentType, .cacheControl: "no-cache", .xAccelBuffering: "no"],
                body: .init {
                    [promptBytes = call?.body.readableBytes ?? 0, model = call?.model ?? "", keep = call?.keepAnswer, keepResponse = call?.keepResponse]
                    writer in
                    try await relayStream(
                        stream, upstream: upstream, lease: lease, collector: collector, ticket: ticket, model: model,
                        promptBytes: promptBytes, keep: keep, keepResponse: keepResponse,
                        context: context, writer: &writer)
                })
        }
    }

    /// Relays a stream chunk by chunk: each upstream chunk is translated and written before the next is read,
    /// so the client's pace is the upstream's pace (backpressure) and nothing is buffered whole.
    func relayStream(
        _ stream: UpstreamStream, upstream: any UpstreamProvider, lease: UpstreamLease?, collector: AnswerCollector?,
        ticket: CacheTicket?, model: String, promptBytes: Int, keep: (@Sendable (Generation.Answer) async -> Void)? = nil,
        keepResponse: (@Sendable (ByteBuffer) async -> Void)? = nil,
        context: SluiceRequestContext, writer: inout any ResponseBodyWriter
    ) async throws {
        // What the upstream reported, or where it reported nothing (no usage chunk asked for, a stream that ended
        // early, a client that left) an estimate of what was generated, flagged as such, rather than zero. About
        // four bytes of request JSON per prompt token when the prompt was not counted either.
        func account(_ translator: some StreamTranslator) {
            let reported = translator.usage
            guard let estimate = translator.estimatedCompletionTokens, estimate > (reported?.completionTokens ?? -1) else {
                context.trace.update { $0.usage = reported }
                return
            }
            context.trace.update {
                $0.usage = Usage(promptTokens: reported?.promptTokens ?? promptBytes / 4, completionTokens: estimate)
                $0.tokensEstimated = true
            }
        }
        func clientLeft(_ translator: some StreamTranslator) {
            account(translator)
            context.trace.update {
                $0.clientDisconnected = true
                $0.errorCode = "client_disconnected"
            }
            context.logger.info("client disconnected mid-stream; upstream request cancelled")
        }
        var kept = keep == nil && keepResponse == nil
        metrics.streamsInFlight.increment()
        defer { metrics.streamsInFlight.decrement() }
        // The upstream is busy with this request until its stream ends, so the slot is held as long. Paths that
        // end it without a verdict (client gone, writer failed) leave it to this.
        defer { lease?.end(.neutral) }
        var collector = collector
        var answer: CachedAnswer?
        defer { ticket?.finish(answer) }
        var translator = stream.translator
        var output = ByteBuffer()
        var failure: APIError?
        var iterator = stream.body.makeAsyncIterator()
        var first = true
        // The drain's clock starts when shutdown does, not when the next chunk happens to arrive.
        try await withGracefulShutdownHandler {
            while true {
                if let drain, drain.streamsMustEnd() {
                    failure = .shuttingDown()
                    break
                }
                let chunk: ByteBuffer?
                do {
                    chunk = try await iterator.next()
                } catch is CancellationError {
                    // The client went away while the upstream was silent (``ClientDeparture``): its call is closed.
                    clientLeft(translator)
                    throw CancellationError()
                } catch {
                    failure = UpstreamFailure.apiError(for: error, logger: context.logger)
                    break
                }
                output.clear()
                do {
                    if let chunk {
                        try translator.translate(chunk, into: &output)
                    } else {
                        try translator.finish(into: &output)
                    }
                } catch {
                    // Translators throw only APIError; the closure around this loop does not carry the typed throw.
                    failure = error as? APIError ?? .upstreamFailed()
                }
                if !kept, let keep, let answer = translator.canonicalAnswer {
                    // The chunk that finishes the answer waits for it to be kept, so the client never holds an id that
                    // cannot be continued yet.
                    kept = true
                    await keep(answer)
                }
                if !kept, let keepResponse, let response = (translator as? ResponsesStreamPassthrough)?.finalResponse {
                    kept = true
                    await keepResponse(response)
                }
                if output.readableBytes > 0 {
                    if first {
                        first = false
                        context.trace.update { $0.firstByteAt = .now }
                    }
                    collector?.observe(output)
                    do {
                        try await writer.write(output)
                    } catch {
                        // The client went away. Dropping the iterator cancels the upstream request.
                        clientLeft(translator)
                        throw error
                    }
                }
                if failure != nil || chunk == nil { break }
            }
        } onGracefulShutdown: { [drain] in
            drain?.begin()
        }
        account(translator)
        if let failure {
            context.trace.update {
                $0.streamFailed = true
                $0.errorCode = failure.code
            }
            if failure.code == APIError.shutdownCode {
                // Not the upstream's fault: its breaker and error counts stay as they were.
                lease?.end(.neutral)
                context.logger.notice("stream ended by shutdown before its answer was complete")
            } else {
                lease?.end(.failure)
                metrics.upstreamError(upstream: upstream.endpoint.name, code: failure.code)
                context.logger.error("upstream stream failed after it started", metadata: ["code": .string(failure.code)])
            }
            try await writer.write(translator.failureFrame(for: failure))
        } else {
            lease?.end(.success)
            if var collector, let generation = collector.answer() {
                answer = .generation(generation.withTemplate(format: collector.format, model: model))
            } else if ticket != nil, let canonical = translator.canonicalAnswer {
                answer = .canonical(canonical)
            }
        }
        try await writer.finish(nil)
    }
}

extension HTTPField.Name {
    static let xCache = Self("X-Cache")!
    static let xAccelBuffering = Self("X-Accel-Buffering")!
    /// Request fields the answering upstream could not take and that Sluice left out as advisory, comma-separated.
    static let xSluiceIgnored = Self("X-Sluice-Ignored")!
}
