import HTTPTypes
import Hummingbird
import SluiceCore

/// Sets the context's client IP, honouring `X-Forwarded-For` only from trusted proxies.
///
/// Outermost, so logs, limits and usage records all see the same address.
public struct ClientAddressMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext
    let resolver: ClientAddressResolver

    public init(resolver: ClientAddressResolver) {
        self.resolver = resolver
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !resolver.trusted.isEmpty else { return try await next(request, context) }
        var context = context
        context.clientIP = resolver.clientAddress(peer: context.remoteAddress?.ipAddress, forwardedFor: request.headers[values: .xForwardedFor])
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let xAPIKey = Self("X-API-Key")!
}
