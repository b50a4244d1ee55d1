import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SluiceCore
import Synchronization
import Testing
@testable import SluiceServer

/// Polls `condition` until it holds; fails the test if it does not within about five seconds.
func eventually(_ what: Comment, _ condition: () -> Bool) async throws {
    for _ in 0..<1000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("timed out waiting for: \(what)")
    throw CancellationError()
}

/// A clock a test moves by hand.
final class FakeClock: Sendable {
    private let time = Mutex(1_700_000_000.0)
    var now: Double { time.withLock { $0 } }
    func advance(_ seconds: Double) { time.withLock { $0 += seconds } }
}

@Suite(.timeLimit(.minutes(1)))
struct UpstreamPoolTests {
    let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func pool(maxInFlight: Int = 1, queue: Int = 4, timeout: Duration = .seconds(60), failures: Int = 3, clock: FakeClock = FakeClock(),
              upstream: FakeUpstream = FakeUpstream(.answer("hi")), metrics: GatewayMetrics = GatewayMetrics()) -> UpstreamPool {
        var limits = UpstreamLimits()
        limits.maxInFlight = maxInFlight
        limits.queueCapacity = queue
        limits.queueTimeout = timeout
        limits.breakerFailures = failures
        return UpstreamPool(upstreams: [upstream], metrics: metrics, limits: limits, now: { clock.now })
    }

    func isOverloaded(_ error: any Error) -> Bool {
        (error as? APIError)?.code == "upstream_overloaded"
    }

    @Test func aFullLineSheds503AndAFreedSlotGoesToTheWaiter() async throws {
        let metrics = GatewayMetrics()
        let pool = pool(queue: 1, metrics: metrics)
        #expect(try await pool.acquire(model: "m", excluding: [], failOpen: true) == 0)
        try await withThrowingTaskGroup(of: Int?.self) { group in
            group.addTask { try await pool.acquire(model: "m", excluding: [], failOpen: true) }
            try await eventually("the second request to wait") { pool.waiting == 1 }
            await #expect(throws: APIError.upstreamOverloaded()) { try await pool.acquire(model: "m", excluding: [], failOpen: true) }
            #expect(metricValue(metrics, #"sluice_upstream_shed_total{reason="queue_full"}"#) == 1)
            #expect(metricValue(metrics, "sluice_upstream_queue_depth") == 1)
            pool.release(0, outcome: .success)
            #expect(try await group.next() == .some(0))
        }
        #expect(pool.inFlight(of: 0) == 1)
        #expect(pool.waiting == 0)
    }

    @Test func aWaitThatRunsOutIs503() async throws {
        let metrics = GatewayMetrics()
        let pool = pool(timeout: .milliseconds(20), metrics: metrics)
        _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
        do {
            _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
            Issue.record("expected the wait to run out")
        } catch {
            #expect(isOverloaded(error))
            #expect((error as? APIError)?.retryAfter == 1)
        }
        #expect(pool.waiting == 0)
        #expect(metricValue(metrics, #"sluice_upstream_shed_total{reason="queue_timeout"}"#) == 1)
        // The slot is still the first request's, and nobody else holds one.
        #expect(pool.inFlight(of: 0) == 1)
    }

    @Test func aCancelledWaiterLeavesTheLine() async throws {
        let pool = pool()
        _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
        let waiter = Task { try await pool.acquire(model: "m", excluding: [], failOpen: true) }
        try await eventually("the waiter to queue") { pool.waiting == 1 }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(pool.waiting == 0)
        pool.release(0, outcome: .success)
        #expect(pool.inFlight(of: 0) == 0)
    }

