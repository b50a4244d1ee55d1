import Foundation
import Logging
import SluiceCore
import SluiceUpstream
import Testing
@testable import SluiceServer

/// The pool's scheduling decisions under a cap: priorities, the batch share, overflow after a wait, and the
/// conversation's and the loaded model's pull.
@Suite(.timeLimit(.minutes(1)))
struct SchedulingPoolTests {
    func pool(
        _ upstreams: [any UpstreamProvider] = [FakeUpstream(.answer("hi"))], maxInFlight: Int = 1, batchShare: Double = 0.5,
        overflowAfter: Duration = .seconds(60)
    ) -> UpstreamPool {
        var limits = UpstreamLimits()
        limits.maxInFlight = maxInFlight
        limits.queueCapacity = 8
        limits.queueTimeout = .seconds(60)
        limits.batchShare = batchShare
        limits.overflowAfter = overflowAfter
        let clock = FakeClock()
        return UpstreamPool(upstreams: upstreams, metrics: GatewayMetrics(), limits: limits, now: { clock.now })
    }

    @Test func interactiveWaitersOvertakeBatchWaiters() async throws {
        let pool = pool()
        _ = try await pool.acquire(model: "m", excluding: [], failOpen: true)
        let order = OrderLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (n, priority) in [("batch 1", PriorityClass.batch), ("batch 2", .batch), ("interactive", .interactive)] {
                let before = pool.waiting
                group.addTask {
                    _ = try await pool.acquire(model: "m", excluding: [], failOpen: true, priority: priority)
                    order.append(n)
                }
                try await eventually("\(n) to queue") { pool.waiting == before + 1 }
            }
            // Each release frees the slot of the request served before: the first holder, then the interactive
            // waiter, then the first batch waiter.
            for (served, holder) in [PriorityClass.interactive, .interactive, .batch].enumerated() {
                pool.release(0, outcome: .success, priority: holder)
                try await eventually("a waiter to be served") { order.items.count == served + 1 }
            }
            try await group.waitForAll()
        }
        #expect(order.items == ["interactive", "batch 1", "batch 2"])
    }

    @Test func batchRequestsTakeNoMoreThanTheirShare() async throws {
        let pool = pool(maxInFlight: 4, batchShare: 0.5)
        for _ in 0..<2 { _ = try await pool.acquire(model: "m", excluding: [], failOpen: true, priority: .batch) }
        // Two slots are free, but the batch share (2 of 4) is used up: a third batch request waits...
        let third = Task { try await pool.acquire(model: "m", excluding: [], failOpen: true, priority: .batch) }
        try await eventually("the third batch request to wait") { pool.waiting == 1 }
        // ...while interactive requests take the free slots at once.
        #expect(try await pool.acquire(model: "m", excluding: [], failOpen: true) == 0)
        #expect(pool.inFlight(of: 0) == 3)
        pool.release(0, outcome: .success, priority: .batch)
        #expect(try await third.value == 0)
    }

    /// With no wait at all, the overflow timer may fire before the waiter is in line: it must not be lost.
    @Test(arguments: [Duration.zero, .milliseconds(1)])
    func aKeyThatMayOverflowGoesHostedAfterItsWaitAndOthersKeepWaiting(overflowAfter: Duration) async throws {
        var hosted = FakeUpstream(.answer("hosted"))
        hosted.endpoint = UpstreamEndpoint(name: "hosted", baseURL: "http://hosted.invalid", kind: .openai)
        hosted.endpoint.overflow = true
        let pool = pool([FakeUpstream(.answer("local")), hosted], overflowAfter: overflowAfter)
        #expect(try await pool.acquire(model: "m", excluding: [], failOpen: true, mayOverflow: true) == 0)
        // Without permission the overflow is never used, however long the wait.
        let patient = Task { try await pool.acquire(model: "m", excluding: [], failOpen: true) }
        try await eventually("the request without permission to wait") { pool.waiting == 1 }
        #expect(try await pool.acquire(model: "m", excluding: [], failOpen: true, mayOverflow: true) == 1)
        #expect(pool.waiting == 1)
        pool.release(0, outcome: .success)
        #expect(try await patient.value == 0)
    }

    @Test func aFreeLocalUpstreamIsNeverPassedOverForTheOverflow() async throws {
        var hosted = FakeUpstream(.answer("hosted"))
        hosted.endpoint = UpstreamEndpoint(name: "hosted", baseURL: "http://hosted.invalid", kind: .openai)
        hosted.endpoint.overflow = true
        let pool = pool([FakeUpstream(.answer("local")), hosted], maxInFlight: 0, overflowAfter: .zero)
        for _ in 0..<20 { #expect(try await pool.acquire(model: "m", excluding: [], failOpen: true, mayOverflow: true) == 0) }
    }

    @Test func theLoadedModelAndTheConversationPullTheirRequests() async throws {
        var a = FakeUpstream(.answer("a"))
        a.endpoint = UpstreamEndpoint(name: "a", baseURL: "http://a.invalid", kind: .ollama)
        var b = FakeUpstream(.answer("b"))
        b.endpoint = UpstreamEndpoint(name: "b", baseURL: "http://b.invalid", kind: .ollama)
        let pool = pool([a, b], maxInFlight: 0)
        pool.setLoaded(0, [])
        pool.setLoaded(1, [LoadedModel(name: "llama3.2:latest", contextLength: 4096)])
        for _ in 0..<20 { #expect(try await pool.acquire(model: "llama3.2", excluding: [], failOpen: true) == 1) }
        #expect(pool.contextLength(of: "llama3.2", on: [0, 1]) == 4096)
        for _ in 0..<20 { #expect(try await pool.acquire(model: "llama3.2", excluding: [], failOpen: true, preferring: 0) == 0) }
        // An answer tells the pool the model is loaded there now.
        pool.noteAnswered(0, model: "qwen")
        #expect(pool.loaded(of: 0)?.map(\.name) == ["qwen"])
    }
}
