import HTTPTypes
import Hummingbird
import SluiceCore

/// Sets the context's client IP, honouring `X-Forwarded-For` only from trusted proxies.
///
/// Outermost, so logs, limits and usage records all see the same address.
public struct ClientAddressMiddleware: Sendable {
    public typealias Context = SluiceRequestContext
    let resolver: ClientAddressResolver

    public init(resolver: ClientAddressResolver) {
        self.resolver = resolver
    }

    /// Run by ``EdgeMiddleware`` before anything else.
    func resolve(_ request: Request, into context: inout Context) {
        guard !resolver.trusted.isEmpty else { return }
        context.clientIP = resolver.clientAddress(peer: context.remoteAddress?.ipAddress, forwardedFor: request.headers[values: .xForwardedFor])
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let xAPIKey = Self("X-API-Key")!
}
