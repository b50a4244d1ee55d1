/// A client-facing error in OpenAI's shape, with the HTTP status it is sent with.
///
/// Messages are written for the client: they never carry upstream hostnames, file paths or stack traces.
public struct APIError: Error, Sendable, Equatable {
    public var status: Int
    public var type: String
    public var code: String
    public var message: String
    public var param: String?
    /// Seconds a client should wait before retrying, sent as `Retry-After`.
    public var retryAfter: Int?
    /// Further response headers (the `x-ratelimit-*` set of a 429), lowercase names.
    public var headers: [(name: String, value: String)] = []

    public static func == (a: APIError, b: APIError) -> Bool {
        a.status == b.status && a.type == b.type && a.code == b.code && a.message == b.message && a.param == b.param
            && a.retryAfter == b.retryAfter && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }

    public init(status: Int, type: String, code: String, message: String, param: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.param = param
        self.retryAfter = retryAfter
    }

    /// The wire body: `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
    public var body: ErrorBody { ErrorBody(error: .init(message: message, type: type, param: param, code: code)) }
}

/// The JSON envelope OpenAI clients parse error responses from.
public struct ErrorBody: Codable, Sendable, Equatable {
    public struct Detail: Codable, Sendable, Equatable {
        public var message: String
        public var type: String
        public var param: String?
        public var code: String?

        public init(message: String, type: String, param: String?, code: String?) {
            self.message = message
            self.type = type
            self.param = param
            self.code = code
        }

        // `param` and `code` are always present, as null when unset, as OpenAI sends them.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(param, forKey: .param)
            try c.encode(code, forKey: .code)
        }
    }

    public var error: Detail
}

extension APIError {
    public static func invalidJSON(_ detail: String) -> APIError {
        APIError(status: 400, type: "invalid_request_error", code: "invalid_json", message: "Invalid JSON body: \(detail)")
    }

    public static func invalidType(_ field: String, expected: String) -> APIError {
        APIError(
            status: 400, type: "invalid_request_error", code: "invalid_type",
            message: "Invalid type for '\(field)': expected \(expected).", param: field)
    }

    public static func missingField(_ field: String) -> APIError {
        APIError(
            status: 400, type: "invalid_request_error", code: "missing_field",
            message: "Missing required parameter: '\(field)'.", param: field)
    }

    public static func invalidValue(_ field: String, _ message: String) -> APIError {
        APIError(
            status: 400, type: "invalid_request_error", code: "invalid_value",
            message: "Invalid value for '\(field)': \(message)", param: field)
    }

    public static func modelNotFound(_ model: String) -> APIError {
        APIError(
            status: 404, type: "invalid_request_error", code: "model_not_found",
            message: "The model '\(model)' does not exist or is not served by any upstream.", param: "model")
    }

    public static func notFound(_ path: String) -> APIError {
        APIError(status: 404, type: "invalid_request_error", code: "not_found", message: "Unknown route: \(path)")
    }

    public static func methodNotAllowed(_ method: String, _ path: String) -> APIError {
        APIError(
            status: 405, type: "invalid_request_error", code: "method_not_allowed",
            message: "Method \(method) is not allowed on \(path).")
    }

    public static func bodyTooLarge(limit: Int) -> APIError {
        APIError(
            status: 413, type: "invalid_request_error", code: "request_too_large",
            message: "Request body is larger than the limit of \(limit) bytes.")
    }

    /// The request's HTTP framing could not be parsed: a bad `Transfer-Encoding`, chunk size or header line.
    public static func malformedRequest() -> APIError {
        APIError(
            status: 400, type: "invalid_request_error", code: "malformed_request",
            message: "The request's HTTP framing is malformed (request line, headers, Transfer-Encoding or chunk sizes).")
    }

    /// The client stopped sending its body for longer than `client-body-timeout`.
    public static func requestTimeout() -> APIError {
        APIError(status: 408, type: "invalid_request_error", code: "request_timeout", message: "The request body was not received in time.")
    }

