import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import SluiceCore
import SluiceUpstream

/// Handles API requests: decode and validate, pick an upstream, call it, relay the answer.
public struct Gateway: Sendable {
    let upstreams: [any UpstreamProvider]
    let metrics: GatewayMetrics
    let maxBodyBytes: Int
    let now: @Sendable () -> Double

    public init(upstreams: [any UpstreamProvider], metrics: GatewayMetrics, maxBodyBytes: Int, now: @escaping @Sendable () -> Double) {
        precondition(!upstreams.isEmpty, "a gateway needs at least one upstream")
        self.upstreams = upstreams
        self.metrics = metrics
        self.maxBodyBytes = maxBodyBytes
        self.now = now
    }

    // MARK: OpenAI API

    func chatCompletions(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/chat/completions" }
        let body = try await collectBody(request)
        let chat = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: body)
        let upstream = try self.upstream(for: chat.model, context: context, stream: chat.isStreaming)
        let identity = newIdentity(prefix: "chatcmpl")
        let reply = try await call(upstream, context: context) {
            try await $0.chatCompletions(chat, rawBody: body, identity: identity, logger: context.logger)
        }
        return relay(reply, upstream: upstream, context: context)
    }

    func completions(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/completions" }
        let body = try await collectBody(request)
        let completion = try RequestDecoding.decodeValidated(CompletionRequest.self, from: body)
        let upstream = try self.upstream(for: completion.model, context: context, stream: completion.isStreaming)
        let identity = newIdentity(prefix: "cmpl")
        let reply = try await call(upstream, context: context) {
            try await $0.completions(completion, rawBody: body, identity: identity, logger: context.logger)
        }
        return relay(reply, upstream: upstream, context: context)
    }

    func embeddings(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/embeddings" }
        let body = try await collectBody(request)
        let embeddings = try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: body)
        let upstream = try self.upstream(for: embeddings.model, context: context, stream: false)
        let reply = try await call(upstream, context: context) {
            try await $0.embeddings(embeddings, rawBody: body, logger: context.logger)
        }
        return relay(reply, upstream: upstream, context: context)
    }

    func listModels(context: SluiceRequestContext) async throws -> ModelList {
        let created = Int(now())
        var seen = Set<String>()
        var models: [Model] = []
        var lastError: (any Error)?
        for upstream in upstreams {
            do {
                let list = try await call(upstream, context: context) { try await $0.models(created: created, logger: context.logger) }
                for model in list.data where seen.insert(model.id).inserted {
                    models.append(model)
                }
            } catch {
                lastError = error
            }
        }
        if models.isEmpty, let lastError { throw lastError }
        return ModelList(data: models)
    }

    func model(id: String, context: SluiceRequestContext) async throws -> Model {
        let list = try await listModels(context: context)
        guard let model = list.data.first(where: { Self.sameModel($0.id, id) }) else { throw APIError.modelNotFound(id) }
        return model
    }

    /// `llama3.2` and `llama3.2:latest` name the same Ollama model.
    static func sameModel(_ a: String, _ b: String) -> Bool {
        a == b || a == b + ":latest" || b == a + ":latest"
    }

    // MARK: Ollama native API

    /// Probe of the few fields of a native body the gateway needs.
    private struct NativeProbe: Decodable {
        var model: String?
        var stream: Bool?
    }

    func native(_ request: Request, context: SluiceRequestContext, path: String, streamsByDefault: Bool) async throws -> Response {
        context.trace.update { $0.route = path }
        var body: ByteBuffer?
        var streams = false
        var model: String?
        if request.method == .post {
            let collected = try await collectBody(request)
            let probe: NativeProbe = try RequestDecoding.decode(NativeProbe.self, from: collected)
            streams = streamsByDefault && (probe.stream ?? true)
            model = probe.model
            body = collected
        }
        let upstream: any UpstreamProvider
        if let model {
            upstream = try self.upstream(for: model, context: context, stream: streams)
        } else {
            upstream = upstreams.first { $0.endpoint.kind == .ollama } ?? upstreams[0]
            context.trace.update { $0.upstream = upstream.endpoint.name }
        }
        let method: HTTPMethodName = request.method == .post ? .post : .get
        let native = NativeRequest(method: method, path: path, body: body, streams: streams)
        let reply = try await call(upstream, context: context) { try await $0.native(native, logger: context.logger) }
        return relay(reply, upstream: upstream, context: context)
    }

    // MARK: Plumbing

    func collectBody(_ request: Request) async throws -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
        var request = request
        do {
            return try await request.collectBody(upTo: maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
    }

    /// The upstream that serves `model`: the first that lists it, else the first that lists nothing.
    func upstream(for model: String, context: SluiceRequestContext, stream: Bool) throws -> any UpstreamProvider {
        let chosen =
            upstreams.first { $0.endpoint.models.contains { Self.sameModel($0, model) } }
            ?? upstreams.first { $0.endpoint.models.isEmpty }
        context.trace.update {
            $0.model = model
            $0.stream = stream
            $0.upstream = chosen?.endpoint.name
        }
        guard let chosen else { throw APIError.modelNotFound(model) }
        return chosen
    }

    func call<T>(_ upstream: any UpstreamProvider, context: SluiceRequestContext, _ body: (any UpstreamProvider) async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        do {
            let result = try await body(upstream)
            metrics.upstreamLatency(upstream: upstream.endpoint.name, nanoseconds: (ContinuousClock.now - start).nanoseconds)
            return result
        } catch let error as APIError {
            if error.status >= 500 { metrics.upstreamError(upstream: upstream.endpoint.name, code: error.code) }
            throw error
        }
    }

    func newIdentity(prefix: String) -> ResponseIdentity {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        var suffix = [UInt8](repeating: 0, count: 24)
        for i in suffix.indices { suffix[i] = alphabet[Int(rng.next() % UInt64(alphabet.count))] }
        return ResponseIdentity(id: prefix + "-" + String(decoding: suffix, as: UTF8.self), created: Int(now()))
    }

    // MARK: Relaying answers

    func relay(_ reply: UpstreamReply, upstream: any UpstreamProvider, context: SluiceRequestContext) -> Response {
        switch reply {
        case .complete(let body, let usage):
            context.trace.update {
                $0.usage = usage
                $0.firstByteAt = .now
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        case .stream(let stream):
            return Response(
                status: .ok,
                headers: [.contentType: stream.translator.contentType, .cacheControl: "no-cache", .init("X-Accel-Buffering")!: "no"],
                body: .init { writer in
                    try await relayStream(stream, upstream: upstream, context: context, writer: &writer)
                })
        }
    }

    /// Relays a stream chunk by chunk: each upstream chunk is translated and written before the next is read,
    /// so the client's pace is the upstream's pace (backpressure) and nothing is buffered whole.
    func relayStream(_ stream: UpstreamStream, upstream: any UpstreamProvider, context: SluiceRequestContext, writer: inout any ResponseBodyWriter) async throws {
        metrics.streamsInFlight.increment()
        defer { metrics.streamsInFlight.decrement() }
        var translator = stream.translator
        var output = ByteBuffer()
        var failure: APIError?
        var iterator = stream.body.makeAsyncIterator()
        var first = true
        while true {
            let chunk: ByteBuffer?
            do {
                chunk = try await iterator.next()
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
                failure = error
            }
            if output.readableBytes > 0 {
                if first {
                    first = false
                    context.trace.update { $0.firstByteAt = .now }
                }
                do {
                    try await writer.write(output)
                } catch {
                    // The client went away. Dropping the iterator cancels the upstream request.
                    context.trace.update {
                        $0.clientDisconnected = true
                        $0.usage = translator.usage
                        $0.errorCode = "client_disconnected"
                    }
                    context.logger.info("client disconnected mid-stream; upstream request cancelled")
                    throw error
                }
            }
            if failure != nil || chunk == nil { break }
        }
        context.trace.update { $0.usage = translator.usage }
        if let failure {
            metrics.upstreamError(upstream: upstream.endpoint.name, code: failure.code)
            context.trace.update {
                $0.streamFailed = true
                $0.errorCode = failure.code
            }
            context.logger.error("upstream stream failed after it started", metadata: ["code": .string(failure.code)])
            try await writer.write(translator.failureFrame(for: failure))
        }
        try await writer.finish(nil)
    }
}
