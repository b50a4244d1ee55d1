import Hummingbird
import NIOCore

/// Samples the bodies of API calls as they stream through, for `store-bodies` and `log-bodies`.
///
/// Only `/v1/` and `/api/` calls: admin and dashboard bodies carry new API keys and the master key. Only the
/// request bytes a handler actually reads are seen, so a call refused before its body is read stores none.
/// Sits outside the error middleware, so error answers are captured as the client got them.
public struct BodyCaptureMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix("/v1/") || path.hasPrefix("/api/") else { return try await next(request, context) }
        let capture = BodyCapture()
        context.trace.update { $0.bodies = capture }
        var request = request
        request.body = RequestBody(asyncSequence: request.body.map { @Sendable chunk in
            capture.request(chunk)
            return chunk
        })
        var response = try await next(request, context)
        response.body = response.body.map { chunk in
            capture.response(chunk)
            return chunk
        }
        return response
    }
}