    @Test func waitersAreServedFirstComeFirstServed() async throws {
        let pool = pool()
        _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
        let order = OrderLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
                order.append("first")
            }
            try await eventually("the first waiter to queue") { pool.waiting == 1 }
            group.addTask {
                _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
                order.append("second")
            }
            try await eventually("the second waiter to queue") { pool.waiting == 2 }
            pool.release(0, outcome: .success)
            try await eventually("the first waiter to be served") { order.items.count == 1 }
            #expect(pool.waiting == 1)
            pool.release(0, outcome: .success)
            try await group.waitForAll()
        }
        #expect(order.items == ["first", "second"])
        #expect(pool.inFlight(of: 0) == 1)
    }

    @Test func noCapNeverWaits() async throws {
        let pool = pool(maxInFlight: 0, queue: 0)
        for _ in 0..<100 { _ = try await pool.acquire(model: "m", excluding: [], failOpen: true) }
        #expect(pool.inFlight(of: 0) == 100)
    }

    @Test func aLeaseEndsOnceAndWhenDropped() async throws {
        let pool = pool(maxInFlight: 0)
        let index = try #require(try await pool.acquire(model: "m", excluding: [], failOpen: true))
        let lease = UpstreamLease(pool: pool, index: index)
        lease.end(.success)
        lease.end(.failure)
        #expect(pool.inFlight(of: 0) == 0)
        do {
            _ = UpstreamLease(pool: pool, index: try #require(try await pool.acquire(model: "m", excluding: [], failOpen: true)))
        }
        #expect(pool.inFlight(of: 0) == 0)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct UpstreamProberTests {
    let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func setup(failures: Int = 2) -> (UpstreamPool, FakeSwitch, FakeClock, GatewayMetrics) {
        let down = FakeSwitch(true)
        var upstream = FakeUpstream(.answer("hi"))
        upstream.probeDown = down
        let clock = FakeClock()
        let metrics = GatewayMetrics()
        var limits = UpstreamLimits()
        limits.breakerFailures = failures
        let pool = UpstreamPool(upstreams: [upstream], metrics: metrics, limits: limits, now: { clock.now })
        return (pool, down, clock, metrics)
    }

    @Test func failedProbesOpenTheBreakerAndASuccessfulOneClosesIt() async throws {
        let (pool, down, clock, metrics) = setup(failures: 2)
        let prober = UpstreamProber(pool: pool, interval: .seconds(10), logger: quiet)
        await prober.probeOnce()
        #expect(pool.state(of: 0) == .closed)
        await prober.probeOnce()
        #expect(pool.state(of: 0) == .open)
        #expect(metricValue(metrics, #"sluice_upstream_probes_total{upstream="fake",result="failed"}"#) == 2)
        // Still open long after the cool-down would have let a trial through: failed probes keep it open.
        clock.advance(30)
        await prober.probeOnce()
        #expect(pool.state(of: 0) == .open)
        down.isOn = false
        await prober.probeOnce()
        #expect(pool.state(of: 0) == .closed)
        #expect(metricValue(metrics, #"sluice_upstream_state{upstream="fake"}"#) == 0)
    }

    @Test func aHalfOpenBreakerClosesOnAProbeWithoutTraffic() async throws {
        let (pool, down, clock, _) = setup(failures: 1)
        let prober = UpstreamProber(pool: pool, interval: .seconds(10), logger: quiet)
        await prober.probeOnce()
        clock.advance(10)
        #expect(pool.state(of: 0) == .halfOpen)
        down.isOn = false
        await prober.probeOnce()
        #expect(pool.state(of: 0) == .closed)
    }

    @Test func aSuccessfulProbeDoesNotForgiveRequestFailures() async throws {
        // An upstream may answer probes and still fail every request; only real successes reset the count.
        let (pool, down, _, _) = setup(failures: 2)
        down.isOn = false
        let prober = UpstreamProber(pool: pool, interval: .seconds(10), logger: quiet)
        _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
        pool.release(0, outcome: .failure)
        await prober.probeOnce()
        _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
        pool.release(0, outcome: .failure)
        #expect(pool.state(of: 0) == .open)
    }

    @Test func theServiceProbesOnItsIntervalAndStopsOnShutdown() async throws {
        let (pool, down, _, _) = setup(failures: 2)
        let prober = UpstreamProber(pool: pool, interval: .milliseconds(10), logger: quiet)
        try await withRunning([prober], logger: quiet) {
            try await eventually("the breaker to open from probes alone") { pool.state(of: 0) == .open }
            down.isOn = false
            try await eventually("the breaker to close from probes alone") { pool.state(of: 0) == .closed }
        }
    }

    @Test func aZeroIntervalNeverProbes() async throws {
        let (pool, _, _, metrics) = setup()
        try await withRunning([UpstreamProber(pool: pool, interval: .zero, logger: quiet)], logger: quiet) {}
        #expect(metricValue(metrics, #"sluice_upstream_probes_total{upstream="fake",result="failed"}"#) == nil)
        #expect(pool.state(of: 0) == .closed)
    }
}

/// Chunks a test feeds by hand, counting how often the relay asked for the next one.
struct CountingChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let stream: AsyncStream<ByteBuffer>
    let pulls: SharedCount

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<ByteBuffer>.AsyncIterator
        let pulls: SharedCount
        mutating func next() async -> ByteBuffer? {
            pulls.increment()
            return await base.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), pulls: pulls) }
}

