import HTTPTypes
import Hummingbird

/// Adds the security headers every answer carries, and `Cache-Control: no-store` on API answers.
public struct SecurityHeadersMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext

    /// For HTML (the dashboard): everything from this origin only, no framing, no inline script.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            // Errors that escaped as HTTP errors still get the headers.
            response = try error.response(from: request, context: context)
        }
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "no-referrer"
        if response.headers[.contentType]?.hasPrefix("text/html") == true {
            response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        }
        // API answers carry prompts and keys' output: no shared or browser cache may keep them.
        if response.headers[.cacheControl] == nil || response.headers[.contentType]?.hasPrefix("text/event-stream") == true {
            response.headers[.cacheControl] = "no-store"
        }
        return response
    }
}

extension HTTPField.Name {
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
