import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import SluiceUpstream

/// The floors `scripts/bench` compares Sluice with: Hummingbird forwarding one route and nothing else (no auth,
/// validation, limits, accounting, metrics or logging), in one of two ways:
///
/// - `library`: the libraries' own path, AsyncHTTPClient called from Hummingbird's handler task, which runs on the
///   global concurrent executor;
/// - `data-plane`: Sluice's data plane, the connection's task pinned to its event loop (``EventLoopTaskExecutor``)
///   and the upstream reached through that loop's ``UpstreamConnectionPool``.
///
/// Whatever the bench measures above the data-plane floor is what Sluice's features cost, and the gap between the
/// two floors is what the data plane gained over the library path.
///
///     sluice-bare-proxy PORT UPSTREAM_BASE_URL [library|data-plane]
@main
struct BareProxy {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard (3...4).contains(arguments.count), let port = Int(arguments[1]),
            arguments.count == 3 || ["library", "data-plane"].contains(arguments[3])
        else {
            FileHandle.standardError.write(Data("usage: sluice-bare-proxy PORT UPSTREAM_BASE_URL [library|data-plane]\n".utf8))
            exit(2)
        }
        let dataPlane = arguments.count == 4 && arguments[3] == "data-plane"
        let target = arguments[2] + "/v1/chat/completions"
        let timeouts = UpstreamTimeouts()
        let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: .upstream(timeouts: timeouts))
        let pool = dataPlane ? UpstreamConnectionPool(baseURL: arguments[2], timeouts: timeouts) : nil
        let router = Router()
        router.post("/v1/chat/completions") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            let answer: HTTPClientResponse
            if let pool {
                answer = try await pool.execute(
                    method: .POST, path: "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: body,
                    deadline: .now() + timeouts.total)
            } else {
                var upstream = HTTPClientRequest(url: target)
                upstream.method = .POST
                upstream.headers.add(name: "Content-Type", value: "application/json")
                upstream.body = .bytes(body)
                answer = try await client.execute(upstream, timeout: timeouts.total)
            }
            let answerBody = try await answer.body.collect(upTo: 64 << 20)
            return Response(
                status: .init(code: Int(answer.status.code)), headers: [.contentType: "application/json"], body: .init(byteBuffer: answerBody))
        }
        let server: HTTPServerBuilder =
            dataPlane ? HTTPServerBuilder { responder in PinnedHTTP1Channel(inner: HTTP1Channel(responder: responder)) } : .http1()
        let app = Application(
            router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "sluice"))
        try await app.runService()
        try await client.shutdown()
    }
}

/// Hummingbird's HTTP/1 channel with its connection task kept on the connection's event loop, as Sluice's is.
struct PinnedHTTP1Channel: ServerChildChannel {
    let inner: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        inner.setup(channel: channel, logger: logger)
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor.of(value.channel.eventLoop)) {
            await inner.handle(value: value, logger: logger)
        }
    }
}
