import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing
@testable import SluiceUpstream

/// A raw HTTP/1.1 upstream whose every answer a test scripts, counting the connections it accepts, so a test sees
/// what the pool does on the wire: reuse, new connections, closes.
final class ScriptedUpstream: Sendable {
    enum Answer: Sendable {
        /// 200 with this body and a `Content-Length`, connection kept alive.
        case body(String)
        /// 200, chunked: these chunks, then the connection closes before the last chunk.
        case cut([String])
        /// 200 with this body after this many milliseconds.
        case late(String, milliseconds: Int64)
        /// 200 with this body, then the connection closes although the answer said keep-alive.
        case bodyThenClose(String)
        /// Closes the connection without answering, having read the whole request.
        case close
        /// Never answers.
        case silent
    }

    private struct State {
        var accepted = 0
        var open = 0
        var requests: [HTTPRequestHead] = []
        var bodies: [String] = []
    }

    private let state: Mutex<State>
    private let script: @Sendable (_ connectionRequest: Int) -> Answer
    let port: Int
    private let channel: any Channel

    var accepted: Int { state.withLock { $0.accepted } }
    var open: Int { state.withLock { $0.open } }
    var requests: [HTTPRequestHead] { state.withLock { $0.requests } }
    var bodies: [String] { state.withLock { $0.bodies } }

