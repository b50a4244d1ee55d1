import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SluiceCore

/// The answers ``ConnectionGuard`` writes itself, when there is no request for the router to answer: encoded once.
struct CannedAnswer: Sendable {
    let status: HTTPResponseStatus
    let body: ByteBuffer

    init(_ error: APIError) {
        self.status = HTTPResponseStatus(statusCode: error.status)
        self.body = (try? WireJSON.encoder().encodeAsByteBuffer(error.body, allocator: ByteBufferAllocator())) ?? ByteBuffer(string: "{}")
    }

    /// The head is not complete within `client-header-timeout`.
    static let headerTimeout = CannedAnswer(
        APIError(
            status: 408, type: "invalid_request_error", code: "request_timeout",
            message: "The request head was not received in time."))
    /// The body stalled for `client-body-timeout`.
    static let bodyTimeout = CannedAnswer(.requestTimeout())
    /// The head could not be parsed (bad request line, header or `Transfer-Encoding`).
    static let malformed = CannedAnswer(.malformedRequest())

    /// The response parts, with `Connection: close`: the connection closes once they are written.
    var head: HTTPResponseHead {
        HTTPResponseHead(
            version: .http1_1, status: status,
            headers: [
                "content-type": "application/json", "content-length": String(body.readableBytes), "connection": "close",
                "x-content-type-options": "nosniff", "cache-control": "no-store",
            ])
    }
}
