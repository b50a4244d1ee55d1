import NIOCore
import SluiceCore
import SluiceUpstream
import Testing

@testable import SluiceServer

/// Requests coalesced behind a leader have their own deadline and leave when their client does; answers held in
/// memory are bounded over all requests.
@Suite("Coalescing waits and buffered answers")
struct CoalescingAndBufferTests {
    func cache() -> ResponseCache {
        ResponseCache(maxBytes: 1 << 20, ttl: .seconds(60), metrics: GatewayMetrics(), now: { 0 })
    }

    func key(_ text: String) throws -> CacheKey {
        try CacheKey.make(family: "chat", upstream: "u", body: ByteBuffer(string: #"{"model":"m","x":"\#(text)"}"#))
    }

    @Test func theFirstLeadsAndAWaiterIsReleasedWhenTheLeaderEnds() async throws {
        let cache = cache()
        let key = try key("a")
        #expect(try await cache.claim(key, maxWait: .seconds(60)) == .lead)
        async let waiter = cache.claim(key, maxWait: .seconds(60))
        // Polled, not slept: the waiter is in line once the cache counts it.
        while cache.waiting == 0 { await Task.yield() }
        cache.release(key)
        #expect(try await waiter == .released)
        #expect(cache.pendingDeadlines == 0)
    }

    /// A leader that stalls does not hold its followers: each calls on its own once its wait is up.
    @Test func aWaiterWhoseLeaderStallsGoesOnItsOwn() async throws {
        let cache = cache()
        let key = try key("b")
        #expect(try await cache.claim(key, maxWait: .seconds(60)) == .lead)
        #expect(try await cache.claim(key, maxWait: .milliseconds(1)) == .waitedTooLong)
        #expect(cache.waiting == 0)
    }

    /// A waiter whose client leaves stops waiting at once, and leaves no trace in the line.
    @Test func aCancelledWaiterLeavesAtOnce() async throws {
        let cache = cache()
        let key = try key("c")
        #expect(try await cache.claim(key, maxWait: .seconds(60)) == .lead)
        let waiter = Task { try await cache.claim(key, maxWait: .seconds(3600)) }
        while cache.waiting == 0 { await Task.yield() }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(cache.waiting == 0)
        #expect(cache.pendingDeadlines == 0)
    }

    @Test func bufferedAnswersAreBoundedOverAllRequests() throws {
        let budget = AnswerBufferBudget(limit: 1_000)
        let first = AnswerBufferLease(budget: budget)
        let second = AnswerBufferLease(budget: budget)
        try first.reserve(600)
        let refused = #expect(throws: APIError.self) { try second.reserve(600) }
        #expect(refused?.status == 503)
        #expect(refused?.code == "gateway_overloaded")
        #expect(budget.inUse == 600)
        first.release()
        try second.reserve(600)
        #expect(budget.inUse == 600)
        second.release()
        second.release()
        #expect(budget.inUse == 0)
    }

    /// A lease dropped without a release (a response never written) still gives its bytes back.
    @Test func aDroppedLeaseGivesItsBytesBack() throws {
        let budget = AnswerBufferBudget(limit: 1_000)
        do {
            let lease = AnswerBufferLease(budget: budget)
            try lease.reserve(900)
        }
        #expect(budget.inUse == 0)
    }
}
