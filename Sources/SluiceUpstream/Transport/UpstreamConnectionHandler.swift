import NIOCore
import NIOHTTP1

/// One pooled upstream connection: writes an exchange's request and feeds the answer to it, then parks itself on its
/// loop when the answer was complete and the upstream keeps the connection alive.
///
/// `@unchecked Sendable` (the pool's idle list and the completion of a connect hold it): all of its state is touched
/// on its channel's event loop only, as for any channel handler.
final class UpstreamConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private unowned let connections: LoopConnections
    private unowned let pool: UpstreamConnectionPool
    private var context: ChannelHandlerContext?
    private var exchange: UpstreamExchange?
    /// The exchange was sent on a connection that had served one before.
    private var reused = false
    /// Any byte of the current answer arrived.
    private var answered = false
    private var keepAlive = true
    private var readingPaused = false

    init(connections: LoopConnections, pool: UpstreamConnectionPool) {
        self.connections = connections
        self.pool = pool
    }

    var isOpen: Bool { context?.channel.isActive ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func begin(_ exchange: UpstreamExchange, reused: Bool) {
        guard let context, context.channel.isActive else {
            exchange.fail(UpstreamTransportError.remoteConnectionClosed)
            return
        }
        guard !exchange.isFinished else {
            // Cancelled while the connection was opening: it is fresh and idle, so it serves the next call.
            connections.park(self)
            return
        }
        self.exchange = exchange
        self.reused = reused
        answered = false
        keepAlive = true
        exchange.connection = self
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let body = exchange.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange else { return }
        answered = true
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
            self.exchange = nil
            exchange.connection = nil
            resumeReading()
            // Parked before the caller hears of the end, so its next call finds the connection idle.
            if keepAlive {
                connections.park(self)
            } else {
                context.close(promise: nil)
            }
            exchange.finish()
        }
    }

    /// The caller read below the exchange's low-water mark.
    func resumeReading() {
        guard readingPaused, let context else { return }
        readingPaused = false
        context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connections.remove(self)
        if let exchange {
            self.exchange = nil
            exchange.connection = nil
            if reused && !answered {
                // The upstream closed a parked connection as the request went out: it never read the request.
                connections.send(exchange, pool: pool, mayReuse: false)
            } else {
                exchange.fail(UpstreamTransportError.remoteConnectionClosed)
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's decoder reports an answer cut short by the close as a parser error.
        let error = (error as? HTTPParserError) == .invalidEOFState ? UpstreamTransportError.remoteConnectionClosed : error
        if let exchange {
            self.exchange = nil
            exchange.connection = nil
            if reused && !answered, error is IOError {
                connections.send(exchange, pool: pool, mayReuse: false)
            } else {
                exchange.fail(error)
            }
        }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // Waiting for an answer: the idle timeout. Parked: idle too long, so it goes.
        if readingPaused { return }  // the caller is slow, not the upstream
        if let exchange {
            self.exchange = nil
            exchange.connection = nil
            exchange.fail(UpstreamTransportError.readTimeout)
        }
        context.close(promise: nil)
    }

    /// Drops the connection under an exchange that ended early (cancelled, timed out, abandoned by its reader).
    func abort(_ exchange: UpstreamExchange) {
        guard self.exchange === exchange else { return }
        self.exchange = nil
        context?.close(promise: nil)
    }
}
