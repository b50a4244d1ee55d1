import AsyncHTTPClient
import Foundation
import Hummingbird
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
        let router = Router()
        router.post("/v1/chat/completions") { request, _ -> Response in
            var upstream = HTTPClientRequest(url: target)
            upstream.method = .POST
            upstream.headers.add(name: "content-type", value: "application/json")
            upstream.body = .bytes(try await request.body.collect(upTo: 1 << 20))
            let answer = try await client.execute(upstream, timeout: .seconds(300))
            let body = try await answer.body.collect(upTo: 64 << 20)
            return Response(status: .init(code: Int(answer.status.code)), headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "sluice"))
        try await app.runService()
        try await client.shutdown()
    }
}
