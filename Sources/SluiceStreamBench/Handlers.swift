#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Both sides stamp and read this one clock, so a chunk's delay is a plain difference even across processes.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

// MARK: - Upstream

private enum SSE {
    static let head = #"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"llama3.2","choices":"#
    static let first = head + #"[{"index":0,"delta":{"role":"assistant","content":"t="#
    static let next = head + #"[{"index":0,"delta":{"content":"t="#
    static let tail = #";"},"finish_reason":null}]}"# + "\n\n"
    static func end(chunks: Int) -> String {
        head + #"[{"index":0,"delta":{},"finish_reason":"stop"}]}"# + "\n\n" + head
            + #"[],"usage":{"prompt_tokens":10,"completion_tokens":\#(chunks),"total_tokens":\#(10 + chunks)}}"#
            + "\n\ndata: [DONE]\n\n"
    }
    static let models = #"{"object":"list","data":[{"id":"llama3.2","object":"model","created":0,"owned_by":"bench"}]}"#
}

final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let chunks: Int
    private let interval: TimeAmount
    private var request: HTTPRequestHead?
    private var timer: Scheduled<Void>?

    init(chunks: Int, intervalMilliseconds: Int) {
        self.chunks = chunks
        self.interval = .milliseconds(Int64(intervalMilliseconds))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break  // Read to its end only so that the connection stays usable for the next request.
        case .end:
            guard let head = request else { return }
            request = nil
            if head.method == .POST {
                let pairs = [("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("transfer-encoding", "chunked")]
                context.write(wrapOutboundOut(.head(responseHead(head, .ok, pairs))), promise: nil)
                sendChunk(context: context, index: 0, start: .now(), keepAlive: head.isKeepAlive)
            } else {
                let found = head.method == .GET && head.uri.hasPrefix("/v1/models")
                let body = context.channel.allocator.buffer(string: found ? SSE.models : #"{"error":{"message":"not found"}}"#)
                let pairs = [("content-type", "application/json"), ("content-length", "\(body.readableBytes)")]
                context.write(wrapOutboundOut(.head(responseHead(head, found ? .ok : .notFound, pairs))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                end(context: context, keepAlive: head.isKeepAlive)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func responseHead(_ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ pairs: [(String, String)]) -> HTTPResponseHead {
        var headers = HTTPHeaders(pairs)
        if !request.isKeepAlive { headers.add(name: "connection", value: "close") }
        return HTTPResponseHead(version: request.version, status: status, headers: headers)
    }

    private func end(context: ChannelHandlerContext, keepAlive: Bool) {
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    /// Each chunk is due at a multiple of the interval from the stream's own start, not from the previous chunk, so a
    /// late event loop does not stretch the stream, and streams stay as staggered as the requests that opened them.
    private func sendChunk(context: ChannelHandlerContext, index: Int, start: NIODeadline, keepAlive: Bool) {
        let last = index == chunks - 1
        var buffer = context.channel.allocator.buffer(capacity: last ? 640 : 200)
        buffer.writeString(index == 0 ? SSE.first : SSE.next)
        buffer.writeString(String(monotonicNanos()))
        buffer.writeString(SSE.tail)
        if last { buffer.writeString(SSE.end(chunks: chunks)) }
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        if last {
            timer = nil
            return end(context: context, keepAlive: keepAlive)
        }
        context.flush()
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: start + interval * Int64(index + 1)) { [self] in
            sendChunk(context: context, index: index + 1, start: start, keepAlive: keepAlive)
        }
    }
}

// MARK: - Client

/// Set once every stream has ended or the run timed out. The main thread polls it between RSS samples, so that
/// sampling never runs on (and never delays) the event loop whose read times are the measurement.
let allStreamsDone = Atomic<Bool>(false)

/// One run's shared state. It lives on the client's only event loop: handlers and timers touch it there alone.
final class BenchRun {
    let streams: Int
    let chunks: Int
    var nextID = 0
    private var delays: [Int64] = []
    private var open: [Int: any Channel] = [:]
    private var finished = 0, completed = 0, failed = 0
    /// Failures grouped by their text without digits, so a thousand refused connects make one line, not a thousand.
    private var reasons: [String: (count: Int, example: String)] = [:]
    private var startNanos: UInt64 = 0, endNanos: UInt64 = 0
    private var done = false

    init(streams: Int, chunks: Int) {
        self.streams = streams
        self.chunks = chunks
        delays.reserveCapacity(streams * chunks)
    }

    func start(loop: any EventLoop, bootstrap: ClientBootstrap, address: SocketAddress, rampNanos: Int64, timeout: TimeAmount) {
        startNanos = monotonicNanos()
        let isolated = loop.assumeIsolated()
        for i in 0..<streams {
            isolated.scheduleTask(in: .nanoseconds(rampNanos * Int64(i) / Int64(streams))) { [self] in
                // A connect that fails never activates the channel, so its handler never reports: report here.
                bootstrap.connect(to: address).assumeIsolated().whenFailure { [self] error in
                    finish(id: -1, reason: "connect: \(error)")
                }
            }
        }
        isolated.scheduleTask(in: timeout) { [self] in
            guard !done else { return }
            reasons["timeout"] = (streams - finished, "still open at the \(timeout.nanoseconds / 1_000_000_000) s timeout")
            failed += streams - finished
            complete()
            for channel in open.values { channel.close(promise: nil) }
        }
    }

    func opened(id: Int, channel: any Channel) { if !done { open[id] = channel } }

    func record(delay: Int64) { if !done { delays.append(delay) } }

    /// A nil reason means the stream completed.
    func finish(id: Int, reason: String?) {
        guard !done else { return }
        open[id] = nil
        finished += 1
        if let reason {
            failed += 1
            reasons[String(reason.filter { !$0.isNumber }), default: (0, id < 0 ? reason : "stream \(id): \(reason)")].count += 1
        } else {
            completed += 1
        }
        if finished == streams { complete() }
    }

    private func complete() {
        done = true
        endNanos = monotonicNanos()
        allStreamsDone.store(true, ordering: .releasing)
    }

    /// The JSON object's fields up to "delay_us", the chunk count, and the commonest failures.
    func summary() -> (json: String, chunks: Int, failures: [String]) {
        delays.sort()
        func us(_ q: Double) -> String {
            guard !delays.isEmpty else { return "null" }
            let index = min(delays.count - 1, max(0, Int((Double(delays.count) * q).rounded(.up)) - 1))
            return fixed(Double(delays[index]) / 1000)
        }
        let json = #"{"streams":\#(streams),"completed":\#(completed),"failed":\#(failed),"chunks":\#(delays.count),"#
            + #""seconds":\#(fixed(Double(endNanos - startNanos) / 1e9, scale: 100)),"#
            + #""delay_us":{"p50":\#(us(0.5)),"p99":\#(us(0.99)),"p999":\#(us(0.999)),"max":\#(us(1))}"#
        let failures = reasons.values.sorted { $0.count > $1.count }.prefix(5).map { "\($0.count) like \($0.example)" }
        return (json, delays.count, failures)
    }
}

func fixed(_ value: Double, scale: Double = 10) -> String {
    value.isFinite ? String((value * scale).rounded() / scale) : "null"
}

struct RequestTemplate: Sendable {
    var hostHeader: String
    var path: String
    var body: String
    var key: String?
}

final class StreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    private static let doneMarker = Array("[DONE]".utf8)

    private let run: BenchRun
    private let id: Int
    private let request: RequestTemplate
    private var status: HTTPResponseStatus?
    /// Bytes after the last complete line: a read may end mid-event, and only whole lines hold whole tokens.
    private var carry: [UInt8] = []
    private var tokens = 0
    private var sawDone = false
    private var active = false
    private var reported = false

    init(run: BenchRun, request: RequestTemplate) {
        self.run = run
        self.id = run.nextID
        self.request = request
        run.nextID += 1
    }

    func channelActive(context: ChannelHandlerContext) {
        active = true
        run.opened(id: id, channel: context.channel)
        let body = context.channel.allocator.buffer(string: request.body)
        var headers = HTTPHeaders([
            ("host", request.hostHeader), ("content-type", "application/json"), ("content-length", "\(body.readableBytes)"),
        ])
        if let key = request.key { headers.add(name: "authorization", value: "Bearer \(key)") }
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: request.path, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(let buffer):
            carry.append(contentsOf: buffer.readableBytesView)
            if status == .ok, let newline = carry.lastIndex(of: UInt8(ascii: "\n")) {
                scan(upTo: newline, now: monotonicNanos())
                carry.removeSubrange(...newline)
            }
        case .end:
            if status != .ok {
                let code = status.map { String($0.code) } ?? "?"
                finish(context, reason: "HTTP \(code): \(String(decoding: carry.prefix(200), as: UTF8.self))")
            } else if tokens != run.chunks {
                finish(context, reason: "answer ended after \(tokens) of \(run.chunks) chunks")
            } else {
                finish(context, reason: sawDone ? nil : "answer ended without [DONE]")
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(context, reason: "\(error) after \(tokens) chunks")
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context, reason: "connection closed after \(tokens) chunks")
        context.fireChannelInactive()
    }

    private func finish(_ context: ChannelHandlerContext, reason: String?) {
        guard active, !reported else { return }
        reported = true
        run.finish(id: id, reason: reason)
        context.close(promise: nil)
    }

    /// Finds `t=DIGITS;` stamps and the `[DONE]` marker in carry[..<end]. Matching bytes rather than parsing JSON keeps
    /// the client's own cost per chunk, which lands in every measured delay, small.
    private func scan(upTo end: Int, now: UInt64) {
        let zero = UInt8(ascii: "0"), done = Self.doneMarker
        carry.withUnsafeBufferPointer { bytes in
            var i = 0
            while i < end {
                if bytes[i] == UInt8(ascii: "t"), i + 1 < end, bytes[i + 1] == UInt8(ascii: "=") {
                    var j = i + 2
                    var sent: UInt64 = 0
                    while j < end, bytes[j] &- zero < 10 {
                        sent = sent &* 10 &+ UInt64(bytes[j] &- zero)
                        j += 1
                    }
                    if j > i + 2, j < end, bytes[j] == UInt8(ascii: ";") {
                        tokens += 1
                        run.record(delay: Int64(bitPattern: now &- sent))
                        i = j + 1
                        continue
                    }
                } else if bytes[i] == done[0], i + done.count <= end, done.indices.allSatisfy({ bytes[i + $0] == done[$0] }) {
                    sawDone = true
                }
                i += 1
            }
        }
    }
}
