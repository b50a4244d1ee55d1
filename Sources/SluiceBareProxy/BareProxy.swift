import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import SluiceUpstream

/// The floor `scripts/bench` compares Sluice with: Hummingbird and AsyncHTTPClient forwarding one route and
/// nothing else (no auth, validation, limits, accounting, metrics or logging).
///
/// It runs with Sluice's own server and upstream-client settings, so whatever the bench measures above it is
/// what Sluice's features cost, and whatever it measures below it is what the stack itself costs.
///
///     sluice-bare-proxy PORT UPSTREAM_BASE_URL
@main
struct BareProxy {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 3, let port = Int(arguments[1]) else {
            FileHandle.standardError.write(Data("usage: sluice-bare-proxy PORT UPSTREAM_BASE_URL\n".utf8))
            exit(2)
        }
        let target = arguments[2] + "/v1/chat/completions"
        let client = HTTPClient(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: .upstream(timeouts: UpstreamTimeouts()))
        let pool = ProcessInfo.processInfo.environment["BARE_PROXY_POOL"] == "1"
            ? UpstreamConnectionPool(baseURL: arguments[2], timeouts: UpstreamTimeouts()) : nil
        let router = Router()
        router.post("/v1/chat/completions") { request, _ -> Response in
            var upstream = HTTPClientRequest(url: target)
            upstream.method = .POST
            upstream.headers.add(name: "content-type", value: "application/json")
            upstream.body = .bytes(try await request.body.collect(upTo: 1 << 20))
            let answer: HTTPClientResponse
            if let pool {
                answer = try await pool.execute(
                    method: .POST, path: "/v1/chat/completions", headers: ["content-type": "application/json"],
                    body: try await request.body.collect(upTo: 1 << 20), deadline: .now() + .seconds(300))
            } else {
                answer = try await client.execute(upstream, timeout: .seconds(300))
            }
            let body = try await answer.body.collect(upTo: 64 << 20)
            return Response(status: .init(code: Int(answer.status.code)), headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        let pinned = ProcessInfo.processInfo.environment["BARE_PROXY_PINNED"] == "1"
        let server: HTTPServerBuilder = pinned ? HTTPServerBuilder { responder in PinnedHTTP1Channel(inner: HTTP1Channel(responder: responder)) } : .http1()
        let fixed = ByteBuffer(string: #"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama3.2","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the mock upstream, sixteen tokens of text."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#)
        router.post("/static") { request, _ -> Response in
            _ = try await request.body.collect(upTo: 1 << 20)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: fixed))
        }
        let app = Application(
            router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "sluice"))
        try await app.runService()
        try await client.shutdown()
    }
}

/// Hummingbird's HTTP/1 channel with its connection task kept on the connection's event loop.
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
