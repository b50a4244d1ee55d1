import Logging
import NIOCore
import NIOHTTP1
import SluiceUpstream

/// Holds one client connection to the time limits of ``ConnectionLimits`` and closes it when HTTP says so.
///
/// It sits between NIO's HTTP/1 codec and the conversion to HTTP types, where it still sees the protocol version and
/// keep-alive. What it does, as nginx does:
/// - the head must be complete within `header` of accept (or of the first byte of a later request): else 408, close;
/// - while the handler asks for body bytes, none may be missing for longer than `body`: else 408, close, and the
///   handler's read fails with ``ClientConnectionError/bodyTimeout``;
/// - a kept-alive connection with no request for `idle` is closed without an answer;
/// - a request without keep-alive (HTTP/1.0 by default, or `Connection: close`) is closed after its answer;
/// - an answer sent before the body was read (413, 401) is followed by reading and dropping the rest of the body
///   (bounded in bytes and time), then closing, so a client that writes its whole body before reading sees it;
/// - a head that cannot be parsed is answered 400 in OpenAI's error shape; a body that cannot be parsed fails the
///   handler's read, which answers 400; a client that leaves mid-body fails it with
///   ``ClientConnectionError/disconnected``, which is logged and counted as 499.
///
/// One timer at a time, rescheduled only when a deadline moves earlier, so a request costs at most a couple of
/// scheduled tasks; body reads only note the time.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Where the reading of the current request stands.
    private enum Reading {
        /// Nothing of the next request has arrived: a kept-alive connection waiting.
        case between(since: NIODeadline)
        /// The connection just opened, or bytes of a head arrived: waiting for the head to complete.
        case head(since: NIODeadline)
        /// The head is in; body parts (or the end) follow.
        case body
        /// Answered before the body was read: dropping the rest of it, then closing.
        case lingering(until: NIODeadline, dropped: Int)
        /// The body's framing failed; nothing more can be read from this connection.
        case broken
        /// Closing: everything further is dropped.
        case closing
    }

    private enum Expiry {
        case header, body, idle, linger
    }

    private let limits: ConnectionLimits
    private let headerTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let lingerTime: TimeAmount
    private let metrics: GatewayMetrics
    private let logger: Logger
    private var reading: Reading
    /// Requests whose head was read and whose response has not ended.
    private var pending = 0
    /// Whether the latest request allows another one on this connection.
    private var keepAlive = true
    /// The same, per request whose response has not ended, oldest first: the next request's head can arrive before
    /// the previous answer's end passes here, and must not decide whether that answer closes the connection.
    private var keepAlives: [Bool] = []
    /// A response head was written and its end not yet.
    private var responding = false
    /// The gateway asked for bytes (a read passed here) and none have come since.
    private var readRequested = false
    /// The last body read, or the moment the gateway asked for more.
    private var lastRead: NIODeadline
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture
    /// Told when the client goes while an answer is pending, so the upstream calls serving it stop at once.
    let departure = ClientDeparture()

    init(limits: ConnectionLimits, metrics: GatewayMetrics, logger: Logger) {
        self.limits = limits
        self.headerTimeout = TimeAmount(limits.headerTimeout)
        self.bodyTimeout = TimeAmount(limits.bodyTimeout)
        self.idleTimeout = TimeAmount(limits.idleTimeout)
        self.lingerTime = TimeAmount(limits.lingerTime)
        self.metrics = metrics
        self.logger = logger
        // Set again from the event loop's clock when the connection becomes active.
        self.reading = .head(since: .uptimeNanoseconds(0))
        self.lastRead = .uptimeNanoseconds(0)
    }

    // MARK: Inbound

    func handlerAdded(context: ChannelHandlerContext) {
        // The header timeout of the first request runs from accept.
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        reading = .head(since: context.eventLoop.now)
        arm(context)
    }

    /// Called by ``ByteWatch`` when bytes arrive, before they are decoded.
    func bytesArrived(context: ChannelHandlerContext) {
        if case .between = reading {
            reading = .head(since: context.eventLoop.now)
            arm(context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            switch reading {
            case .between, .head, .body:
                reading = .body
                lastRead = context.eventLoop.now
                pending += 1
                keepAlive = head.isKeepAlive
                keepAlives.append(head.isKeepAlive)
                arm(context)
            case .lingering, .broken, .closing:
                return
            }
        case .body(let part):
            switch reading {
            case .lingering(let until, let dropped):
                lastRead = context.eventLoop.now
                let total = dropped + part.readableBytes
                if total > limits.lingerBytes {
                    close(context)
                } else {
                    reading = .lingering(until: until, dropped: total)
                }
                return
            case .broken, .closing:
                return
            case .between, .head, .body:
                lastRead = context.eventLoop.now
            }
        case .end:
            switch reading {
            case .lingering:
                // The whole body was read: the client will see the answer. Close as promised.
                close(context)
                return
            case .broken, .closing:
                return
            case .between, .head, .body:
                reading = .between(since: context.eventLoop.now)
                arm(context)
            }
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readRequested = false
        if case .lingering = reading {
            // Nobody upstream of this handler reads any more: keep draining on the client's behalf.
            context.read()
            return
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch reading {
        case .broken:
            // The decoder keeps failing on what the client still sends; the handler's 400 closes the connection.
            return
        case .lingering, .closing:
            close(context)
        case .between, .head:
            if let parserError = error as? HTTPParserError, parserError != .invalidEOFState, pending == 0, context.channel.isActive {
                // The head itself is malformed: there is no request for the router to answer.
                logger.info("malformed request head", metadata: ["client_ip": clientIP(context), "error": "\(error)"])
                answer(.malformed, context: context)
            } else {
                context.fireErrorCaught(error)
            }
        case .body:
            // `invalidEOFState` is the decoder meeting the end of the stream mid-body: the client left.
            if let parserError = error as? HTTPParserError, parserError != .invalidEOFState, context.channel.isActive {
                // The body's framing is broken: the handler reading it fails and answers 400, then the connection closes.
                reading = .broken
                context.fireErrorCaught(error)
            } else {
                reading = .closing
                context.fireErrorCaught(ClientConnectionError.disconnected)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Hummingbird keeps half-closed connections open; a client that closes its side before its answer has ended
        // has gone, as nginx takes it.
        if let event = event as? ChannelEvent, event == .inputClosed, pending > 0 { departure.clientLeft() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        departure.clientLeft()
        if case .body = reading {
            reading = .closing
            context.fireErrorCaught(ClientConnectionError.disconnected)
        }
        reading = .closing
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if !readRequested {
            readRequested = true
            lastRead = context.eventLoop.now
            if case .body = reading { arm(context) }
        }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .closing = reading {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(var head):
            responding = true
            // The connection closes after this answer when the client asked for that, or when the answer comes before
            // the body was read (it lingers, then closes): say so, or a pooling client would send its next request
            // on a connection about to close.
            let closes: Bool
            switch reading {
            // A body being read belongs to this answer's request only when no later request has begun: a pooling
            // client may send its next request as soon as it has this answer's bytes, before its end passes here.
            case .body where pending <= 1, .broken: closes = true
            case .body, .between, .head, .lingering, .closing: closes = !(keepAlives.first ?? keepAlive)
            }
            if closes, !head.headers.contains(name: "connection") {
                head.headers.add(name: "connection", value: "close")
                context.write(wrapOutboundOut(.head(head)), promise: promise)
                return
            }
        case .body:
            break
        case .end:
            responding = false
            pending = max(0, pending - 1)
            let keepsAlive = keepAlives.isEmpty ? keepAlive : keepAlives.removeFirst()
            switch reading {
            case .body where pending == 0:
                // Answered before the body was read: drop the rest, bounded, then close.
                reading = .lingering(until: context.eventLoop.now + lingerTime, dropped: 0)
                lastRead = context.eventLoop.now
                context.writeAndFlush(data, promise: promise)
                context.read()
                arm(context)
                return
            case .broken:
                closeAfter(data, context: context, promise: promise)
                return
            case .body:
                // The body being read is the next request's: this answer's request was read whole.
                break
            case .between, .head:
                if !keepsAlive {
                    closeAfter(data, context: context, promise: promise)
                    return
                }
                if pending == 0 {
                    // The wait for the next request starts now, not when its bytes or the previous request came.
                    let now = context.eventLoop.now
                    if case .head = reading { reading = .head(since: now) } else { reading = .between(since: now) }
                    arm(context)
                }
            case .lingering, .closing:
                break
            }
        }
        context.write(data, promise: promise)
    }

    // MARK: Timer

    /// When the current state runs out, and what then; nil when no limit applies (a response is being produced,
    /// or the gateway is not asking for body bytes).
    private var nextDeadline: (at: NIODeadline, expiry: Expiry)? {
        switch reading {
        case .between(let since):
            if pending == 0 { return (since + idleTimeout, Expiry.idle) }
        case .head(let since):
            if pending == 0 { return (since + headerTimeout, Expiry.header) }
        case .body:
            if readRequested { return (lastRead + bodyTimeout, Expiry.body) }
        case .lingering(let until, _):
            return (min(until, lastRead + bodyTimeout), Expiry.linger)
        case .broken, .closing:
            break
        }
        return nil
    }

    /// Makes sure a timer fires no later than the current deadline; a timer firing early just looks again.
    private func arm(_ context: ChannelHandlerContext) {
        guard let deadline = nextDeadline?.at else { return }
        if timer != nil, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = .distantFuture
            fire(context)
        }
    }

    private func fire(_ context: ChannelHandlerContext) {
        guard let next = nextDeadline else { return }
        guard next.at <= context.eventLoop.now else {
            arm(context)
            return
        }
        switch next.expiry {
        case .header:
            record(.headerTimeout, context: context)
            answer(.headerTimeout, context: context)
        case .body:
            record(.bodyTimeout, context: context)
            if responding {
                close(context)
            } else {
                answer(.bodyTimeout, context: context)
            }
            // The handler waiting for the body learns why it will never come, and accounts the request as 408.
            context.fireErrorCaught(ClientConnectionError.bodyTimeout)
        case .idle:
            record(.idleTimeout, context: context)
            close(context)
        case .linger:
            logger.debug("lingering close ended before the client finished its body", metadata: ["client_ip": clientIP(context)])
            close(context)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        timerDeadline = .distantFuture
    }

    // MARK: Closing

    private func record(_ reason: ConnectionCloseReason, context: ChannelHandlerContext) {
        metrics.clientConnectionClosed(reason)
        // Idle keep-alive connections closing is routine: log it only when debugging.
        let level: Logger.Level = reason == .idleTimeout ? .debug : .info
        logger.log(level: level, "client connection closed", metadata: ["reason": .string(reason.rawValue), "client_ip": clientIP(context)])
    }

    /// Writes a whole answer of the guard's own, then closes once it is out.
    private func answer(_ answer: CannedAnswer, context: ChannelHandlerContext) {
        reading = .closing
        cancelTimer()
        context.write(wrapOutboundOut(.head(answer.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(answer.body))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// Writes the last part of a response, then closes once it is out.
    private func closeAfter(_ data: NIOAny, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        reading = .closing
        cancelTimer()
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(data, promise: written)
        written.futureResult.assumeIsolated().whenComplete { result in
            promise?.completeWith(result)
            context.close(promise: nil)
        }
    }

    private func close(_ context: ChannelHandlerContext) {
        reading = .closing
        cancelTimer()
        context.close(promise: nil)
    }

    private func clientIP(_ context: ChannelHandlerContext) -> Logger.MetadataValue {
        .string(context.channel.remoteAddress?.ipAddress ?? "unknown")
    }
}

extension ConnectionGuard {
    /// Tells the guard when raw bytes arrive, which its place after the decoder hides: the first byte of a request
    /// on a kept-alive connection ends its idle wait and starts the header timeout.
    final class ByteWatch: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer

        private let guardHandler: ConnectionGuard
        private var guardContext: ChannelHandlerContext?

        init(_ guardHandler: ConnectionGuard) {
            self.guardHandler = guardHandler
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if guardContext == nil {
                guardContext = try? context.pipeline.syncOperations.context(handler: guardHandler)
            }
            if let guardContext { guardHandler.bytesArrived(context: guardContext) }
            context.fireChannelRead(data)
        }

        func channelInactive(context: ChannelHandlerContext) {
            guardContext = nil
            context.fireChannelInactive()
        }
    }
}

@available(*, unavailable)
extension ConnectionGuard: Sendable {}

@available(*, unavailable)
extension ConnectionGuard.ByteWatch: Sendable {}
