import NIOCore

extension AnthropicMessages {
    /// Anthropic's error `type` for an HTTP status (https://docs.anthropic.com/en/api/errors).
    public static func errorType(status: Int) -> String {
        switch status {
        case 400: "invalid_request_error"
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 400..<500: "invalid_request_error"
        default: "api_error"
        }
    }

    /// The body `/v1/messages` answers an error with: `{"type":"error","error":{"type":…,"message":…}}`, its
    /// type from the status; the message is the gateway's, which names the field for a 400.
    public static func errorBody(for error: APIError) -> ByteBuffer {
        var out = ByteBuffer()
        writeError(error, into: &out)
        return out
    }

    static func writeError(_ error: APIError, into out: inout ByteBuffer) {
        out.writeStaticString(#"{"type":"error","error":{"type":"#)
        out.writeJSONString(errorType(status: error.status))
        out.writeStaticString(#","message":"#)
        out.writeJSONString(error.message)
        out.writeStaticString("}}")
    }

    /// The last event of a stream that failed after it started: `event: error` with an `api_error` body (or
    /// `overloaded_error` when the upstream was overloaded), as Anthropic ends such streams.
    public static func errorEvent(for error: APIError) -> ByteBuffer {
        var out = ByteBuffer()
        writeErrorEvent(error, into: &out)
        return out
    }

    static func writeErrorEvent(_ error: APIError, into out: inout ByteBuffer) {
        var streamed = error
        // Mid-stream the status line is long gone; only "try again later" versus "failed" still matters.
        if errorType(status: error.status) != "overloaded_error" { streamed.status = 500 }
        out.writeSSEEvent("error") { writeError(streamed, into: &$0) }
    }
}
