import Foundation
import SluiceCore
import SluiceStore
import Testing

/// The `GatewayStore` contract, run identically against SQLite and (when configured) PostgreSQL.
///
/// Serialised because the PostgreSQL cases share one database, which each test empties first.
@Suite(.serialized)
struct StoreContractTests {
    /// Records whether PostgreSQL is covered; fails when CI requires it and no server is configured.
    @Test func postgresIsConfigured() throws {
        guard Backend.postgresURL == nil else { return }
        if Backend.postgresRequired {
            Issue.record("SLUICE_REQUIRE_POSTGRES=1 but SLUICE_TEST_POSTGRES_URL is not set; run scripts/start-postgres")
            return
        }
        let note = "SLUICE_TEST_POSTGRES_URL is not set: the store contract ran against SQLite only, PostgreSQL was skipped"
        print("note: \(note) (start a server with: eval \"$(scripts/start-postgres)\")")
        try Test.cancel(Comment(rawValue: note))
    }

    // MARK: Migrations

    @Test(arguments: Backend.available)
    func migratesAnEmptyDatabase(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore(migrate: false) { store in
                await #expect(throws: StoreError.self) { try await store.appliedMigrations() }
                await #expect(throws: StoreError.self) { try await store.listKeys() }

                try await store.migrate()

                #expect(try await store.appliedMigrations() == Migration.all.map(\.version))
                #expect(try await store.keysRevision() == 0)
                #expect(try await store.listKeys().isEmpty)
                #expect(try await store.usageTotals(UsageQuery(since: 0)) == UsageTotals())
                #expect(try await store.usageGroups(UsageQuery(since: 0), by: .key).isEmpty)
                #expect(try await store.recentUsage(UsageQuery(since: 0), limit: 10).isEmpty)
                #expect(try await store.spend(keyID: "key_a") == 0)
                #expect(try await store.deleteUsage(before: .greatestFiniteMagnitude, limit: 10) == 0)
            }
        }
    }

    @Test(arguments: Backend.available)
    func migrateIsIdempotent(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertKey(apiKey("key_a", createdAt: day0))
                try await store.insertUsage([usage("u1", time: day0, key: "key_a", cost: 0.5)])
                let revision = try await store.keysRevision()

                try await store.migrate()
                try await store.migrate()

                #expect(try await store.appliedMigrations() == Migration.all.map(\.version))
                #expect(try await store.keysRevision() == revision)
                #expect(try await store.listKeys().map(\.id) == ["key_a"])
                #expect(try await store.spend(keyID: "key_a") == 0.5)
            }
            // A second instance starting against the migrated database.
            try await database.withStore { store in
                let versions = try await store.appliedMigrations()
                #expect(versions == Migration.all.map(\.version))
                #expect(try await store.listKeys().map(\.id) == ["key_a"])
            }
        }
    }

    @Test(arguments: Backend.available)
    func concurrentMigrationsApplyOnce(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            // Two instances starting at once against an empty database, one of them migrating twice.
            try await database.withStore(migrate: false) { first in
                try await database.withStore(migrate: false) { second in
                    async let a: Void = first.migrate()
                    async let b: Void = second.migrate()
                    async let c: Void = first.migrate()
                    _ = try await (a, b, c)

                    #expect(try await first.appliedMigrations() == Migration.all.map(\.version))
                    #expect(try await second.appliedMigrations() == Migration.all.map(\.version))
                    #expect(try await second.keysRevision() == 0)
                    try await first.insertKey(apiKey("key_a", createdAt: day0))
                    #expect(try await second.key(id: "key_a")?.id == "key_a")
                }
            }
        }
    }

    @Test(arguments: Backend.available)
    func withGatewayStoreOpensRunsAndCloses(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            let url = backend == .sqlite ? "sqlite:\(database.location)" : database.location
            let count = try await withGatewayStore(url: url, logger: testLogger) { store in
                try await store.migrate()
                try await store.insertKey(apiKey("key_a", createdAt: day0))
                return try await store.listKeys().count
            }
            #expect(count == 1)
            let ids = try await withGatewayStore(url: url, logger: testLogger) { store in
                try await store.listKeys().map(\.id)
            }
            #expect(ids == ["key_a"])
        }
    }

    /// A request task cancelled mid-operation (a client hanging up) must not leave the store unusable, e.g. with
    /// a transaction left open on a shared connection. Each operation either happens entirely or not at all.
    @Test(arguments: Backend.available)
    func operationsFromCancelledTasksLeaveTheStoreUsable(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let cancelled = Task {
                    withUnsafeCurrentTask { $0?.cancel() }
                    try? await store.insertKey(apiKey("key_a", createdAt: day0))
                    try? await store.insertUsage([usage("u1", time: day0, key: "key_a", cost: 0.5)])
                    _ = try? await store.revokeKey(id: "key_a")
                    try? await store.touchKeys(["key_a": day0 + 1])
                }
                await cancelled.value

                let inserted = try await store.key(id: "key_a")
                let revision = try await store.keysRevision()
                switch (inserted, inserted?.revoked) {
                case (nil, _): #expect(revision == 0)
                case (_, false?): #expect(revision == 1)
                default: #expect(revision == 2)
                }
                #expect([0, 0.5].contains(try await store.spend(keyID: "key_a")))

                // Transactions still work afterwards.
                try await store.insertKey(apiKey("key_b", createdAt: day0))
                try await store.insertUsage([usage("u2", time: day0, key: "key_b", cost: 0.25)])
                #expect(try await store.revokeKey(id: "key_b"))
                #expect(try await store.keysRevision() == revision + 2)
                #expect(try await store.spend(keyID: "key_b") == 0.25)
            }
        }
    }

    // MARK: Keys

    @Test(arguments: Backend.available)
    func keysRoundTrip(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let full = APIKeyRecord(
                    id: "key_full", name: "Full — ünïcode", hash: String(repeating: "ab", count: 32), prefix: "sk-sluice-AbCd",
                    createdAt: day0 + 0.25, lastUsedAt: day0 + 10.5, expiresAt: day1 + 0.125,
                    allowedModels: ["llama3", "gpt-4o", "a \"quoted\" model"], rpm: 60, tpm: 100_000, budgetUSD: 12.5)
                let older = apiKey("key_older", createdAt: day0 - 100)
                let tieB = apiKey("key_tie_b", createdAt: day1)
                let tieA = apiKey("key_tie_a", createdAt: day1)
                for key in [full, tieB, older, tieA] {
                    try await store.insertKey(key)
                }

                #expect(try await store.key(id: "key_full") == full)
                #expect(try await store.key(hash: full.hash) == full)
                #expect(try await store.key(hash: older.hash) == older)
                #expect(try await store.key(id: "key_missing") == nil)
                #expect(try await store.key(hash: "hash-missing") == nil)
                // Oldest first, ties by id.
                #expect(try await store.listKeys() == [older, full, tieA, tieB])
            }
        }
    }

    @Test(arguments: Backend.available)
    func duplicateKeysAreRejectedWithoutEchoingValues(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let key = apiKey("key_a", createdAt: day0)
                try await store.insertKey(key)
                let revision = try await store.keysRevision()

                var sameHash = apiKey("key_b", createdAt: day0)
                sameHash.hash = key.hash
                let hashError = await #expect(throws: StoreError.self) { try await store.insertKey(sameHash) }
                #expect(hashError?.description.contains(key.hash) == false)

                var sameID = apiKey("key_a", createdAt: day0)
                sameID.hash = "hash-other"
                await #expect(throws: StoreError.self) { try await store.insertKey(sameID) }

                // The failed inserts rolled back, revision bump included.
                #expect(try await store.keysRevision() == revision)
                #expect(try await store.listKeys() == [key])
            }
        }
    }

    @Test(arguments: Backend.available)
    func revokeKeys(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertKey(apiKey("key_a", createdAt: day0))
                try await store.insertKey(apiKey("key_b", createdAt: day0 + 1))

                #expect(try await store.revokeKey(id: "key_a"))
                #expect(try await store.key(id: "key_a")?.revoked == true)
                #expect(try await store.key(hash: "hash-key_a")?.revoked == true)
                #expect(try await store.key(id: "key_b")?.revoked == false)
                #expect(try await store.listKeys().map(\.revoked) == [true, false])

                #expect(try await store.revokeKey(id: "key_missing") == false)
                // Revoking twice still names an existing key.
                #expect(try await store.revokeKey(id: "key_a"))
            }
        }
    }

    @Test(arguments: Backend.available)
    func keysRevisionChangesOnEditsOnly(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let initial = try await store.keysRevision()

                try await store.insertKey(apiKey("key_a", createdAt: day0))
                let afterInsert = try await store.keysRevision()
                #expect(afterInsert != initial)

                try await store.touchKeys(["key_a": day0 + 5])
                #expect(try await store.keysRevision() == afterInsert)

                #expect(try await store.revokeKey(id: "key_a"))
                let afterRevoke = try await store.keysRevision()
                #expect(afterRevoke != afterInsert)

                #expect(try await store.revokeKey(id: "key_missing") == false)
                #expect(try await store.keysRevision() == afterRevoke)

                try await store.insertKey(apiKey("key_b", createdAt: day0))
                #expect(try await store.keysRevision() != afterRevoke)
            }
        }
    }

    /// Dashboard sign-outs: ended sessions are seen by every reader, recorded once however often, forgotten once expired.
    @Test(arguments: Backend.available)
    func endedSessionsAreSharedAndForgottenAfterExpiry(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                #expect(try await store.isSessionEnded(digest: "d1") == false)
                try await store.endSession(digest: "d1", expiresAt: day0 + 100, now: day0)
                try await store.endSession(digest: "d1", expiresAt: day0 + 100, now: day0)
                try await store.endSession(digest: "d2", expiresAt: day0 + 10, now: day0)
                #expect(try await store.isSessionEnded(digest: "d1"))
                #expect(try await store.isSessionEnded(digest: "d2"))
                #expect(try await store.isSessionEnded(digest: "d3") == false)
                // Recording a later sign-out forgets the ones that expired meanwhile.
                try await store.endSession(digest: "d3", expiresAt: day0 + 200, now: day0 + 50)
                #expect(try await store.isSessionEnded(digest: "d2") == false)
                #expect(try await store.isSessionEnded(digest: "d1"))
                #expect(try await store.isSessionEnded(digest: "d3"))
            }
        }
    }

    /// The registry key changes wait on: the latest report per instance counts, silent and removed ones do not.
    @Test(arguments: Backend.available)
    func instancesReportTheKeyRevisionTheyServe(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                #expect(try await store.instancesBehind(keyRevision: 5, reportedSince: 0) == 0)
                try await store.reportInstance(id: "a", keyRevision: 4, at: day0)
                try await store.reportInstance(id: "b", keyRevision: 5, at: day0)
                try await store.reportInstance(id: "c", keyRevision: 1, at: day0 - 60)
                #expect(try await store.instancesBehind(keyRevision: 5, reportedSince: day0 - 3) == 1)
                #expect(try await store.instancesBehind(keyRevision: 5, reportedSince: 0) == 2)
                #expect(try await store.instancesBehind(keyRevision: 4, reportedSince: day0 - 3) == 0)

                try await store.reportInstance(id: "a", keyRevision: 6, at: day0 + 1)
                #expect(try await store.instancesBehind(keyRevision: 5, reportedSince: day0 - 3) == 0)
                #expect(try await store.instancesBehind(keyRevision: 6, reportedSince: day0 - 3) == 1)
                try await store.removeInstance(id: "b")
                #expect(try await store.instancesBehind(keyRevision: 6, reportedSince: day0 - 3) == 0)

                // A report also forgets instances silent for an hour.
                #expect(try await store.instancesBehind(keyRevision: 6, reportedSince: 0) == 1)
                try await store.reportInstance(id: "a", keyRevision: 6, at: day0 + 7_200)
                #expect(try await store.instancesBehind(keyRevision: 6, reportedSince: 0) == 0)
            }
        }
    }

    @Test(arguments: Backend.available)
    func touchKeysKeepsTheLatestTime(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertKey(apiKey("key_a", createdAt: day0))
                try await store.insertKey(apiKey("key_b", createdAt: day0))
                try await store.insertKey(apiKey("key_c", createdAt: day0))

                try await store.touchKeys([:])
                #expect(try await store.key(id: "key_a")?.lastUsedAt == nil)

                try await store.touchKeys(["key_a": day0 + 100, "key_b": day0 + 50.5, "key_unknown": day0 + 1])
                #expect(try await store.key(id: "key_a")?.lastUsedAt == day0 + 100)
                #expect(try await store.key(id: "key_b")?.lastUsedAt == day0 + 50.5)
                #expect(try await store.key(id: "key_c")?.lastUsedAt == nil)

                // An older time (say, from a slower instance) never moves it back.
                try await store.touchKeys(["key_a": day0 + 10, "key_b": day0 + 60])
                #expect(try await store.key(id: "key_a")?.lastUsedAt == day0 + 100)
                #expect(try await store.key(id: "key_b")?.lastUsedAt == day0 + 60)
            }
        }
    }

    // MARK: Usage inserts

    /// A database made by the first release gains the body columns and keeps what it held.
    @Test(arguments: Backend.available)
    func upgradesFromTheFirstSchema(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore(migrate: false) { store in
                try await store.migrate(through: 1)
                #expect(try await store.appliedMigrations() == [1])
                try await database.insertOldKey("key_old")
            }
            try await database.withStore { store in
                #expect(try await store.appliedMigrations() == Migration.all.map(\.version))
                #expect(try await store.listKeys().map(\.id) == ["key_old"])
                var record = usage("with-bodies", time: day0, model: "m")
                record.requestBody = #"{"messages":[{"role":"user","content":"hé\#u{0}llo"}]}"#
                record.responseBody = String(repeating: "x", count: 20_000)
                try await store.insertUsage([record, usage("without", time: day0 + 1)])
                let stored = try await store.recentUsage(UsageQuery(since: 0), limit: 10)
                #expect(stored.count == 2)
                let withBodies = try #require(stored.first { $0.id == "with-bodies" })
                #expect(withBodies.requestBody == #"{"messages":[{"role":"user","content":"héllo"}]}"#)
                #expect(withBodies.responseBody == record.responseBody)
                let without = try #require(stored.first { $0.id == "without" })
                #expect(without.requestBody == nil && without.responseBody == nil)
                #expect(without.cachedTokens == 0 && without.cacheWriteTokens == 0 && without.reasoningTokens == 0)
            }
        }
    }

    /// A client can put a NUL into a model name (`"a\u0000b"` in its JSON): PostgreSQL refuses NUL in text (a
    /// refused batch would be retried for ever) and SQLite read it back cut short, so both drop the NUL.
    @Test(arguments: Backend.available)
    func textWithNULIsStored(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertUsage([usage("nul", time: day0, model: "llama\u{0}3.2")])
                let stored = try await store.recentUsage(UsageQuery(since: 0), limit: 10)
                #expect(stored.count == 1)
                #expect(stored.first?.model == "llama3.2")
            }
        }
    }

    @Test(arguments: Backend.available)
    func duplicateUsageIDsAreNotCountedTwice(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let a = usage("a", time: day0, key: "key_a", prompt: 10, cost: 0.25)
                let b = usage("b", time: day0 + 1, key: "key_a", prompt: 20, cost: 0.5)
                try await store.insertUsage([a, b])

                // A retried batch: one record already stored (with different values), one new.
                var retried = a
                retried.costUSD = 100
                retried.promptTokens = 1000
                let c = usage("c", time: day0 + 2, key: "key_a", prompt: 30, cost: 0.125)
                try await store.insertUsage([retried, c])
                // The same id twice in one batch: the first wins.
                var dTwin = usage("d", time: day0 + 3, key: "key_a", prompt: 40, cost: 1)
                let d = dTwin
                dTwin.costUSD = 50
                try await store.insertUsage([d, dTwin])
                try await store.insertUsage([])

                let totals = try await store.usageTotals(UsageQuery(since: 0))
                #expect(totals.requests == 4)
                #expect(totals.promptTokens == 100)
                #expect(totals.costUSD == 1.875)
                #expect(try await store.spend(keyID: "key_a") == 1.875)
                #expect(try await store.recentUsage(UsageQuery(since: 0), limit: 10) == [d, c, b, a])
            }
        }
    }

    @Test(arguments: Backend.available)
    func largeBatchCrossesTheInsertChunk(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let records = (0..<1200).map { i in
                    usage(
                        String(format: "r%05d", i), time: day0 + Double(i), key: i.isMultiple(of: 2) ? "key_even" : "key_odd",
                        model: "llama3", prompt: i, completion: 1, latency: Double(i % 100), cost: 0.25)
                }
                try await store.insertUsage(records)

                var totals = try await store.usageTotals(UsageQuery(since: 0))
                #expect(totals.requests == 1200)
                #expect(totals.promptTokens == (0..<1200).reduce(0, +))
                #expect(totals.completionTokens == 1200)
                #expect(totals.costUSD == 300)
                #expect(try await store.spend(keyID: "key_even") == 150)

                // The whole batch again plus five new records: only the new ones count.
                let more = (1200..<1205).map { usage(String(format: "r%05d", $0), time: day0 + Double($0), cost: 0.25) }
                try await store.insertUsage(records + more)
                totals = try await store.usageTotals(UsageQuery(since: 0))
                #expect(totals.requests == 1205)
                #expect(totals.costUSD == 301.25)

                let newest = try await store.recentUsage(UsageQuery(since: 0), limit: 3)
                #expect(newest.map(\.id) == ["r01204", "r01203", "r01202"])
            }
        }
    }

    @Test(arguments: Backend.available)
    func aNulInTextDoesNotFailTheBatch(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertUsage([
                    usage("nul", time: day0, key: "key_a", model: "bad\u{0}model", cost: 0.5),
                    usage("ok", time: day0 + 1, key: "key_a", model: "llama3", cost: 0.25),
                ])
                #expect(try await store.usageTotals(UsageQuery(since: 0)).requests == 2)
                #expect(try await store.spend(keyID: "key_a") == 0.75)
            }
        }
    }

    // MARK: Reports

    /// Eight records over two days, three keys (one absent) and three models (one absent).
    ///
    /// Costs are binary fractions, so sums are exact whatever order the database adds them in.
    static let reportRecords: [UsageRecord] = [
        usage("a1", time: day0 + 3_600, key: "key_a", model: "llama3", prompt: 10, completion: 5, latency: 40, cost: 0.25),
        usage("a2", time: day0 + 7_200, key: "key_a", model: "llama3", cacheHit: true, prompt: 10, completion: 5, latency: 10, saved: 0.25),
        usage("a3", time: day0 + 10_800, key: "key_a", model: "llama3", prompt: 20, completion: 10, latency: 30, cost: 0.5),
        usage("a4", time: day0 + 86_399.5, key: "key_a", model: "gpt-4o", prompt: 1, completion: 2, latency: 20, cost: 1.5),
        usage("b1", time: day1 + 60, key: "key_b", model: "gpt-4o", prompt: 100, completion: 50, latency: 300, cost: 2, saved: 0.5),
        usage("b2", time: day1 + 120, key: "key_b", model: "gpt-4o", status: 500, latency: 200),
        usage("b3", time: day1 + 180, key: "key_b", model: "gpt-4o", errorCode: "upstream_timeout", latency: 100),
        usage("n1", time: day1 + 240, status: 401, errorCode: "invalid_api_key", latency: 5),
    ]

    @Test(arguments: Backend.available)
    func totalsAndGroups(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertUsage(Self.reportRecords.reversed())
                let all = UsageQuery(since: 0)

                // Latencies ascending: 5 10 20 30 40 100 200 300; p50 is rank 4, p95 rank 8.
                #expect(
                    try await store.usageTotals(all)
                        == UsageTotals(
                            requests: 8, promptTokens: 141, completionTokens: 72, costUSD: 4.25, savedUSD: 0.75, cacheHits: 1,
                            errors: 3, p50LatencyMs: 30, p95LatencyMs: 300))

                #expect(
                    try await store.usageGroups(all, by: .key) == [
                        UsageGroup(
                            group: "",
                            totals: UsageTotals(requests: 1, errors: 1, p50LatencyMs: 5, p95LatencyMs: 5)),
                        UsageGroup(
                            group: "key_a",
                            totals: UsageTotals(
                                requests: 4, promptTokens: 41, completionTokens: 22, costUSD: 2.25, savedUSD: 0.25, cacheHits: 1,
                                p50LatencyMs: 20, p95LatencyMs: 40)),
                        UsageGroup(
                            group: "key_b",
                            totals: UsageTotals(
                                requests: 3, promptTokens: 100, completionTokens: 50, costUSD: 2, savedUSD: 0.5, errors: 2,
                                p50LatencyMs: 200, p95LatencyMs: 300)),
                    ])

                #expect(
                    try await store.usageGroups(all, by: .model) == [
                        UsageGroup(
                            group: "",
                            totals: UsageTotals(requests: 1, errors: 1, p50LatencyMs: 5, p95LatencyMs: 5)),
                        UsageGroup(
                            group: "gpt-4o",
                            totals: UsageTotals(
                                requests: 4, promptTokens: 101, completionTokens: 52, costUSD: 3.5, savedUSD: 0.5, errors: 2,
                                p50LatencyMs: 100, p95LatencyMs: 300)),
                        UsageGroup(
                            group: "llama3",
                            totals: UsageTotals(
                                requests: 3, promptTokens: 40, completionTokens: 20, costUSD: 0.75, savedUSD: 0.25, cacheHits: 1,
                                p50LatencyMs: 30, p95LatencyMs: 40)),
                    ])

                // Days are UTC; a4 at 23:59:59.5 still belongs to the first day.
                #expect(
                    try await store.usageGroups(all, by: .day) == [
                        UsageGroup(
                            group: "2023-11-14",
                            totals: UsageTotals(
                                requests: 4, promptTokens: 41, completionTokens: 22, costUSD: 2.25, savedUSD: 0.25, cacheHits: 1,
                                p50LatencyMs: 20, p95LatencyMs: 40)),
                        UsageGroup(
                            group: "2023-11-15",
                            totals: UsageTotals(
                                requests: 4, promptTokens: 100, completionTokens: 50, costUSD: 2, savedUSD: 0.5, errors: 3,
                                p50LatencyMs: 100, p95LatencyMs: 300)),
                    ])
            }
        }
    }

    /// `sluice usage --by route`: the coding-agent surfaces are told apart from the chat routes.
    @Test(arguments: Backend.available)
    func groupsByRoute(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertUsage([
                    usage("r1", time: 1_700_000_000, prompt: 1, completion: 2, route: "/v1/messages"),
                    usage("r2", time: 1_700_000_001, prompt: 3, completion: 4, route: "/v1/messages"),
                    usage("r3", time: 1_700_000_002, prompt: 5, completion: 6, route: "/v1/responses"),
                    usage("r4", time: 1_700_000_003, prompt: 7, completion: 8),
                ])
                let groups = try await store.usageGroups(UsageQuery(since: 0), by: .route)
                #expect(groups.map(\.group) == ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
                #expect(groups.map(\.totals.requests) == [1, 2, 1])
                #expect(groups.map(\.totals.promptTokens) == [7, 4, 5])
            }
        }
    }

    @Test(arguments: Backend.available)
    func reportFilters(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertUsage(Self.reportRecords)

                // `since` is inclusive, `until` exclusive.
                let secondDay = try await store.usageTotals(UsageQuery(since: day1 + 60))
                #expect(secondDay.requests == 4)
                #expect(secondDay.costUSD == 2)
                let firstDay = try await store.usageTotals(UsageQuery(since: day0, until: day1 + 60))
                #expect(firstDay.requests == 4)
                #expect(firstDay.costUSD == 2.25)
                #expect(try await store.usageTotals(UsageQuery(since: day0 + 3_600, until: day0 + 3_601)).requests == 1)
                #expect(try await store.usageTotals(UsageQuery(since: day0 + 3_601, until: day0 + 7_200)).requests == 0)

                let keyA = try await store.usageTotals(UsageQuery(since: 0, keyID: "key_a"))
                #expect(keyA.requests == 4)
                #expect(keyA.p50LatencyMs == 20)
                let gptForA = try await store.usageTotals(UsageQuery(since: 0, keyID: "key_a", model: "gpt-4o"))
                #expect(gptForA == UsageTotals(requests: 1, promptTokens: 1, completionTokens: 2, costUSD: 1.5, p50LatencyMs: 20, p95LatencyMs: 20))
                #expect(
                    try await store.usageGroups(UsageQuery(since: day1, model: "gpt-4o"), by: .key).map(\.group) == ["key_b"])
                #expect(
                    try await store.usageGroups(UsageQuery(since: 0, until: day1), by: .model).map(\.group) == ["gpt-4o", "llama3"])

                // Nothing matches: zero totals, no groups.
                let none = UsageQuery(since: day1 + 86_400)
                #expect(try await store.usageTotals(none) == UsageTotals())
                #expect(try await store.usageGroups(none, by: .day).isEmpty)
                #expect(try await store.usageTotals(UsageQuery(since: 0, keyID: "key_missing")) == UsageTotals())
            }
        }
    }

    @Test(arguments: Backend.available)
    func latencyPercentilesUseNearestRank(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let sizes = [1, 2, 3, 4, 19, 20, 21, 40, 101]
                var records: [UsageRecord] = []
                var latencies: [String: [Double]] = [:]
                for n in sizes {
                    // Distinct values in a scrambled order (7 is coprime to every size but 21, which gets repeats).
                    let values = (0..<n).map { Double(($0 * 7) % n) * 1.5 + 1 }
                    latencies["m\(n)"] = values
                    for (i, latency) in values.enumerated() {
                        records.append(usage("m\(n)-\(i)", time: day0 + Double(i), model: "m\(n)", latency: latency))
                    }
                }
                try await store.insertUsage(records)

                let groups = try await store.usageGroups(UsageQuery(since: 0), by: .model)
                #expect(groups.count == sizes.count)
                for group in groups {
                    let values = try #require(latencies[group.group])
                    #expect(group.totals.p50LatencyMs == nearestRank(0.5, of: values), "p50 of \(group.group)")
                    #expect(group.totals.p95LatencyMs == nearestRank(0.95, of: values), "p95 of \(group.group)")
                }
                for n in sizes {
                    let totals = try await store.usageTotals(UsageQuery(since: 0, model: "m\(n)"))
                    let values = try #require(latencies["m\(n)"])
                    #expect(totals.p50LatencyMs == nearestRank(0.5, of: values), "p50 of m\(n)")
                    #expect(totals.p95LatencyMs == nearestRank(0.95, of: values), "p95 of m\(n)")
                }
            }
        }
    }

    /// A report read while batches commit must still add up: its totals and its groups come from one snapshot.
    @Test(arguments: Backend.available)
    func reportsAddUpWhileRecordsAreWritten(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let batches = 60
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for batch in 0..<batches {
                            try await store.insertUsage((0..<3).map {
                                usage("b\(batch)-\($0)", time: day0 + Double(batch), model: "m\($0)")
                            })
                        }
                    }
                    group.addTask {
                        var requests = 0
                        while requests < batches * 3, !Task.isCancelled {
                            let report = try await store.usageReport(UsageQuery(since: 0), by: .model)
                            requests = report.totals.requests
                            #expect(report.groups.map(\.totals.requests).reduce(0, +) == requests)
                            #expect(requests % 3 == 0, "a report saw part of a batch")
                        }
                    }
                    try await group.waitForAll()
                }
            }
        }
    }

    // MARK: Recent usage, spend, retention

    @Test(arguments: Backend.available)
    func recentUsageOrderLimitAndFilters(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                var records = Self.reportRecords
                // Every field set, to check the round trip.
                let detailed = UsageRecord(
                    id: "z-detailed", time: day1 + 240, requestID: "req-detailed", keyID: "key_b", clientIP: "2001:db8::1",
                    route: "/api/chat", model: "gpt-4o", upstream: "openai", status: 429, errorCode: "rate_limited",
                    stream: true, cacheHit: true, promptTokens: 7, completionTokens: 9, cachedTokens: 4, cacheWriteTokens: 2,
                    reasoningTokens: 5, tokensEstimated: true, latencyMs: 12.75,
                    timeToFirstTokenMs: 3.5, costUSD: 0.0625, savedUSD: 0.03125)
                records.append(detailed)
                try await store.insertUsage(records)

                let all = try await store.recentUsage(UsageQuery(since: 0), limit: 100)
                // Newest first; n1 and z-detailed share a time, so the larger id comes first.
                #expect(all.map(\.id) == ["z-detailed", "n1", "b3", "b2", "b1", "a4", "a3", "a2", "a1"])
                #expect(all.first == detailed)
                #expect(Set(all.map(\.id)) == Set(records.map(\.id)))
                for record in records {
                    #expect(all.first { $0.id == record.id } == record)
                }

                #expect(try await store.recentUsage(UsageQuery(since: 0), limit: 2).map(\.id) == ["z-detailed", "n1"])
                #expect(try await store.recentUsage(UsageQuery(since: 0), limit: 0).isEmpty)
                #expect(
                    try await store.recentUsage(UsageQuery(since: day0, until: day1), limit: 10).map(\.id)
                        == ["a4", "a3", "a2", "a1"])
                #expect(
                    try await store.recentUsage(UsageQuery(since: day1 + 60, until: day1 + 240), limit: 10).map(\.id)
                        == ["b3", "b2", "b1"])
                #expect(
                    try await store.recentUsage(UsageQuery(since: 0, keyID: "key_b"), limit: 2).map(\.id)
                        == ["z-detailed", "b3"])
                #expect(
                    try await store.recentUsage(UsageQuery(since: 0, keyID: "key_a", model: "llama3"), limit: 10).map(\.id)
                        == ["a3", "a2", "a1"])
                #expect(try await store.recentUsage(UsageQuery(since: 0, model: "missing"), limit: 10).isEmpty)
            }
        }
    }

    @Test(arguments: Backend.available)
    func spendSumsAKeysCost(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertUsage(Self.reportRecords)
                #expect(try await store.spend(keyID: "key_a") == 2.25)
                #expect(try await store.spend(keyID: "key_b") == 2)
                #expect(try await store.spend(keyID: "key_missing") == 0)
                #expect(try await store.spend(keyID: "") == 0)
                // Budget refreshes read every budgeted key at once, in chunks past the parameter limits.
                #expect(try await store.spend(keyIDs: ["key_a", "key_b", "key_missing"]) == ["key_a": 2.25, "key_b": 2])
                let many = (0..<1_200).map { "key_\($0)" } + ["key_b"]
                #expect(try await store.spend(keyIDs: many) == ["key_b": 2])
                #expect(try await store.spend(keyIDs: []) == [:])
            }
        }
    }

    /// Budgets count everything a key spent: deleting old records for retention gives no budget back.
    @Test(arguments: Backend.available)
    func retentionDoesNotLowerWhatAKeySpent(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                try await store.insertUsage((0..<4).map { usage("old-\($0)", time: day0, key: "key_a", cost: 0.25) })
                try await store.insertUsage([usage("new", time: day1, key: "key_a", cost: 0.5)])
                #expect(try await store.deleteUsage(before: day1, limit: 10) == 4)
                #expect(try await store.usageTotals(UsageQuery(since: 0)).costUSD == 0.5)
                #expect(try await store.spend(keyID: "key_a") == 1.5)
            }
        }
    }

    /// A database from before running totals: the upgrade adds up what each key spent in the records it holds.
    @Test(arguments: Backend.available)
    func upgradingTotalsWhatKeysSpentBefore(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore(migrate: false) { store in try await store.migrate(through: 4) }
            for (id, key, cost) in [("r1", "'key_a'", 0.5), ("r2", "'key_a'", 0.25), ("r3", "'key_b'", 1.0), ("r4", "NULL", 2.0)] {
                try await database.execute(
                    """
                    INSERT INTO usage_records (id, time, request_id, key_id, route, status, stream, cache_hit, prompt_tokens,
                        completion_tokens, tokens_estimated, latency_ms, cost_usd, saved_usd)
                    VALUES ('\(id)', \(day0), 'req', \(key), '/v1/chat/completions', 200, FALSE, FALSE, 1, 1, FALSE, 1, \(cost), 0)
                    """)
            }
            try await database.withStore { store in
                #expect(try await store.spend(keyID: "key_a") == 0.75)
                #expect(try await store.spend(keyID: "key_b") == 1)
                try await store.insertUsage([usage("r5", time: day0, key: "key_a", cost: 0.125)])
                #expect(try await store.spend(keyID: "key_a") == 0.875)
            }
        }
    }

    @Test(arguments: Backend.available)
    func deleteUsageRemovesTheOldestInBoundedBatches(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                // Ten records, inserted out of time order, with ids that do not sort by time.
                let records = (0..<10).map { i in usage("id-\(9 - i)", time: day0 + Double(i) * 60, cost: 0.25) }
                try await store.insertUsage(records.shuffled())
                let cutoff = day0 + 7 * 60  // records 0...6 are older

                #expect(try await store.deleteUsage(before: cutoff, limit: 0) == 0)
                #expect(try await store.deleteUsage(before: cutoff, limit: 3) == 3)
                var remaining = try await store.recentUsage(UsageQuery(since: 0), limit: 100)
                #expect(remaining.map(\.time) == (3..<10).reversed().map { day0 + Double($0) * 60 })

                #expect(try await store.deleteUsage(before: cutoff, limit: 3) == 3)
                #expect(try await store.deleteUsage(before: cutoff, limit: 3) == 1)
                #expect(try await store.deleteUsage(before: cutoff, limit: 3) == 0)

                remaining = try await store.recentUsage(UsageQuery(since: 0), limit: 100)
                #expect(remaining.map(\.time) == (7..<10).reversed().map { day0 + Double($0) * 60 })
                #expect(try await store.usageTotals(UsageQuery(since: 0)).costUSD == 0.75)
            }
        }
    }
}
