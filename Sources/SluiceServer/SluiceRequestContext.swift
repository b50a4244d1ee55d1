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
    /// The client's IP address: the peer's, or from `X-Forwarded-For` when the peer is a trusted proxy.
    public var clientIP: String?
    /// Who is calling; set by the access middleware.
    public var identity: ClientIdentity = .anonymous

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.requestID = ""
        self.remoteAddress = source.channel.remoteAddress
        self.trace = RequestTrace()
        self.clientIP = source.channel.remoteAddress?.ipAddress
    }
}
