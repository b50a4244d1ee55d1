import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SluiceCore

/// Turns every error into OpenAI's error JSON with the right status, and logs it with the request ID.
public struct ErrorMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext
    let maxBodyBytes: Int

    public init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let apiError = map(error, request: request, context: context)
            context.trace.update {
                $0.errorCode = apiError.code
                if apiError.status == 499 { $0.clientDisconnected = true }
            }
            if apiError.status == 499 {
                context.logger.info("client disconnected before its request was read", metadata: ["status": "499"])
            } else if apiError.status >= 500 {
                context.logger.error("request failed", metadata: ["status": "\(apiError.status)", "code": "\(apiError.code)"])
            } else {
                context.logger.info(
                    "request rejected",
                    metadata: [
                        "status": "\(apiError.status)", "code": "\(apiError.code)", "param": "\(apiError.param ?? "")",
                        "reason": .string(apiError.message),
                    ])
            }
            return apiError.response(dialect: Surfaces.dialect(matched: context.endpointPath, path: request.uri.path))
        }
    }

    func map(_ error: any Error, request: Request, context: Context) -> APIError {
        switch error {
        case let apiError as APIError:
            return apiError
        case let httpError as any HTTPResponseError:
            switch httpError.status {
            case .notFound:
                // A path that exists with another method gets 405 instead of 404, with the methods it has (RFC 9110).
                let path = request.uri.path
                let methods = Surfaces.methods(ofPath: path)
                guard !methods.isEmpty else { return .notFound(path) }
                var error = APIError.methodNotAllowed(request.method.rawValue, path)
                error.headers.append((name: "Allow", value: methods.map(\.rawValue).joined(separator: ", ")))
                return error
            case .contentTooLarge:
                return .bodyTooLarge(limit: maxBodyBytes)
            case .methodNotAllowed:
                return .methodNotAllowed(request.method.rawValue, request.uri.path)
            default:
                let status = Int(httpError.status.code)
                return APIError(
                    status: status, type: status >= 500 ? "server_error" : "invalid_request_error",
                    code: httpError.status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_"),
                    message: httpError.status.reasonPhrase)
            }
        case let clientError as ClientConnectionError:
            switch clientError {
            case .disconnected: return .clientDisconnected()
            case .bodyTimeout: return .requestTimeout()
            }
        case is CancellationError:
            // A request stops being served when its client leaves (a coalesced waiter, a queued call): a 499.
            return .clientDisconnected()
        case is HTTPParserError:
            // The body's framing (chunk sizes, Transfer-Encoding) broke while a handler read it: the client's fault.
            return .malformedRequest()
        default:
            context.logger.error("unexpected error", metadata: ["error": "\(String(reflecting: type(of: error)))"])
            return .internalError()
        }
    }
}

/// Which error shape a route's clients expect; each route answers errors as its own API does, whatever refused the
/// request (a key, a limit, a body). ``Surfaces`` says which route has which.
enum ErrorDialect: Sendable {
    /// `{"error":{"message","type","param","code"}}`
    case openAI
    /// `{"type":"error","error":{"type","message"}}`, with Anthropic's type per status.
    case anthropic
    /// `{"error":"…"}`, as Ollama answers.
    case ollama

}

extension APIError {
    private static let encoder = WireJSON.encoder()

    /// The error response in the shape the route's clients parse.
    func response(dialect: ErrorDialect) -> Response {
        switch dialect {
        case .openAI: return response()
        case .anthropic:
            var response = response()
            response.body = .init(byteBuffer: AnthropicMessages.errorBody(for: self))
            return response
        case .ollama:
            var response = response()
            let body = (try? Self.encoder.encodeAsByteBuffer(Ollama.ErrorResponse(error: message), allocator: ByteBufferAllocator()))
                ?? ByteBuffer(string: "{}")
            response.body = .init(byteBuffer: body)
            return response
        }
    }

    /// The JSON error response.
    public func response() -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        for (name, value) in self.headers {
            if let name = HTTPField.Name(name) { headers[name] = value }
        }
        let buffer = (try? Self.encoder.encodeAsByteBuffer(body, allocator: ByteBufferAllocator())) ?? ByteBuffer(string: "{}")
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: buffer))
    }
}
