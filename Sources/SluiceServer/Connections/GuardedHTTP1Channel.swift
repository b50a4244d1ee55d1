import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import SluiceUpstream

/// Hummingbird's HTTP/1 child channel with a ``ConnectionGuard`` in it and `max-connections` enforced.
///
/// `HTTP1Channel`'s `additionalChannelHandlers` come after the conversion to HTTP types, where the protocol version
/// (and so HTTP/1.0's keep-alive default) is gone, so this builds the same pipeline with the guard before that
/// conversion: byte watch, NIO's HTTP/1 codec, guard, HTTP types codec, the additional handlers (the write timeout),
/// Hummingbird's connection state handler (which closes idle connections on graceful shutdown).
struct GuardedHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    let responder: HTTPChannelHandler.Responder
    let limits: ConnectionLimits
    let connections: OpenConnections
    let metrics: GatewayMetrics
    /// Handlers on HTTP types, where `HTTP1Channel` puts its own (the write timeout).
    let additionalChannelHandlers: @Sendable () -> [any RemovableChannelHandler]

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // A refused connection still gets a pipeline: a failed setup would end the server's accept loop.
            let admitted = connections.admit()
            let connectionGuard = ConnectionGuard(limits: limits, metrics: metrics, logger: logger)
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(ConnectionGuard.ByteWatch(connectionGuard))
            var decoderLimits = NIOHTTPDecoderLimitConfiguration()
            decoderLimits.maxHeaderFieldSize = 80 * 1024
            decoderLimits.maxHeaderListSize = 80 * 1024
            decoderLimits.maxHeaderFieldCount = 1000
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,  // Hummingbird's loop reads one request after another
                withErrorHandling: false,  // the guard answers malformed heads
                withOutboundHeaderValidation: false,  // HTTP types validate already
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: decoderLimits
            )
            try pipeline.addHandler(connectionGuard)
            try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try pipeline.addHandlers(additionalChannelHandlers())
            try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
            let value = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
            if admitted {
                let connections = connections
                channel.closeFuture.whenComplete { _ in connections.release() }
            } else {
                metrics.clientConnectionClosed(.maxConnections)
                logger.warning(
                    "client connection closed",
                    metadata: [
                        "reason": .string(ConnectionCloseReason.maxConnections.rawValue), "max_connections": .stringConvertible(connections.limit),
                        "client_ip": .string(channel.remoteAddress?.ipAddress ?? "unknown"),
                    ])
                channel.close(promise: nil)
            }
            return value
        }
    }

    /// The connection's task runs on the event loop that accepted it, so its upstream calls (``UpstreamConnectionPool``)
    /// and its reads and writes stay on one thread; and those calls stop when the guard sees the client go.
    func handle(value: Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor.of(value.channel.eventLoop)) {
            // No guard in the pipeline means the connection is already torn down (a client that reset right after its
            // request): its calls must not run for nobody.
            let departure = (try? await value.channel.pipeline.handler(type: ConnectionGuard.self).map(\.departure).get()) ?? .departed()
            await ClientDeparture.$current.withValue(departure) {
                await handleHTTP(asyncChannel: value, logger: logger)
            }
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with Sluice's client connection limits.
    static func guardedHTTP1(
        limits: ConnectionLimits, metrics: GatewayMetrics,
        additionalChannelHandlers: @escaping @Sendable () -> [any RemovableChannelHandler] = { [] }
    ) -> HTTPServerBuilder {
        let connections = OpenConnections(limit: limits.maxConnections, metrics: metrics)
        return HTTPServerBuilder { responder in
            GuardedHTTP1Channel(
                responder: responder, limits: limits, connections: connections, metrics: metrics,
                additionalChannelHandlers: additionalChannelHandlers)
        }
    }
}
