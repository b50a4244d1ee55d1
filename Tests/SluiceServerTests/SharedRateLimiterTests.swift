import Foundation
import SluiceCore
import SluiceStore
import Testing

@testable import SluiceServer

/// The shared limiter's arithmetic over several instances, with an in-memory bank standing in for the store (the
/// store's side is covered by the contract tests; several real instances by `Tests/e2e/test_shared_limits.py`).
@Suite("Shared rate limits")
struct SharedRateLimiterTests {
    /// The store's buckets, exchanged with ``RateLeaseArithmetic`` exactly as both stores do.
    final class Bank: @unchecked Sendable {
        var buckets: [String: (tokens: Double, updatedAt: Double)] = [:]

        func exchange(_ limiter: SharedRateLimiter, instances: Int, now: Double) {
            var leases: [RateLease] = []
            for request in limiter.leaseRequests(now: now) {
                let (tokens, lease) = RateLeaseArithmetic.exchange(stored: buckets[request.scope], request, instances: instances, now: now)
                buckets[request.scope] = (tokens, now)
                leases.append(lease)
            }
            limiter.apply(leases, instances: instances)
        }
    }

    static let t0: Double = 1_700_000_000

    func key(rpm: Int? = nil, tpm: Int? = nil) -> APIKeyRecord {
        APIKeyRecord(id: "k1", name: "k1", hash: "h", prefix: "sk-sluice-k1", createdAt: 0, rpm: rpm, tpm: tpm)
    }

    func instances(_ count: Int) -> [SharedRateLimiter] {
        (0..<count).map { _ in SharedRateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 0, interval: .milliseconds(250)) }
    }

    @Test(arguments: [2, 3])
    func aKeysRequestsPerMinuteHoldAcrossInstances(_ count: Int) {
        let bank = Bank()
        let gateways = instances(count)
        let key = key(rpm: 60)
        var admitted = 0
        // 300 requests round-robin within one second, with an exchange every 250 ms: the limit is 60 a minute.
        for i in 0..<300 {
            let now = Self.t0 + Double(i) / 300
            if i % 75 == 0 { for gateway in gateways { bank.exchange(gateway, instances: count, now: now) } }
            if gateways[i % count].admit(clientIP: nil, key: key, now: now).refusedBy == nil { admitted += 1 }
        }
        // One second refills one request; before its first lease, each instance admits a few requests on credit.
        #expect(admitted <= 60 + 1 + count * min(5, 60 / count))
        #expect(admitted >= 55)
    }

    @Test func tokensSpentBeyondALeaseAreChargedToEveryone() {
        let bank = Bank()
        let gateways = instances(2)
        let (a, b) = (gateways[0], gateways[1])
        let key = key(tpm: 1000)
        #expect(a.admit(clientIP: nil, key: key, now: Self.t0).refusedBy == nil)
        a.chargeTokens(keyID: "k1", tokens: 900, now: Self.t0)
        // 900 of 1000 spent on first-contact credit: 100 left, of which `a` takes its half.
        bank.exchange(a, instances: 2, now: Self.t0)
        #expect(bank.buckets["key:k1:tpm"]?.tokens == 50)
        #expect(b.admit(clientIP: nil, key: key, now: Self.t0).refusedBy == nil)
        b.chargeTokens(keyID: "k1", tokens: 400, now: Self.t0)
        #expect(b.admit(clientIP: nil, key: key, now: Self.t0).refusedBy == "tokens per minute for this API key")
        bank.exchange(b, instances: 2, now: Self.t0)
        bank.exchange(a, instances: 2, now: Self.t0)
        // The overdraft is everyone's: nothing more is lent out until a minute has refilled it.
        #expect(bank.buckets["key:k1:tpm"]?.tokens == -350)
        #expect(b.admit(clientIP: nil, key: key, now: Self.t0).refusedBy == "tokens per minute for this API key")
        // `a` still holds the 50 it was lent.
        #expect(a.admit(clientIP: nil, key: key, now: Self.t0).refusedBy == nil)
    }

    @Test func aStoreOutageFallsBackToAShareAndChargesItWhenTheStoreIsBack() {
        let bank = Bank()
        let gateways = instances(3)
        let key = key(rpm: 60)
        _ = gateways[0].admit(clientIP: nil, key: key, now: Self.t0)
        bank.exchange(gateways[0], instances: 3, now: Self.t0)
        #expect(bank.buckets["key:k1:rpm"]?.tokens == 39)

        #expect(gateways[0].exchangeFailed())
        #expect(!gateways[0].exchangeFailed())
        #expect(gateways[0].isFallingBack)
        // limit / live instances: 20 a minute on this instance, starting from the 20 it holds of its lease.
        let admitted = (0..<100).filter { _ in gateways[0].admit(clientIP: nil, key: key, now: Self.t0).refusedBy == nil }.count
        #expect(admitted == 20)
        // Beyond its lease of 20: more admitted on the fallback are charged once the store is back.
        _ = gateways[0].admit(clientIP: nil, key: key, now: Self.t0 + 9)
        _ = gateways[0].admit(clientIP: nil, key: key, now: Self.t0 + 9)

        bank.exchange(gateways[0], instances: 3, now: Self.t0 + 9)
        #expect(!gateways[0].isFallingBack)
        // 39 + 9 s of refill - 2 charged = 46, of which ceil(46 / 3) is lent out again.
        #expect(abs((bank.buckets["key:k1:rpm"]?.tokens ?? 0) - (46 - 16)) < 1e-9)
    }

    @Test func requestsRefusedByOneLimitTakeNothingFromAnother() {
        let limiter = SharedRateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 1, interval: .milliseconds(250))
        let bank = Bank()
        let key = key(rpm: 10)
        #expect(limiter.admit(clientIP: "10.0.0.1", key: key, now: Self.t0).refusedBy == nil)
        bank.exchange(limiter, instances: 1, now: Self.t0)
        #expect(limiter.admit(clientIP: "10.0.0.1", key: key, now: Self.t0).refusedBy == "requests per minute for this client address")
        // The key's share is untouched by the refusal: nine more from other addresses.
        let others = (2..<20).filter { limiter.admit(clientIP: "10.0.0.\($0)", key: key, now: Self.t0).refusedBy == nil }.count
        #expect(others == 9)
    }
}

