import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix

/// Failures of the event-loop transport, mapped to client errors by ``UpstreamFailure``.
public enum UpstreamTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No answer byte for the idle timeout (`UpstreamTimeouts.idle`).
    case readTimeout
    /// The whole call passed `UpstreamTimeouts.total`.
    case deadlineExceeded
    /// The connection closed before the answer was complete.
    case remoteConnectionClosed

    public var description: String {
        switch self {
        case .readTimeout: "upstream read timeout"
        case .deadlineExceeded: "upstream deadline exceeded"
        case .remoteConnectionClosed: "upstream closed the connection before the answer was complete"
        }
    }
}

/// Keep-alive HTTP/1.1 connections to one plain-HTTP upstream, owned per event loop: Sluice's data-plane client.
///
/// A call made from a task running on an event loop of the group (every client connection's task runs on the loop
/// that accepted it, see ``EventLoopTaskExecutor``) takes an idle connection of that loop, or opens one there, and
/// its answer arrives on that loop. So forwarding a request costs no thread hand-off and no lock: each loop's idle
/// list is touched by that loop only, like an nginx worker's upstream keep-alive cache. A call from elsewhere uses
/// the group's next loop.
///
/// Measured against AsyncHTTPClient in the README's performance section; AsyncHTTPClient stays for TLS upstreams
/// (hosted APIs, where the network, not the hop, is the cost) and for budget webhooks.
///
/// The most recently parked connection is taken first; at most ``LoopConnections/parkedMax`` stay parked per loop, each
/// for at most ``parkedLimit``. A request that could not be wholly written to a parked connection
/// the upstream had just closed is sent once more on a new one; a request the upstream may have read never is.
public final class UpstreamConnectionPool: Sendable {
    let host: String
    let port: Int
    /// The `Host` header: `host[:port]` as the base URL gave it.
    let authority: String
    /// The base URL's path (`/ollama` in `http://box/ollama`), put before every request path.
    let pathPrefix: String
    let timeouts: UpstreamTimeouts
    /// How long a connection stays parked unused: by default 4 s, below the 5 s keep-alive of uvicorn (vLLM) and
    /// cpp-httplib (llama.cpp's server), so Sluice closes an idle connection before the upstream does, instead of
    /// racing the upstream's close with its next request.
    let parkedLimit: TimeAmount
    private let loops: [ObjectIdentifier: LoopConnections]
    private let group: MultiThreadedEventLoopGroup

    /// nil unless `baseURL` is `http://host[:port][/prefix]`.
    public init?(
        baseURL: String, timeouts: UpstreamTimeouts, parkedLimit: TimeAmount = .seconds(4), group: MultiThreadedEventLoopGroup = .singleton
    ) {
        guard baseURL.lowercased().hasPrefix("http://") else { return nil }
        let rest = baseURL.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let path = rest.dropFirst(authority.count)
        guard !authority.isEmpty, !authority.contains("@"), !path.contains("?"), !path.contains("#") else { return nil }
        let host: Substring
        var port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let given = Int(after.dropFirst()) else { return nil }
                port = given
            }
        } else if let colon = authority.lastIndex(of: ":") {
            guard let given = Int(authority[authority.index(after: colon)...]) else { return nil }
            host = authority[..<colon]
            port = given
        } else {
            host = authority
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
        self.authority = String(authority)
        self.pathPrefix = path.hasSuffix("/") ? String(path.dropLast()) : String(path)
        self.timeouts = timeouts
        self.parkedLimit = parkedLimit
        self.group = group
        var loops: [ObjectIdentifier: LoopConnections] = [:]
        for loop in group.makeIterator() {
            loops[ObjectIdentifier(loop)] = LoopConnections(eventLoop: loop)
        }
        self.loops = loops
    }

    private func connections() -> LoopConnections {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, let mine = loops[ObjectIdentifier(current)] {
            return mine
        }
        return loops[ObjectIdentifier(group.next())]!
    }

    /// Sends one request and returns once the answer's head has arrived; the body streams after it, read as the
    /// caller iterates it (at most ``UpstreamExchange/highWater`` bytes are read ahead).
    ///
    /// - Throws: ``UpstreamTransportError``, NIO's connection errors (refused, connect timeout), or
    ///   `CancellationError` when the calling task is cancelled or its client has left (``ClientDeparture``), then or
    ///   while the body is read.
    public func execute(
        method: HTTPMethod, path: String, headers: HTTPHeaders, body: ByteBuffer?, deadline: NIODeadline
    ) async throws -> HTTPClientResponse {
        let connections = connections()
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: pathPrefix + path, headers: headers)
        head.headers.replaceOrAdd(name: "Host", value: authority)
        if let body {
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        } else if method == .POST || method == .PUT {
            head.headers.replaceOrAdd(name: "Content-Length", value: "0")
        }
        let departure = ClientDeparture.current
        if departure?.hasLeft == true { throw CancellationError() }
        let exchange = UpstreamExchange(eventLoop: connections.eventLoop, head: head, body: body, departure: departure)
        if let departure, !departure.watch(ObjectIdentifier(exchange), cancel: { exchange.cancel() }) {
            // Gone in between: the exchange's promise is settled on its loop, never left pending.
            exchange.cancel()
            throw CancellationError()
        }
        let answerHead = try await withTaskCancellationHandler {
            let future: EventLoopFuture<HTTPResponseHead>
            if connections.eventLoop.inEventLoop {
                future = connections.start(exchange, pool: self, deadline: deadline)
            } else {
                future = connections.eventLoop.flatSubmit { connections.start(exchange, pool: self, deadline: deadline) }
            }
            return try await future.get()
        } onCancel: {
            exchange.cancel()
        }
        return HTTPClientResponse(
            version: answerHead.version, status: answerHead.status, headers: answerHead.headers,
            body: .stream(UpstreamAnswerBody(exchange)))
    }
}

