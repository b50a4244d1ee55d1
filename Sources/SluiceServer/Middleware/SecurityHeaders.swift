import HTTPTypes
import Hummingbird

/// Adds the security headers every answer carries, and `Cache-Control: no-store` on API answers.
public enum SecurityHeaders {
    /// For HTML (the dashboard): everything from this origin only, no framing, no inline script.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    /// Run by ``EdgeMiddleware`` on every answer, errors included.
    static func apply(to headers: inout HTTPFields) {
        headers[.xContentTypeOptions] = "nosniff"
        headers[.xFrameOptions] = "DENY"
        headers[.referrerPolicy] = "no-referrer"
        if headers[.contentType]?.hasPrefix("text/html") == true {
            headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        }
        // API answers carry prompts and keys' output: no shared or browser cache may keep them.
        if headers[.cacheControl] == nil || headers[.contentType]?.hasPrefix("text/event-stream") == true {
            headers[.cacheControl] = "no-store"
        }
    }
}

extension HTTPField.Name {
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
