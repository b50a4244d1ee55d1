import AsyncHTTPClient
import ServiceLifecycle

/// Owns the shared upstream `HTTPClient`: runs until graceful shutdown, then shuts the client down.
///
/// Listed before the HTTP server in the service group, so it stops after the server has drained its streams.
public struct HTTPClientService: Service {
    public let client: HTTPClient

    public init(client: HTTPClient) {
        self.client = client
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
