import Testing
@testable import SluiceCore

/// A deterministic generator (SplitMix64), so weighted draws are repeatable.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct CircuitBreakerTests {
    @Test func opensAfterConsecutiveFailuresOnly() {
        var breaker = CircuitBreaker(failureThreshold: 3, coolDown: 10)
        breaker.recordFailure(at: 0)
        breaker.recordFailure(at: 0)
        breaker.recordSuccess()
        breaker.recordFailure(at: 1)
        breaker.recordFailure(at: 1)
        #expect(breaker.state(at: 1) == .closed)
        #expect(breaker.admits(at: 1))
        breaker.recordFailure(at: 2)
        #expect(breaker.state(at: 2) == .open)
        #expect(!breaker.admits(at: 11.9))
    }

    @Test func halfOpenLetsOneTrialThrough() {
        var breaker = CircuitBreaker(failureThreshold: 1, coolDown: 5)
        breaker.recordFailure(at: 100)
        #expect(breaker.state(at: 104) == .open)
        #expect(breaker.state(at: 105) == .halfOpen)
        let admitted1 = breaker.admit(at: 105)
        #expect(admitted1)
        let admitted2 = breaker.admit(at: 105)
        #expect(!admitted2)
        #expect(!breaker.admits(at: 106))
    }

    @Test func successfulTrialCloses() {
        var breaker = CircuitBreaker(failureThreshold: 2, coolDown: 5)
        breaker.recordFailure(at: 0)
        breaker.recordFailure(at: 0)
        let admitted3 = breaker.admit(at: 5)
        #expect(admitted3)
        breaker.recordSuccess()
        #expect(breaker.state(at: 5) == .closed)
        #expect(breaker.consecutiveFailures == 0)
        // Closed again means the full threshold applies again.
        breaker.recordFailure(at: 6)
        #expect(breaker.state(at: 6) == .closed)
    }

    @Test func failedTrialReopensForAnotherCoolDown() {
        var breaker = CircuitBreaker(failureThreshold: 3, coolDown: 5)
        for _ in 0..<3 { breaker.recordFailure(at: 0) }
        let admitted4 = breaker.admit(at: 5)
        #expect(admitted4)
        breaker.recordFailure(at: 6)
        #expect(breaker.state(at: 6) == .open)
        #expect(breaker.state(at: 10.9) == .open)
        #expect(breaker.state(at: 11) == .halfOpen)
        let admitted5 = breaker.admit(at: 11)
        #expect(admitted5)
    }

    @Test func abandonedTrialFreesTheSlot() {
        var breaker = CircuitBreaker(failureThreshold: 1, coolDown: 1)
        breaker.recordFailure(at: 0)
        let admitted6 = breaker.admit(at: 1)
        #expect(admitted6)
        breaker.recordAbandoned()
        #expect(breaker.state(at: 1) == .halfOpen)
        let admitted7 = breaker.admit(at: 1)
        #expect(admitted7)
    }

    @Test func gaugeValues() {
        #expect(CircuitBreaker.State.closed.rawValue == 0)
        #expect(CircuitBreaker.State.halfOpen.rawValue == 1)
        #expect(CircuitBreaker.State.open.rawValue == 2)
    }
}

@Suite struct UpstreamChooserTests {
    typealias Candidate = UpstreamChooser.Candidate

    func pick(_ model: String, _ candidates: [Candidate], excluding: Set<Int> = [], seed: UInt64 = 1) -> Int? {
        var rng = SeededGenerator(state: seed)
        return UpstreamChooser.choose(model: model, candidates: candidates, excluding: excluding, using: &rng)
    }

    /// A generator that counts its draws.
    struct CountingGenerator: RandomNumberGenerator {
        var draws = 0
        mutating func next() -> UInt64 {
            draws += 1
            return 0
        }
    }

    /// With one upstream left to choose, nothing is drawn: the system generator behind it is a syscall per request.
    @Test func aSingleChoiceDrawsNothing() {
        var rng = CountingGenerator()
        let busy = [Candidate(models: [], inFlight: 0), Candidate(models: [], inFlight: 5)]
        #expect(UpstreamChooser.choose(model: "m", candidates: busy, excluding: [], using: &rng) == 0)
        #expect(UpstreamChooser.choose(model: "m", candidates: [Candidate(models: [])], excluding: [], using: &rng) == 0)
        #expect(rng.draws == 0)
        _ = UpstreamChooser.choose(model: "m", candidates: [Candidate(models: []), Candidate(models: [])], excluding: [], using: &rng)
        #expect(rng.draws == 1)
    }

    @Test func listedModelWinsOverCatchAll() {
        let candidates = [Candidate(models: []), Candidate(models: ["llama3.2:latest"]), Candidate(models: ["qwen2.5"])]
        for seed in 0..<20 as Range<UInt64> {
            #expect(pick("llama3.2", candidates, seed: seed) == 1)
            #expect(pick("mistral", candidates, seed: seed) == 0)
        }
        #expect(UpstreamChooser.servers(of: "qwen2.5:latest", in: candidates) == [2])
    }

    @Test func noServerMeansNil() {
        #expect(pick("mistral", [Candidate(models: ["llama3.2"])]) == nil)
    }

