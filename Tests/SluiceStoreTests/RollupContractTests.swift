import Foundation
import SluiceCore
import SluiceStore
import Testing

/// The hourly rollups part of the store contract, on both backends.
extension StoreContractTests {
    @Test(arguments: Backend.available)
    func rollupsSumEachBatchOnceAndGiveEachPeriodsSpend(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertTeam(TeamRecord(id: "team_1", name: "one", createdAt: day0))
                var key = apiKey("key_a", createdAt: day0)
                key.teamID = "team_1"
                try await store.insertKey(key)
                let batch = [
                    usage("r1", time: day0 + 10, key: "key_a", model: "m", cost: 1),
                    usage("r2", time: day0 + 20, key: "key_a", model: "m", status: 500, cost: 2),
                    usage("r3", time: day0 + 3_700, key: "key_a", model: "m", cacheHit: true, cost: 4),
                    usage("r4", time: day0 + 30, key: nil, model: "m", cost: 8),
                ]
                try await store.insertUsage(batch)
                // A retried batch, and one overlapping it, add only what is new.
                try await store.insertUsage(batch + [usage("r5", time: day0 + 86_400, key: "key_a", model: "m", cost: 16)])
                #expect(try await store.periodSpend(keyIDs: ["key_a", "key_b"], since: day0) == ["key_a": 23])
                #expect(try await store.periodSpend(keyIDs: ["key_a"], since: day0 + 3_600) == ["key_a": 20])
                #expect(try await store.periodSpend(keyIDs: ["key_a"], since: day0 + 86_400) == ["key_a": 16])
                #expect(try await store.spend(keyID: "key_a") == 23)
                // Retention deletes records, never rollups: budgets over a period outlive the records.
                #expect(try await store.deleteUsage(before: .greatestFiniteMagnitude, limit: 100) == 5)
                #expect(try await store.periodSpend(keyIDs: ["key_a"], since: day0) == ["key_a": 23])
                // A team's usage groups by the team of the record's key.
                try await store.insertUsage([usage("r6", time: day0 + 40, key: "key_a", model: "m", cost: 32)])
                let groups = try await store.usageGroups(UsageQuery(since: 0), by: .team)
                #expect(groups.map(\.group) == ["team_1"])
            }
        }
    }

    @Test(arguments: Backend.available)
    func aBudgetAlertIsClaimedOncePerPeriod(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let first = try await store.claimBudgetAlert(subject: "key:a", periodStart: day0, at: day0 + 1)
                let again = try await store.claimBudgetAlert(subject: "key:a", periodStart: day0, at: day0 + 2)
                let nextPeriod = try await store.claimBudgetAlert(subject: "key:a", periodStart: day1, at: day1 + 1)
                let otherSubject = try await store.claimBudgetAlert(subject: "team:t", periodStart: day0, at: day0 + 1)
                #expect([first, again, nextPeriod, otherSubject] == [true, false, true, true])
            }
        }
    }
}

extension StoreContractTests {
    /// Reservations count for the other instances until settled or, for an instance that died, until they expire.
    @Test(arguments: Backend.available)
    func reservationsOfOtherInstancesCountUntilSettledOrExpired(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                func reservation(_ id: String, _ amount: Double, expires: Double) -> BudgetReservation {
                    BudgetReservation(requestID: id, keyID: "key_a", amountUSD: amount, expiresAt: expires)
                }
                try await store.publishReservations(
                    instanceID: "one", reserved: [reservation("r1", 1, expires: day0 + 60), reservation("r2", 2, expires: day0 + 600)],
                    settled: [], now: day0)
                try await store.publishReservations(
                    instanceID: "two", reserved: [reservation("r1", 4, expires: day0 + 600)], settled: [], now: day0)
                #expect(try await store.reservedByOthers(keyIDs: ["key_a"], instanceID: "two", now: day0) == ["key_a": 3])
                #expect(try await store.reservedByOthers(keyIDs: ["key_a"], instanceID: "one", now: day0) == ["key_a": 4])
                // Settling is idempotent by request id, and only the instance's own.
                for _ in 0..<2 {
                    try await store.publishReservations(instanceID: "one", reserved: [], settled: ["r2", "r9"], now: day0 + 1)
                }
                #expect(try await store.reservedByOthers(keyIDs: ["key_a"], instanceID: "two", now: day0 + 1) == ["key_a": 1])
                #expect(try await store.reservedByOthers(keyIDs: ["key_a"], instanceID: "one", now: day0 + 1) == ["key_a": 4])
                // Instance "one" dies: its reservation stops counting at its expiry.
                #expect(try await store.reservedByOthers(keyIDs: ["key_a"], instanceID: "two", now: day0 + 61).isEmpty)
            }
        }
    }
}

extension StoreContractTests {
    /// A report over more than a day reads rollups for whole hours and records for the partial ends, and adds up
    /// to what the records alone say (latency percentiles aside).
    @Test(arguments: Backend.available)
    func longReportsFromRollupsAgreeWithTheRecords(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                var records: [UsageRecord] = []
                for i in 0..<200 {
                    let time = day0 + Double(i) * 1_237.5
                    records.append(
                        usage(
                            "r\(i)", time: time, key: i % 3 == 0 ? nil : "key_\(i % 4)", model: "m\(i % 5)", status: i % 7 == 0 ? 500 : 200,
                            cacheHit: i % 6 == 0, prompt: i, completion: 2 * i, cost: Double(i) / 8, saved: 0.5,
                            route: i % 2 == 0 ? "/v1/chat/completions" : "/api/chat"))
                }
                try await store.insertUsage(records)
                let query = UsageQuery(since: day0 + 1_000, until: day0 + 200 * 1_237.5 - 500)
                #expect(query.until! - query.since > 86_400)
                for grouping in [nil, UsageGrouping.key, .model, .route, .day] {
                    let report = try await store.usageReport(query, by: grouping)
                    let expected = records.filter { $0.time >= query.since && $0.time < query.until! }
                    #expect(report.totals.requests == expected.count)
                    #expect(report.totals.promptTokens == expected.reduce(0) { $0 + $1.promptTokens })
                    #expect(abs(report.totals.costUSD - expected.reduce(0) { $0 + $1.costUSD }) < 1e-6)
                    #expect(report.totals.errors == expected.filter { $0.status >= 400 }.count)
                    #expect(report.totals.cacheHits == expected.filter(\.cacheHit).count)
                    if grouping != nil {
                        #expect(report.groups.reduce(0) { $0 + $1.totals.requests } == expected.count)
                    }
                }
                let byModel = try await store.usageReport(query, by: .model).groups
                #expect(byModel.map(\.group) == ["m0", "m1", "m2", "m3", "m4"])
                // Rollup retention deletes whole old hours, and only those.
                #expect(try await store.deleteRollups(before: day0 + 7_200, limit: 1_000) > 0)
                #expect(try await store.deleteRollups(before: day0 + 7_200, limit: 1_000) == 0)
                #expect(try await store.periodSpend(keyIDs: ["key_1"], since: 0) == store.periodSpend(keyIDs: ["key_1"], since: day0 + 7_200))
            }
        }
    }
}
