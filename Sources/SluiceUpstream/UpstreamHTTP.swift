import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import SluiceCore

/// Time limits of upstream calls.
public struct UpstreamTimeouts: Sendable, Equatable {
    /// Whole call, streamed body included.
    public var total: TimeAmount
    /// Between two chunks of an answer.
    public var idle: TimeAmount
    public var connect: TimeAmount

    public init(total: TimeAmount = .seconds(300), idle: TimeAmount = .seconds(60), connect: TimeAmount = .seconds(5)) {
        self.total = total
        self.idle = idle
        self.connect = connect
    }
}

extension HTTPClient.Configuration {
    /// The shared client's configuration for upstream calls: pooled keep-alive connections, idle timeout as read timeout.
    public static func upstream(timeouts: UpstreamTimeouts) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: timeouts.connect, read: timeouts.idle)
        // Fail fast on a refused connection: retrying until the connect timeout would hold every
        // caller for seconds while the upstream is plainly down.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
        configuration.connectionPool.idleTimeout = .seconds(60)
        configuration.decompression = .disabled
        configuration.redirectConfiguration = .disallow
        // Sluice bootstraps no tracer, yet with the default one AHC parses each request's URL again for span
        // attributes: about 2% of the gateway's CPU on the miss path, for spans nobody receives.
        configuration.tracing.tracer = nil
        return configuration
    }
}

/// How transport failures reach the client.
public enum UpstreamFailure {
    /// The client-facing error for a transport failure. The detail, which may name the upstream host, goes to the log only.
    public static func apiError(for error: any Error, logger: Logger) -> APIError {
        if let apiError = error as? APIError { return apiError }
        logger.warning("upstream call failed", metadata: ["error": "\(error)"])
        if let clientError = error as? HTTPClientError {
            switch clientError {
            case .readTimeout, .deadlineExceeded, .connectTimeout, .writeTimeout, .getConnectionFromPoolTimeout:
                return .upstreamTimeout()
            case .remoteConnectionClosed:
                return .upstreamFailed("The upstream closed the connection before the answer was complete.")
            default:
                return .upstreamFailed()
            }
        }
        if let transportError = error as? UpstreamTransportError {
            switch transportError {
            case .readTimeout, .deadlineExceeded: return .upstreamTimeout()
            case .remoteConnectionClosed: return .upstreamFailed("The upstream closed the connection before the answer was complete.")
            }
        }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return .upstreamTimeout()
        }
        if error is NIOConnectionError || error is IOError || error is ChannelError {
            return .upstreamUnavailable()
        }
        return .upstreamFailed()
    }
}

/// The plumbing both upstream kinds share: sending JSON, collecting or streaming answers, mapping failures.
struct UpstreamHTTP: Sendable {
    let client: HTTPClient
    let endpoint: UpstreamEndpoint
    let timeouts: UpstreamTimeouts
    /// Answers larger than this are refused rather than buffered.
    let maxResponseBytes: Int
    /// The data plane's own client for plain-HTTP upstreams; nil for TLS ones, which AsyncHTTPClient serves.
    let pool: UpstreamConnectionPool?

    init(client: HTTPClient, endpoint: UpstreamEndpoint, timeouts: UpstreamTimeouts, maxResponseBytes: Int) {
        self.client = client
        self.endpoint = endpoint
        self.timeouts = timeouts
        self.maxResponseBytes = maxResponseBytes
        self.pool = UpstreamConnectionPool(baseURL: endpoint.baseURL, timeouts: timeouts)
    }

    /// - Parameter headers: added as given; an Anthropic upstream gets `anthropic-version` from here (the client's)
    ///   or the default.
    func send(
        _ method: HTTPMethod, _ path: String, body: ByteBuffer?, headers: [(String, String)] = [], logger: Logger
    ) async throws -> HTTPClientResponse {
        var requestHeaders = HTTPHeaders()
        requestHeaders.reserveCapacity(6 + headers.count)
        requestHeaders.add(name: "Accept", value: "application/json, text/event-stream, application/x-ndjson")
        if body != nil { requestHeaders.add(name: "Content-Type", value: "application/json") }
        for (name, value) in headers { requestHeaders.add(name: name, value: value) }
        if let key = endpoint.apiKey, !key.isEmpty {
            switch endpoint.kind {
            case .anthropic: requestHeaders.add(name: "x-api-key", value: key)
            case .ollama, .openai: requestHeaders.add(name: "Authorization", value: "Bearer \(key)")
            }
        }
        if endpoint.kind == .anthropic, !requestHeaders.contains(name: "anthropic-version") {
            requestHeaders.add(name: "anthropic-version", value: Self.anthropicVersion)
        }
        let response: HTTPClientResponse
        do {
            if let pool {
                response = try await pool.execute(
                    method: method, path: path, headers: requestHeaders, body: body, deadline: .now() + timeouts.total)
            } else {
                var request = HTTPClientRequest(url: endpoint.baseURL + path)
                request.method = method
                request.headers = requestHeaders
                if let body { request.body = .bytes(body) }
                // AHC logs at debug and trace only, yet stamps its own metadata on any logger it is given, on every
                // request: below debug it gets none and takes its no-logging path.
                response = try await client.execute(
                    request, deadline: .now() + timeouts.total, logger: logger.logLevel <= .debug ? logger : nil)
            }
        } catch {
            throw Self.mapError(error, logger: logger)
        }
        guard (200..<300).contains(response.status.code) else {
            let body = try? await response.body.collect(upTo: 64 * 1024)
            throw Self.mapStatus(response.status, body: body, logger: logger)
        }
        return response
    }

