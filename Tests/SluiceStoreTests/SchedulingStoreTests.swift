import Testing
@testable import SluiceCore
@testable import SluiceStore

/// What local-first scheduling keeps in the store: a key's overflow permission and priority class, whether a call
/// overflowed, and what overflow cost in the report. Part of the serialised contract suite: PostgreSQL tests share
/// one database.
extension StoreContractTests {
    @Test(arguments: Backend.available)
    func keysKeepTheirSchedulingTerms(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                var batch = apiKey("key_batch", createdAt: day0)
                batch.allowOverflow = true
                batch.priority = .batch
                try await store.insertKey(batch)
                try await store.insertKey(apiKey("key_plain", createdAt: day0 + 1))
                let keys = try await store.listKeys()
                #expect(keys.map(\.allowOverflow) == [true, false])
                #expect(keys.map(\.priority) == [.batch, .interactive])
            }
        }
    }

    @Test(arguments: Backend.available)
    func overflowedCallsAreRecordedAndReported(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                var hosted = usage("u1", time: day0, model: "llama3.2", cost: 0.25)
                hosted.overflowed = true
                try await store.insertUsage([hosted, usage("u2", time: day0 + 1, model: "llama3.2", saved: 0.5)])
                // A retried batch flags nothing twice and inserts nothing twice.
                try await store.insertUsage([hosted])
                let recent = try await store.recentUsage(UsageQuery(since: 0), limit: 10)
                #expect(recent.first { $0.id == "u1" }?.overflowed == true)
                #expect(recent.first { $0.id == "u2" }?.overflowed == false)
                let report = try await store.usageReport(UsageQuery(since: 0), by: .model)
                #expect(report.totals.overflowRequests == 1)
                #expect(report.totals.overflowCostUSD == 0.25)
                #expect(report.totals.savedUSD == 0.5)
                #expect(report.groups.first?.totals.overflowRequests == 1)
            }
        }
    }
}
