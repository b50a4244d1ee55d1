import NIOCore
import NIOHTTP1

/// One pooled upstream connection: writes an exchange's request and feeds the answer to it, then parks itself on its
/// loop when the answer was complete and the upstream keeps the connection alive.
///
/// One lazy timer per connection serves both limits: while an exchange is in flight, `UpstreamTimeouts.idle` since
/// the request went out or the last byte arrived (as AsyncHTTPClient's read timeout), not counting time the reader
/// holds reading paused; while parked, ``UpstreamConnectionPool/parkedLimit``. Each read only stamps the time, so a
/// chunk of a stream costs no timer of its own.
///
/// `@unchecked Sendable` (the pool's idle list and the completion of a connect hold it): all of its state is touched
/// on its channel's event loop only, as for any channel handler.
final class UpstreamConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    /// Strong: a parked connection keeps its loop's list alive until it closes, at most `parkedLimit` later.
    private let connections: LoopConnections
    private let pool: UpstreamConnectionPool
    private var context: ChannelHandlerContext?
    private var exchange: UpstreamExchange?
    /// The exchange was sent on a connection that had served one before.
    private var reused = false
    /// The whole request reached the socket: from then on the upstream may have read it, so it is never sent again.
    private var requestWritten = false
    /// Any byte of the current answer arrived.
    private var answered = false
    private var keepAlive = true
    private var readingPaused = false
    /// When the request went out, a byte arrived, or the connection was parked.
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(connections: LoopConnections, pool: UpstreamConnectionPool) {
        self.connections = connections
        self.pool = pool
    }

    var isOpen: Bool { context?.channel.isActive ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func begin(_ exchange: UpstreamExchange, reused: Bool) {
        guard let context, context.channel.isActive else {
            exchange.fail(UpstreamTransportError.remoteConnectionClosed)
            return
        }
        guard !exchange.isFinished else {
            // Cancelled while the connection was opening: it is fresh and idle, so it serves the next call.
            park()
            return
        }
        self.exchange = exchange
        self.reused = reused
        requestWritten = false
        answered = false
        keepAlive = true
        exchange.connection = self
        touch()
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let body = exchange.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenSuccess { [weak self, weak exchange] in
            if let self, let exchange, self.exchange === exchange { self.requestWritten = true }
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
    }

    private func park() {
        exchange = nil
        touch()
        if !connections.park(self) { context?.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange else { return }
        answered = true
        lastActivity = .now()
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            exchange.receive(head)
        case .body(let chunk):
            if exchange.receive(chunk) && !readingPaused {
                readingPaused = true
                context.channel.setOption(.autoRead, value: false).whenFailure { _ in }
            }
        case .end:
            exchange.connection = nil
            resumeReading()
            // Parked before the caller hears of the end, so its next call finds the connection idle.
            if keepAlive {
                park()
            } else {
                self.exchange = nil
                context.close(promise: nil)
            }
            exchange.finish()
        }
    }

    /// The caller read below the exchange's low-water mark.
    func resumeReading() {
        guard readingPaused, let context else { return }
        readingPaused = false
        lastActivity = .now()
        context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connections.remove(self)
        timer?.cancel()
        timer = nil
        endExchange(UpstreamTransportError.remoteConnectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's decoder reports an answer cut short by the close as a parser error.
        endExchange((error as? HTTPParserError) == .invalidEOFState ? UpstreamTransportError.remoteConnectionClosed : error)
        context.close(promise: nil)
    }

    /// The connection failed under its exchange. A request that never wholly reached a reused connection (the upstream
    /// closed it as the request went out) goes once more on a new one; any other fails, and the gateway's retry policy
    /// decides, since the upstream may have read it.
    private func endExchange(_ error: any Error) {
        guard let exchange else { return }
        self.exchange = nil
        exchange.connection = nil
        if reused && !requestWritten && !answered {
            connections.send(exchange, pool: pool, mayReuse: false)
        } else {
            exchange.fail(error)
        }
    }

    /// Drops the connection under an exchange that ended early (cancelled, timed out, abandoned by its reader).
    func abort(_ exchange: UpstreamExchange) {
        guard self.exchange === exchange else { return }
        self.exchange = nil
        context?.close(promise: nil)
    }

    /// Restarts the limit from now: arms the timer if none is waiting, or brings it forward when the limit is now the
    /// shorter one (a connection parked after its first answer, whose timer still waits for the idle timeout).
    private func touch() {
        lastActivity = .now()
        guard let context else { return }
        let due = lastActivity + limit
        if timer != nil, let armed = timerDeadline, armed <= due { return }
        timer?.cancel()
        arm(context.eventLoop, at: due)
    }

    private var limit: TimeAmount { exchange == nil ? pool.parkedLimit : pool.timeouts.idle }

    private func arm(_ eventLoop: any EventLoop, at deadline: NIODeadline) {
        timerDeadline = deadline
        timer = eventLoop.scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.timerDeadline = nil
            self.timerFired(eventLoop)
        }
    }

    private func timerFired(_ eventLoop: any EventLoop) {
        guard let context, context.channel.isActive else { return }
        let due = lastActivity + limit
        // The reader is slow, not the upstream; or a byte came since the timer was set.
        if readingPaused || due > .now() {
            arm(eventLoop, at: readingPaused ? .now() + limit : due)
            return
        }
        if let exchange {
            self.exchange = nil
            exchange.connection = nil
            exchange.fail(UpstreamTransportError.readTimeout)
        }
        context.close(promise: nil)
    }
}