    /// Sends and collects the whole answer.
    /// The Messages API version sent when the client named none.
    static let anthropicVersion = "2023-06-01"

    func sendCollecting(
        _ method: HTTPMethod, _ path: String, body: ByteBuffer?, headers: [(String, String)] = [], logger: Logger
    ) async throws -> ByteBuffer {
        let response = try await send(method, path, body: body, headers: headers, logger: logger)
        let lease = AnswerBufferLease.current
        do {
            var collected = ByteBuffer()
            for try await chunk in response.body {
                guard collected.readableBytes + chunk.readableBytes <= maxResponseBytes else {
                    throw APIError.upstreamFailed("The upstream's answer is larger than the gateway accepts.")
                }
                // Charged as it arrives, so a huge answer is refused before it is all in memory; counted twice
                // (the raw bytes and the translation made from them), since both live until the answer is written.
                try lease?.reserve(2 * chunk.readableBytes)
                collected.writeImmutableBuffer(chunk)
            }
            return collected
        } catch {
            throw Self.mapError(error, logger: logger)
        }
    }

    func encode(_ value: some Encodable) throws -> ByteBuffer {
        do {
            return try WireJSON.encoder().encodeAsByteBuffer(value, allocator: ByteBufferAllocator())
        } catch {
            throw APIError.internalError()
        }
    }

    func decode<T: Decodable>(_ type: T.Type, from body: ByteBuffer, logger: Logger) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: body)
        } catch {
            logger.warning("upstream answer could not be decoded", metadata: ["upstream": .string(endpoint.name), "error": "\(error)"])
            throw APIError.upstreamFailed("The upstream sent an answer that could not be read.")
        }
    }

    static func mapError(_ error: any Error, logger: Logger) -> any Error {
        if error is CancellationError { return error }
        if let clientError = error as? HTTPClientError, clientError == .cancelled { return CancellationError() }
        return UpstreamFailure.apiError(for: error, logger: logger)
    }


    /// The client-facing error for an upstream's non-2xx answer.
    static func mapStatus(_ status: HTTPResponseStatus, body: ByteBuffer?, logger: Logger) -> APIError {
        let message = body.flatMap(upstreamMessage)
        logger.warning("upstream answered with an error", metadata: ["upstream_status": "\(status.code)"])
        switch status.code {
        case 404:
            if let message, message.lowercased().contains("model") {
                return APIError(status: 404, type: "invalid_request_error", code: "model_not_found", message: message, param: "model")
            }
            return APIError(status: 404, type: "invalid_request_error", code: "not_found", message: message ?? "Not found upstream.")
        case 400, 422:
            return APIError(status: 400, type: "invalid_request_error", code: "invalid_request", message: message ?? "The upstream rejected the request.")
        case 408, 504:
            return .upstreamTimeout()
        case 413:
            return APIError(status: 413, type: "invalid_request_error", code: "request_too_large", message: message ?? "The request is too large for the upstream.")
        case 429:
            return APIError(status: 429, type: "rate_limit_error", code: "upstream_rate_limited", message: "The upstream is rate limiting requests.", retryAfter: 1)
        case 503, 529:
            // Overloaded (Anthropic's 529, a server shedding load): worth another upstream, and to an Anthropic client
            // an `overloaded_error` it knows to retry, not a generic failure.
            return APIError(status: 503, type: "upstream_error", code: "upstream_error", message: "The upstream is overloaded; retry shortly.", retryAfter: 1)
        default:
            // 401/403 from the upstream mean the gateway's own credentials are wrong: the client must not
            // mistake that for its own key being refused.
            return .upstreamFailed("The upstream failed with status \(status.code).")
        }
    }

    /// The message of an Ollama (`{"error":"…"}`) or OpenAI (`{"error":{"message":…}}`) error body.
    static func upstreamMessage(_ body: ByteBuffer) -> String? {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: body) else { return nil }
        let message = value["error"]?.stringValue ?? value["error"]?["message"]?.stringValue
        return message.map { String($0.prefix(500)) }
    }
}
