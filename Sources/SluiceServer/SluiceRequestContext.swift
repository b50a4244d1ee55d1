import Hummingbird
import NIOCore

/// Per-request state: the request ID, the peer address and the trace accounting fills in.
public struct SluiceRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The `X-Request-ID` of this request: the client's when sane, else a new one.
    public var requestID: String
    public let remoteAddress: SocketAddress?
    /// What the handlers learned about the request (model, upstream, tokens), read when it completes.
    public let trace: RequestTrace

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.requestID = ""
        self.remoteAddress = source.channel.remoteAddress
        self.trace = RequestTrace()
    }

    /// The peer's IP address, without port.
    public var clientIP: String? { remoteAddress?.ipAddress }
}
