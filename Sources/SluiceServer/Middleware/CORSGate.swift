import HTTPTypes
import Hummingbird

/// CORS for the configured origins only, with Hummingbird's `CORSMiddleware` writing the headers.
///
/// A request from an origin not on the list gets no CORS headers, so the browser blocks it; its preflight is
/// answered 403 rather than passed on to a route that would 405 it.
public struct CORSGate: RouterMiddleware {
    public typealias Context = SluiceRequestContext
    let allowAll: Bool
    let origins: Set<String>
    let cors: CORSMiddleware<Context>

    public init(origins: [String]) {
        self.allowAll = origins.contains("*")
        self.origins = Set(origins.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 })
        self.cors = CORSMiddleware(
            allowOrigin: allowAll ? .all : .originBased,
            allowHeaders: [.accept, .authorization, .contentType, .origin, .xAPIKey, .requestID, .cacheControl],
            allowMethods: [.get, .post, .delete, .options, .head],
            // Keys travel in headers, never cookies: a credentialed cross-origin request is not needed.
            allowCredentials: false,
            exposedHeaders: [
                "X-Request-ID", "X-Cache", "Retry-After", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
            ],
            maxAge: .seconds(600))
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin] else { return try await next(request, context) }
        if allowAll || origins.contains(origin) {
            return try await cors.handle(request, context: context, next: next)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            return Response(status: .forbidden)
        }
        return try await next(request, context)
    }
}
