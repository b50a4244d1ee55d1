import HTTPTypes
import Foundation
import Hummingbird
import NIOCore
import Logging
import SluiceCore
import Synchronization

/// When a request's response is fully written: one access log line, the request metrics, and the usage record.
public struct ObservabilityMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext
    let metrics: GatewayMetrics
    let recorder: any UsageRecorder
    let now: @Sendable () -> Double
    /// `store-bodies` and `log-bodies`: what to do with the samples ``BodyCaptureMiddleware`` took.
    let storeBodies: Bool
    let logBodies: Bool

    public init(
        metrics: GatewayMetrics, recorder: any UsageRecorder, storeBodies: Bool = false, logBodies: Bool = false,
        now: @escaping @Sendable () -> Double
    ) {
        self.metrics = metrics
        self.recorder = recorder
        self.storeBodies = storeBodies
        self.logBodies = logBodies
        self.now = now
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let wallStart = now()
        metrics.requestsInFlight.increment()
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            // ErrorMiddleware sits inside this one; reaching here means an error escaped it.
            metrics.requestsInFlight.decrement()
            throw error
        }
        // A scheduling warning (a prompt over the model's context) reaches the client with its answer.
        if let warning = context.trace.snapshot.warning { response.headers[.xSluiceWarning] = warning }
        let status = Int(response.status.code)
        let method = request.method.rawValue
        let path = request.uri.path
        let completion: @Sendable () -> Void = { [metrics, recorder, storeBodies, logBodies] in
            metrics.requestsInFlight.decrement()
            let elapsed = ContinuousClock.now - start
            let fields = context.trace.snapshot
            // Every label value is a route of ``Surfaces``: a scanner's made-up paths (refused before routing, or
            // matching nothing) share "unmatched" instead of each adding series that live as long as the process.
            let route = context.endpointPath ?? fields.route.flatMap { Surfaces.surface(matched: $0)?.path } ?? "unmatched"
            let recordedStatus = fields.clientDisconnected ? 499 : status
            let bodies = fields.bodies?.texts
            metrics.requestFinished(route: route, method: method, status: recordedStatus, nanoseconds: elapsed.nanoseconds)
            if let usage = fields.usage, let model = fields.model {
                metrics.tokens(model: model, prompt: usage.promptTokens, completion: usage.completionTokens)
            }
            // The access line's metadata costs a dozen allocations: build it only when it will be written.
            if context.logger.logLevel <= .info {
                var metadata: Logger.Metadata = [
                    "method": .string(method), "path": .string(path), "status": .stringConvertible(recordedStatus),
                    "duration_ms": .stringConvertible(elapsed.milliseconds),
                ]
                if let ip = context.clientIP { metadata["client_ip"] = .string(ip) }
                if let model = fields.model { metadata["model"] = .string(model) }
                if let code = fields.errorCode { metadata["error_code"] = .string(code) }
                if fields.cacheHit { metadata["cache"] = "hit" }
                if let usage = fields.usage {
                    metadata["prompt_tokens"] = .stringConvertible(usage.promptTokens)
                    metadata["completion_tokens"] = .stringConvertible(usage.completionTokens)
                }
                if logBodies, let bodies {
                    if let body = bodies.request { metadata["request_body"] = .string(body) }
                    if let body = bodies.response { metadata["response_body"] = .string(body) }
                }
                context.logger.info("request completed", metadata: metadata)
            }
            // Every call into /v1 and /api has a route (the access middleware sets its path, the handler its
            // canonical name), endpoints Sluice lacks included; health, metrics and admin traffic has none.
            guard let recordedRoute = fields.route else { return }
            recorder.record(
                UsageRecord(
                    id: UsageRecord.newID(time: wallStart), time: wallStart, requestID: context.requestID, keyID: fields.keyID,
                    clientIP: context.clientIP, route: recordedRoute, model: fields.model, upstream: fields.upstream,
                    status: recordedStatus, errorCode: fields.errorCode, stream: fields.stream, cacheHit: fields.cacheHit,
                    promptTokens: fields.usage?.promptTokens ?? 0, completionTokens: fields.usage?.completionTokens ?? 0,
                    cachedTokens: fields.usage?.cachedTokens ?? 0, cacheWriteTokens: fields.usage?.cacheWriteTokens ?? 0,
                    reasoningTokens: fields.usage?.reasoningTokens ?? 0, tokensEstimated: fields.tokensEstimated,
                    latencyMs: elapsed.milliseconds, timeToFirstTokenMs: fields.firstByteAt.map { ($0 - start).milliseconds },
                    overflowed: fields.overflowed, requestBody: storeBodies ? bodies?.request : nil, responseBody: storeBodies ? bodies?.response : nil))
        }
        response.body = response.body.onCompletion(completion)
        return response
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }

    var milliseconds: Double { Double(nanoseconds) / 1_000_000 }
}

extension ResponseBody {
    /// Calls `completion` once the body has been written or has failed; Hummingbird's own version is package-internal.
    ///
    /// Also when the body is never written because the head could not be (the client left or its connection was
    /// closed for a timeout): the response is then dropped, and with it the last reference to the callback.
    ///
    /// A body already in memory (its length known: a complete answer, an error, a cache hit) counts as written now
    /// and is returned as it is, so Hummingbird writes head, body and end in one batch and one flush instead of three
    /// awaits and three flushes, about a tenth of a forwarded request's CPU. Up to `heldBytes`, which the caller
    /// lowers when the completion frees memory that must stay charged while a slow client reads. For such bodies the
    /// access log's `duration_ms`, the latency histogram and the usage record's latency end before the write to the
    /// client's socket; a streamed body's still end after its last byte.
    func onCompletion(heldBytes: Int = .max, _ completion: @escaping @Sendable () -> Void) -> ResponseBody {
        if let length = contentLength, length <= heldBytes {
            completion()
            return self
        }
        let body = self
        let once = CompletionOnce(completion)
        return ResponseBody(contentLength: body.contentLength) { writer in
            defer { once.run() }
            try await body.write(writer)
        }
    }
}

/// Runs its action once: when asked, or when dropped unasked.
private final class CompletionOnce: Sendable {
    private let action: @Sendable () -> Void
    private let done = Atomic<Bool>(false)

    init(_ action: @escaping @Sendable () -> Void) {
        self.action = action
    }

    func run() {
        if !done.exchange(true, ordering: .acquiringAndReleasing) { action() }
    }

    deinit { run() }
}