extension SharedRateLimiterTests {
    /// A limit handed back while idle is met again during an outage as a new one is: its instance's share, full,
    /// and refilling (it used to start empty and, refusals not being kept, stay empty for the whole outage).
    @Test func anOutageAfterIdleLeasesWereHandedBackStartsFromTheShare() {
        let bank = Bank()
        let gateways = instances(3)
        let key = key(rpm: 60)
        for gateway in gateways { _ = gateway.admit(clientIP: nil, key: key, now: Self.t0) }
        for round in 0..<4 {
            for gateway in gateways { bank.exchange(gateway, instances: 3, now: Self.t0 + Double(round) / 4) }
        }
        #expect(bank.buckets["key:k1:rpm"]?.tokens ?? 0 >= 57)
        for gateway in gateways { gateway.exchangeFailed() }
        let admitted = gateways.map { gateway in
            (0..<50).filter { _ in gateway.admit(clientIP: nil, key: key, now: Self.t0 + 1).refusedBy == nil }.count
        }
        #expect(admitted == [20, 20, 20])
        // Refused requests keep the fallback bucket's refill (20 a minute): three seconds later, one more each.
        #expect(gateways.allSatisfy { $0.admit(clientIP: nil, key: key, now: Self.t0 + 4.1).refusedBy == nil })
    }

    /// A limit used slower than it goes idle (one request a second, exchanges every 250 ms) is met again each time
    /// it has handed its lease back: every request is admitted, as the limit allows.
    @Test func aSlowlyUsedLimitIsNeverRefusedBelowItsRate() {
        let bank = Bank()
        let limiter = instances(1)[0]
        let key = key(rpm: 600)
        var refused = 0
        for second in 0..<10 {
            let now = Self.t0 + Double(second)
            if limiter.admit(clientIP: nil, key: key, now: now).refusedBy != nil { refused += 1 }
            for quarter in 1...4 { bank.exchange(limiter, instances: 1, now: now + Double(quarter) / 4) }
        }
        #expect(refused == 0)
    }
}