/// What happened, in order, across tasks.
final class OrderLog: Sendable {
    private let entries = Mutex<[String]>([])
    var items: [String] { entries.withLock { $0 } }
    func append(_ item: String) { entries.withLock { $0.append(item) } }
}

/// A count several values share.
final class SharedCount: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

@Suite(.timeLimit(.minutes(1)))
struct LoadSheddingRouteTests {
    static let streamBody = ByteBuffer(string: #"{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
    static let chatBody = ByteBuffer(string: #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#)

    @Test func aStreamHoldsItsSlotUntilItEndsAndTheNextRequestIsShed() async throws {
        let (chunks, feed) = AsyncStream.makeStream(of: ByteBuffer.self)
        let pulls = SharedCount()
        let upstream = FakeUpstream(.streamBody(.stream(CountingChunks(stream: chunks, pulls: pulls))))
        let metrics = GatewayMetrics()
        let recorder = CollectingRecorder()
        var configuration = GatewayConfiguration()
        configuration.upstreamMaxInflight = 1
        configuration.upstreamQueue = 0
        configuration.probeInterval = .zero
        // Otherwise the second request would wait on the first as a cache follower instead of asking for a slot.
        configuration.cacheTTL = .zero
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try buildApplication(
            configuration: configuration, logger: logger,
            dependencies: .init(upstreams: [upstream], recorder: recorder, store: .none, metrics: metrics, now: { 1_700_000_000 }))
        let inFlight = #"sluice_upstream_in_flight{upstream="fake"}"#
        try await app.test(.router) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.streamBody) { response in
                        #expect(response.status == .ok)
                        #expect(String(buffer: response.body).contains("partial"))
                    }
                }
                feed.yield(ByteBuffer(string: #"{"model":"m","message":{"role":"assistant","content":"partial"},"done":false}"# + "\n"))
                // The relay has written the first chunk and waits for the next: the upstream is still busy.
                try await eventually("the relay to ask for the second chunk") { pulls.value >= 2 }
                #expect(metricValue(metrics, inFlight) == 1)
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.chatBody) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.retryAfter] == "1")
                    let error = try JSONDecoder().decode(JSONValue.self, from: response.body)["error"]
                    #expect(error?["code"]?.stringValue == "upstream_overloaded")
                }
                feed.yield(ByteBuffer(string: #"{"model":"m","done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":2}"# + "\n"))
                feed.finish()
                try await group.waitForAll()
            }
        }
        #expect(metricValue(metrics, inFlight) == 0)
        #expect(metricValue(metrics, #"sluice_upstream_shed_total{reason="queue_full"}"#) == 1)
        let codes = recorder.all.map { $0.errorCode ?? "ok" }.sorted()
        #expect(codes == ["ok", "upstream_overloaded"])
    }
}