    /// The client left before its request was read; nobody sees the answer, but logs and metrics record it as 499.
    public static func clientDisconnected() -> APIError {
        APIError(status: 499, type: "invalid_request_error", code: "client_disconnected", message: "The client closed the connection.")
    }

    /// The store could not be asked something the answer depends on.
    public static func storeUnavailable() -> APIError {
        APIError(status: 503, type: "server_error", code: "store_unavailable", message: "The gateway cannot reach its store; retry shortly.", retryAfter: 1)
    }

    /// The code of ``shuttingDown()``, to recognise it without building one.
    public static let shutdownCode = "shutdown"

    /// A stream still open when the shutdown grace ran out.
    public static func shuttingDown() -> APIError {
        APIError(status: 503, type: "server_error", code: shutdownCode, message: "The gateway is shutting down; the answer was cut short.", retryAfter: 1)
    }

    public static func upstreamUnavailable() -> APIError {
        APIError(status: 502, type: "upstream_error", code: "upstream_unavailable", message: "The upstream server could not be reached.")
    }

    public static func upstreamFailed(_ message: String = "The upstream server failed to answer the request.") -> APIError {
        APIError(status: 502, type: "upstream_error", code: "upstream_error", message: message)
    }

    public static func upstreamTimeout() -> APIError {
        APIError(status: 504, type: "upstream_error", code: "upstream_timeout", message: "The upstream server did not answer in time.")
    }

    public static func noUpstream(_ message: String = "No upstream is ready to serve this request.") -> APIError {
        APIError(status: 503, type: "upstream_error", code: "no_upstream", message: message)
    }

    /// 503 when every upstream that could serve a request is at its in-flight cap and the waiting line is full or
    /// the wait ran out: the gateway sheds load rather than queue without bound.
    public static func upstreamOverloaded(retryAfter: Int = 1) -> APIError {
        APIError(
            status: 503, type: "server_error", code: "upstream_overloaded",
            message: "All upstreams serving this model are busy. Retry after \(max(1, retryAfter)) s.", retryAfter: max(1, retryAfter))
    }

    public static func internalError() -> APIError {
        APIError(status: 500, type: "server_error", code: "internal_error", message: "Internal gateway error.")
    }

    public static func missingKey() -> APIError {
        APIError(
            status: 401, type: "invalid_request_error", code: "missing_api_key",
            message: "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.")
    }

    /// A rejected key; the message never repeats what was presented.
    public static func invalidKey(_ message: String = "Incorrect API key provided.") -> APIError {
        APIError(status: 401, type: "invalid_request_error", code: "invalid_api_key", message: message)
    }

    public static func modelNotAllowed(_ model: String) -> APIError {
        APIError(
            status: 403, type: "permission_error", code: "model_not_allowed",
            message: "This API key is not allowed to use the model '\(model)'.", param: "model")
    }

    public static func budgetExceeded(team: Bool = false) -> APIError {
        APIError(
            status: 403, type: "insufficient_quota", code: "budget_exceeded",
            message: team ? "This API key's team has spent its budget." : "This API key has spent its budget.")
    }

    public static func adminOnly() -> APIError {
        APIError(status: 403, type: "permission_error", code: "admin_only", message: "This route needs the master key.")
    }

    /// 429; `what` names the exhausted limit (for example "requests per minute for this key").
    public static func rateLimited(_ what: String, retryAfter: Double, headers: [(name: String, value: String)] = []) -> APIError {
        var error = APIError(
            status: 429, type: "rate_limit_error", code: "rate_limit_exceeded",
            message: "Rate limit reached: \(what). Retry after \(max(1, Int(saturating: retryAfter.rounded(.up)))) s.",
            retryAfter: max(1, Int(saturating: retryAfter.rounded(.up))))
        error.headers = headers
        return error
    }
}