    /// - Parameter script: the answer to a connection's n-th request (0-based).
    init(_ script: @escaping @Sendable (_ connectionRequest: Int) -> Answer) async throws {
        self.script = script
        self.state = Mutex(State())
        // The handler finds its upstream through this box, filled once the listening socket exists.
        let box = Mutex<ScriptedUpstream?>(nil)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upstream = box.withLock { $0 }!
                upstream.state.withLock {
                    $0.accepted += 1
                    $0.open += 1
                }
                channel.closeFuture.whenComplete { _ in upstream.state.withLock { $0.open -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(upstream: upstream))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
        box.withLock { $0 = self }
    }

    func stop() async throws {
        try await channel.close()
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {  // touched on its channel's loop only
        func answer(_ text: String, context: ChannelHandlerContext) {
            let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "\(text.utf8.count)"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }

        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let upstream: ScriptedUpstream
        var served = 0
        var body = ""
        var head: HTTPRequestHead?

        init(upstream: ScriptedUpstream) { self.upstream = upstream }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = ""
            case .body(let chunk):
                body += String(buffer: chunk)
            case .end:
                let index = served
                served += 1
                upstream.state.withLock { [head, body] in
                    $0.requests.append(head!)
                    $0.bodies.append(body)
                }
                switch upstream.script(index) {
                case .body(let text):
                    answer(text, context: context)
                case .late(let text, let milliseconds):
                    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                    context.eventLoop.scheduleTask(in: .milliseconds(milliseconds)) {
                        loopBound.value.0.answer(text, context: loopBound.value.1)
                    }
                case .bodyThenClose(let text):
                    answer(text, context: context)
                    context.close(promise: nil)
                case .cut(let chunks):
                    context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok))), promise: nil)
                    for chunk in chunks {
                        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: chunk)))), promise: nil)
                    }
                    context.flush()
                    context.close(promise: nil)
                case .close:
                    context.close(promise: nil)
                case .silent:
                    break
                }
            }
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct UpstreamConnectionPoolTests {
    static let quick = UpstreamTimeouts(total: .seconds(10), idle: .seconds(10), connect: .seconds(2))

    func pool(_ upstream: ScriptedUpstream, prefix: String = "", timeouts: UpstreamTimeouts = quick) throws -> UpstreamConnectionPool {
        try #require(UpstreamConnectionPool(baseURL: "http://127.0.0.1:\(upstream.port)\(prefix)", timeouts: timeouts))
    }

    func call(_ pool: UpstreamConnectionPool, _ body: String = "{}") async throws -> String {
        let response = try await pool.execute(
            method: .POST, path: "/v1/chat/completions", headers: ["Content-Type": "application/json"],
            body: ByteBuffer(string: body), deadline: .now() + .seconds(10))
        return String(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    @Test func baseURLsItCanServe() throws {
        let timeouts = UpstreamTimeouts()
        let ollama = try #require(UpstreamConnectionPool(baseURL: "http://127.0.0.1:11434", timeouts: timeouts))
        #expect(ollama.host == "127.0.0.1" && ollama.port == 11434 && ollama.pathPrefix == "" && ollama.authority == "127.0.0.1:11434")
        let plain = try #require(UpstreamConnectionPool(baseURL: "HTTP://localhost/ollama/", timeouts: timeouts))
        #expect(plain.host == "localhost" && plain.port == 80 && plain.pathPrefix == "/ollama")
        let v6 = try #require(UpstreamConnectionPool(baseURL: "http://[::1]:8080/v", timeouts: timeouts))
        #expect(v6.host == "::1" && v6.port == 8080 && v6.authority == "[::1]:8080" && v6.pathPrefix == "/v")
        // TLS goes to AsyncHTTPClient; what this client cannot parse exactly is not guessed at.
        for url in ["https://api.openai.com", "http://user:pw@box:1", "http://box:99999", "http://box:x", "http://", "http://box/?q=1"] {
            #expect(UpstreamConnectionPool(baseURL: url, timeouts: timeouts) == nil, "\(url)")
        }
    }

    /// Runs `body` as a client connection's task runs: on one event loop, whose connections the pool then uses.
    func onOneLoop(_ body: () async throws -> Void) async throws {
        try await withTaskExecutorPreference(EventLoopTaskExecutor.of(MultiThreadedEventLoopGroup.singleton.next())) {
            try await body()
        }
    }

    @Test func sequentialCallsShareOneConnectionAndSendTheRequestAsGiven() async throws {
        let upstream = try await ScriptedUpstream { index in .body("answer \(index)") }
        let pool = try pool(upstream, prefix: "/base")
        try await onOneLoop {
            for index in 0..<5 {
                let answer = try await call(pool, #"{"n":\#(index)}"#)
                #expect(answer == "answer \(index)")
            }
        }
        #expect(upstream.accepted == 1)
        let head = try #require(upstream.requests.first)
        #expect(head.method == .POST && head.uri == "/base/v1/chat/completions")
        #expect(head.headers["Host"] == ["127.0.0.1:\(upstream.port)"])
        #expect(head.headers["Content-Length"] == ["7"] && head.headers["Content-Type"] == ["application/json"])
        #expect(upstream.bodies == (0..<5).map { #"{"n":\#($0)}"# })
        try await upstream.stop()
    }

    @Test func concurrentCallsOpenConnectionsThatAreReusedAfterwards() async throws {
        let upstream = try await ScriptedUpstream { _ in .body("ok") }
        let pool = try pool(upstream)
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try await call(pool) } }
            for try await answer in group { #expect(answer == "ok") }
        }
        let opened = upstream.accepted
        #expect(opened >= 1 && opened <= 8)
        // Every loop has parked connections now: calls from any loop reuse them.
        for _ in 0..<8 { _ = try await call(pool) }
        #expect(upstream.accepted == opened)
        try await upstream.stop()
    }

    @Test func aParkedConnectionTheUpstreamClosesIsNotTakenAgain() async throws {
        let upstream = try await ScriptedUpstream { _ in .bodyThenClose("answer") }
        let pool = try pool(upstream)
        try await onOneLoop {
            let first = try await call(pool)
            try await eventually("the upstream's close reached the pool") { upstream.open == 0 }
            let second = try await call(pool)
            #expect(first == "answer" && second == "answer")
        }
        #expect(upstream.accepted == 2)
        try await upstream.stop()
    }

    @Test func aRequestTheUpstreamMayHaveReadIsNeverSentTwice() async throws {
        // The upstream reads the second request, then drops the connection without a byte: it may have started the
        // generation, so the pool fails the call (the gateway's retry policy decides) instead of sending it again.
        let upstream = try await ScriptedUpstream { index in index == 0 ? .body("first") : .close }
        let pool = try pool(upstream)
        try await onOneLoop {
            _ = try await call(pool)
            await #expect(throws: UpstreamTransportError.remoteConnectionClosed) { try await call(pool) }
        }
        #expect(upstream.requests.count == 2 && upstream.accepted == 1)
        try await upstream.stop()
    }

    @Test func parkedConnectionsCloseAfterTheParkedLimitNotTheIdleTimeout() async throws {
        let upstream = try await ScriptedUpstream { _ in .body("ok") }
        let pool = try #require(
            UpstreamConnectionPool(baseURL: "http://127.0.0.1:\(upstream.port)", timeouts: Self.quick, parkedLimit: .milliseconds(100)))
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<4 { group.addTask { try await call(pool) } }
            for try await answer in group { #expect(answer == "ok") }
        }
        // The idle timeout is 10 s: only the parked limit can close them this soon.
        try await eventually("parked connections closed") { upstream.open == 0 }
        try await upstream.stop()
    }

    @Test func aLoopKeepsAtMostItsCapParked() async throws {
        let upstream = try await ScriptedUpstream { _ in .body("ok") }
        let pool = try pool(upstream)
        try await onOneLoop {
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<(LoopConnections.parkedMax + 20) { group.addTask { try await call(pool) } }
                for try await answer in group { #expect(answer == "ok") }
            }
        }
        try await eventually("connections beyond the cap closed") { upstream.open <= LoopConnections.parkedMax }
        try await upstream.stop()
    }

    @Test func aReusedConnectionCountsTheIdleTimeoutFromItsRequest() async throws {
        // Idle for most of the timeout, then a request the upstream answers after a while: the timeout runs from the
        // request, not from the connection's last byte.
        let upstream = try await ScriptedUpstream { index in index == 0 ? .body("first") : .late("second", milliseconds: 300) }
        let pool = try pool(upstream, timeouts: UpstreamTimeouts(total: .seconds(10), idle: .milliseconds(600), connect: .seconds(2)))
        try await onOneLoop {
            _ = try await call(pool)
            try await Task.sleep(for: .milliseconds(450))
            let second = try await call(pool)
            #expect(second == "second")
        }
        #expect(upstream.accepted == 1)
        try await upstream.stop()
    }

    @Test func aFreshConnectionClosedUnansweredIsAnErrorNotARetry() async throws {
        let upstream = try await ScriptedUpstream { _ in .close }
        let pool = try pool(upstream)
        await #expect(throws: UpstreamTransportError.remoteConnectionClosed) { try await call(pool) }
        #expect(upstream.accepted == 1)
        try await upstream.stop()
    }

    @Test func aStreamCutMidwayDeliversWhatArrivedThenFails() async throws {
        let upstream = try await ScriptedUpstream { _ in .cut(["data: one\n\n", "data: two\n\n"]) }
        let pool = try pool(upstream)
        let response = try await pool.execute(
            method: .POST, path: "/v1/chat/completions", headers: [:], body: ByteBuffer(string: "{}"), deadline: .now() + .seconds(10))
        #expect(response.status == .ok)
        var received = ""
        await #expect(throws: UpstreamTransportError.remoteConnectionClosed) {
            for try await chunk in response.body { received += String(buffer: chunk) }
        }
        #expect(received == "data: one\n\ndata: two\n\n")
        try await upstream.stop()
    }

    @Test func anUpstreamSilentForTheIdleTimeoutTimesOut() async throws {
        let upstream = try await ScriptedUpstream { _ in .silent }
        let pool = try pool(upstream, timeouts: UpstreamTimeouts(total: .seconds(30), idle: .milliseconds(200), connect: .seconds(2)))
        await #expect(throws: UpstreamTransportError.readTimeout) { try await call(pool) }
        try await eventually("the timed-out connection is closed") { upstream.open == 0 }
        try await upstream.stop()
    }

    @Test func theTotalDeadlineEndsACall() async throws {
        let upstream = try await ScriptedUpstream { _ in .silent }
        let pool = try pool(upstream)
        await #expect(throws: UpstreamTransportError.deadlineExceeded) {
            _ = try await pool.execute(method: .GET, path: "/v1/models", headers: [:], body: nil, deadline: .now() + .milliseconds(100))
        }
        try await upstream.stop()
    }

    @Test func aCancelledCallerClosesItsConnection() async throws {
        let upstream = try await ScriptedUpstream { _ in .silent }
        let pool = try pool(upstream)
        let task = Task { try await call(pool) }
        try await eventually("the request reached the upstream") { upstream.requests.count == 1 }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        try await eventually("the connection is closed") { upstream.open == 0 }
        try await upstream.stop()
    }

    @Test func aClientThatLeavesEndsItsCallsAtOnce() async throws {
        let upstream = try await ScriptedUpstream { _ in .silent }
        let pool = try pool(upstream)
        let departure = ClientDeparture()
        let task = Task { try await ClientDeparture.$current.withValue(departure) { try await call(pool) } }
        try await eventually("the request reached the upstream") { upstream.requests.count == 1 }
        departure.clientLeft()
        await #expect(throws: CancellationError.self) { try await task.value }
        try await eventually("the upstream connection is closed") { upstream.open == 0 }
        // A call made for a client already gone is not sent at all.
        await #expect(throws: CancellationError.self) {
            try await ClientDeparture.$current.withValue(departure) { try await call(pool) }
        }
        #expect(upstream.requests.count == 1)
        try await upstream.stop()
    }

    @Test func aRefusedConnectionFailsFast() async throws {
        let upstream = try await ScriptedUpstream { _ in .silent }
        let pool = try pool(upstream)
        try await upstream.stop()
        await #expect(throws: (any Error).self) { try await call(pool) }
    }
}