/// One event loop's idle connections to one upstream.
///
/// `@unchecked Sendable`: `idle` is read and written only on `eventLoop` (every entry point asserts it), so the
/// pool may hold one per loop and hand it to that loop's tasks.
final class LoopConnections: @unchecked Sendable {
    let eventLoop: any EventLoop
    /// Parked connections; the last is the most recently parked, and the next taken.
    private var idle: [UpstreamConnectionHandler] = []

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func start(_ exchange: UpstreamExchange, pool: UpstreamConnectionPool, deadline: NIODeadline) -> EventLoopFuture<HTTPResponseHead> {
        eventLoop.preconditionInEventLoop()
        // Cancelled before it reached its loop: nothing to send, and no deadline to keep it alive.
        guard !exchange.isFinished else { return exchange.headFuture }
        exchange.scheduleDeadline(deadline)
        send(exchange, pool: pool, mayReuse: true)
        return exchange.headFuture
    }

    /// Sends on the most recently parked connection that is still open, or on a new one.
    func send(_ exchange: UpstreamExchange, pool: UpstreamConnectionPool, mayReuse: Bool) {
        eventLoop.preconditionInEventLoop()
        guard !exchange.isFinished else { return }
        if mayReuse {
            while let connection = idle.popLast() {
                if connection.isOpen {
                    connection.begin(exchange, reused: true)
                    return
                }
            }
        }
        let timeouts = pool.timeouts
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeouts.connect)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(UpstreamConnectionHandler(connections: self, pool: pool))
                }
            }
            .connect(host: pool.host, port: pool.port)
            .flatMap { channel in channel.pipeline.handler(type: UpstreamConnectionHandler.self) }
            .whenComplete { result in
                switch result {
                case .success(let connection): connection.begin(exchange, reused: false)
                case .failure(let error): exchange.fail(error)
                }
            }
    }

    /// Parks `connection` for the next call; false when the loop keeps enough already, and the caller closes it.
    func park(_ connection: UpstreamConnectionHandler) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard idle.count < Self.parkedMax else { return false }
        idle.append(connection)
        return true
    }

    /// Parked connections one loop keeps per upstream, as nginx's `keepalive` per worker: a burst of calls leaves
    /// this many open, not one per call.
    static let parkedMax = 64



    func remove(_ connection: UpstreamConnectionHandler) {
        eventLoop.preconditionInEventLoop()
        idle.removeAll { $0 === connection }
    }
}