    @Test func skipsRefusedAndTried() {
        let candidates = [Candidate(models: [], admitted: false), Candidate(models: []), Candidate(models: [])]
        for seed in 0..<20 as Range<UInt64> {
            #expect(pick("m", candidates, excluding: [2], seed: seed) == 1)
        }
        #expect(pick("m", candidates, excluding: [1, 2]) == nil)
    }

    @Test func drawsInProportionToWeight() {
        let candidates = [Candidate(models: [], weight: 3), Candidate(models: [], weight: 1)]
        var rng = SeededGenerator(state: 42)
        var counts = [0, 0]
        for _ in 0..<4000 {
            counts[UpstreamChooser.choose(model: "m", candidates: candidates, excluding: [], using: &rng)!] += 1
        }
        #expect((2800...3200).contains(counts[0]))
        #expect(counts[0] + counts[1] == 4000)
    }

    @Test func leastLoadedPerWeightBreaksTheTie() {
        let busy = [Candidate(models: [], weight: 1, inFlight: 2), Candidate(models: [], weight: 1, inFlight: 1)]
        for seed in 0..<20 as Range<UInt64> { #expect(pick("m", busy, seed: seed) == 1) }
        // Two in flight on weight 4 is less load than one on weight 1.
        let weighted = [Candidate(models: [], weight: 4, inFlight: 2), Candidate(models: [], weight: 1, inFlight: 1)]
        for seed in 0..<20 as Range<UInt64> { #expect(pick("m", weighted, seed: seed) == 0) }
    }

    @Test func zeroWeightCountsAsOne() {
        #expect(pick("m", [Candidate(models: [], weight: 0)]) == 0)
    }
}

@Suite struct LoadSheddingTests {
    typealias Candidate = UpstreamChooser.Candidate

    func decide(_ candidates: [Candidate], excluding: Set<Int> = [], failOpen: Bool = true, cap: Int) -> UpstreamChooser.Decision {
        var rng = SeededGenerator(state: 7)
        return UpstreamChooser.decide(model: "m", candidates: candidates, excluding: excluding, failOpen: failOpen, maxInFlight: cap, using: &rng)
    }

    @Test func fullUpstreamsAreSkippedThenWaitedFor() {
        let one = [Candidate(models: [], inFlight: 2), Candidate(models: [], inFlight: 1)]
        #expect(decide(one, cap: 2) == .send(1))
        let both = [Candidate(models: [], inFlight: 2), Candidate(models: [], inFlight: 2)]
        #expect(decide(both, cap: 2) == .wait)
        #expect(decide(both, cap: 0) != .wait)
    }

    @Test func nothingLeftIsNoneNotWait() {
        let full = [Candidate(models: [], inFlight: 1), Candidate(models: ["other"], inFlight: 0)]
        #expect(decide(full, excluding: [0], cap: 1) == .none)
        #expect(decide(full, cap: 1) == .wait)
    }

    @Test func aFullHealthyUpstreamIsWaitedForRatherThanAnUnhealthyOneUsed() {
        let candidates = [Candidate(models: [], inFlight: 1), Candidate(models: [], inFlight: 0, admitted: false)]
        #expect(decide(candidates, cap: 1) == .wait)
        // With every breaker refusing, fail-open still respects the cap.
        let refused = [Candidate(models: [], inFlight: 1, admitted: false), Candidate(models: [], inFlight: 0, admitted: false)]
        #expect(decide(refused, cap: 1) == .send(1))
        #expect(decide(refused, failOpen: false, cap: 1) == .none)
        let refusedAndFull = [Candidate(models: [], inFlight: 1, admitted: false)]
        #expect(decide(refusedAndFull, cap: 1) == .wait)
    }

    @Test func queueIsBoundedAndFirstInFirstOut() {
        var queue = AdmissionQueue<String>(capacity: 2)
        let accepted = [queue.enqueue(id: 1, "a"), queue.enqueue(id: 2, "b"), queue.enqueue(id: 3, "c")]
        #expect(accepted == [true, true, false])
        #expect(queue.isFull)
        var slots = 1
        let served = queue.serve { waiter -> Int? in
            guard slots > 0 else { return nil }
            slots -= 1
            return 0
        }
        #expect(served.map(\.waiter) == ["a"])
        #expect(queue.count == 1)
        let acceptedAfterServing = queue.enqueue(id: 4, "d")
        #expect(acceptedAfterServing)
        let rest = queue.serve { $0 }
        #expect(rest.map(\.waiter) == ["b", "d"])
    }

    @Test func aWaiterThatCannotBeServedKeepsItsPlaceWithoutBlockingOthers() {
        var queue = AdmissionQueue<String>(capacity: 3)
        for (id, name) in [(1, "other-model"), (2, "a"), (3, "b")] { _ = queue.enqueue(id: UInt64(id), name) }
        let served = queue.serve { $0 == "other-model" ? nil : $0 }
        #expect(served.map(\.waiter) == ["a", "b"])
        #expect(queue.count == 1)
        let removed = [queue.remove(id: 1), queue.remove(id: 1)]
        #expect(removed == ["other-model", nil])
        #expect(queue.count == 0)
    }

    @Test func zeroCapacityNeverQueues() {
        var queue = AdmissionQueue<Int>(capacity: 0)
        #expect(queue.isFull)
        let accepted = queue.enqueue(id: 1, 1)
        #expect(!accepted)
    }
}
