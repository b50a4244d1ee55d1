import Foundation
import SluiceCore
import SluiceStore
import Testing

/// The shared rate-limit part of the store contract: leases of one bucket, exchanged by several instances.
extension StoreContractTests {
    static func lease(
        _ scope: String, capacity: Double = 60, returned: Double = 0, kept: Double = 0, wantsShare: Bool = true
    ) -> RateLeaseRequest {
        RateLeaseRequest(
            scope: scope, capacity: capacity, refillPerSecond: capacity / 60, returned: returned, kept: kept, wantsShare: wantsShare)
    }

    @Test(arguments: Backend.available)
    func leasesNeverAddUpToMoreThanTheBucket(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                // Three instances ask in turn at the same instant: ceil(60/3), then ceil(40/3), then ceil(27/3).
                var granted: [Double] = []
                for _ in 0..<3 {
                    let answer = try await store.exchangeRateLeases([Self.lease("key:a:rpm")], instances: 3, now: day0)
                    granted.append(try #require(answer.first).granted)
                }
                #expect(granted == [20, 14, 9])
                // Until it refills, what is left is all anyone gets, whatever they ask.
                var total = granted.reduce(0, +)
                for _ in 0..<40 {
                    total += try await store.exchangeRateLeases([Self.lease("key:a:rpm")], instances: 1, now: day0)[0].granted
                }
                #expect(total == 60)
                // One second refills one request's worth.
                let later = try await store.exchangeRateLeases([Self.lease("key:a:rpm")], instances: 1, now: day0 + 1)
                #expect(later.map(\.granted) == [1])
            }
        }
    }

    @Test(arguments: Backend.available)
    func returnedTokensAndDebtsReachTheBucket(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let first = try await store.exchangeRateLeases([Self.lease("key:b:tpm", capacity: 600)], instances: 2, now: day0)
                #expect(first == [RateLease(scope: "key:b:tpm", granted: 300, available: 300)])
                // Handing back 100 unused while keeping 200: the share is topped up to ceil(400/2) - 200.
                let second = try await store.exchangeRateLeases(
                    [Self.lease("key:b:tpm", capacity: 600, returned: 100, kept: 200)], instances: 2, now: day0)
                #expect(second == [RateLease(scope: "key:b:tpm", granted: 0, available: 400)])
                // A debt larger than the bucket leaves it negative: nothing is granted until it refills.
                let third = try await store.exchangeRateLeases(
                    [Self.lease("key:b:tpm", capacity: 600, returned: -500, wantsShare: false)], instances: 2, now: day0)
                #expect(third == [RateLease(scope: "key:b:tpm", granted: 0, available: -100)])
                let fourth = try await store.exchangeRateLeases([Self.lease("key:b:tpm", capacity: 600)], instances: 1, now: day0 + 5)
                #expect(fourth == [RateLease(scope: "key:b:tpm", granted: 0, available: -50)])
                // Several buckets in one exchange, answered in the order asked; an unknown one starts full.
                let both = try await store.exchangeRateLeases(
                    [Self.lease("ip:10.0.0.1", capacity: 10), Self.lease("key:b:tpm", capacity: 600)], instances: 1, now: day0 + 10)
                #expect(both.map(\.scope) == ["ip:10.0.0.1", "key:b:tpm"])
                #expect(both.map(\.granted) == [10, 0])
            }
        }
    }

    @Test(arguments: Backend.available)
    func fullBucketsAreForgottenAndInstancesCounted(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                _ = try await store.exchangeRateLeases([Self.lease("a"), Self.lease("b")], instances: 1, now: day0)
                _ = try await store.exchangeRateLeases([Self.lease("a", returned: 60, wantsShare: false)], instances: 1, now: day0)
                // "a" was handed back whole; "b" is lent out until a minute has refilled it.
                #expect(try await store.forgetFullRateBuckets(now: day0 + 1) == 1)
                #expect(try await store.forgetFullRateBuckets(now: day0 + 61) == 1)

                try await store.reportInstance(id: "one", keyRevision: 0, at: day0)
                try await store.reportInstance(id: "two", keyRevision: 0, at: day0 + 10)
                #expect(try await store.liveInstances(reportedSince: day0 + 5) == 1)
                #expect(try await store.liveInstances(reportedSince: day0) == 2)
            }
        }
    }
}
