import CoreMetrics
import Logging
import NIOCore

/// Closes a client connection that has accepted no byte for `timeout` while the gateway had bytes to send it.
///
/// A client that stops reading a stream fills its socket buffer, then the channel's outbound buffer; from then on
/// the relay's writes wait, and so would the upstream slot and the upstream call behind it, until the upstream
/// timeout (minutes). Like nginx's `send_timeout`, the clock runs only while the channel is unwritable, i.e. while
/// the client is the one holding things up, and restarts on every byte it takes. Closing the channel fails the
/// pending write, and the relay's usual client-disconnect path then cancels the upstream call and frees the slot.
final class ClientWriteTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny

    private let timeout: TimeAmount
    private let logger: Logger
    private let closed: CoreMetrics.Counter
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger, closed: CoreMetrics.Counter) {
        self.timeout = timeout
        self.logger = logger
        self.closed = closed
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            deadline?.cancel()
            deadline = nil
        } else if deadline == nil {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: timeout) { [timeout, logger, closed] in
                let context = loopBound.value
                closed.increment()
                logger.info(
                    "client accepted no data within the write timeout; connection closed",
                    metadata: ["timeout_ms": .stringConvertible(timeout.nanoseconds / 1_000_000)])
                context.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}
