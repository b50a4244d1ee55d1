import Foundation
import SluiceCore
import SluiceStore
import Testing

/// Opening, closing and losing the database, per backend.
struct StoreLifecycleTests {
    @Test func sqliteFileIsCreatedOwnerOnly() async throws {
        try await TestDatabase.withFresh(.sqlite) { database in
            try await database.withStore { store in
                try await store.insertUsage([usage("u1", time: day0)])
                for path in [database.location, database.location + "-wal", database.location + "-shm"]
                where FileManager.default.fileExists(atPath: path) {
                    let attributes = try FileManager.default.attributesOfItem(atPath: path)
                    let mode = try #require(attributes[.posixPermissions] as? NSNumber).intValue
                    #expect(mode & 0o777 == 0o600, "mode of \(path) is \(String(mode, radix: 8))")
                }
                #expect(FileManager.default.fileExists(atPath: database.location))
            }
        }
    }

    @Test func sqliteStoreThrowsAfterCloseAndReopens() async throws {
        try await TestDatabase.withFresh(.sqlite) { database in
            let store = SQLiteStore(path: database.location, logger: testLogger)
            try await store.migrate()
            try await store.insertUsage([usage("u1", time: day0, key: "key_a", cost: 0.5)])
            try await store.close()

            await #expect(throws: StoreError.self) { try await store.insertUsage([usage("u2", time: day0)]) }
            await #expect(throws: StoreError.self) { try await store.key(id: "key_a") }
            await #expect(throws: StoreError.self) { try await store.migrate() }
            // Closing twice is fine.
            try await store.close()

            // Back up: a new store on the same file has everything written before the close.
            try await database.withStore { reopened in
                #expect(try await reopened.spend(keyID: "key_a") == 0.5)
                try await reopened.insertUsage([usage("u2", time: day0 + 1, key: "key_a", cost: 0.25)])
                #expect(try await reopened.spend(keyID: "key_a") == 0.75)
            }
        }
    }

    /// A service group cancels `run()` at shutdown, so closing must work from a cancelled task.
    @Test func sqliteStoreClosesFromACancelledTask() async throws {
        try await TestDatabase.withFresh(.sqlite) { database in
            let store = SQLiteStore(path: database.location, logger: testLogger)
            try await store.migrate()
            let closing = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                try await store.close()
            }
            try await closing.value
            await #expect(throws: StoreError.self) { try await store.listKeys() }
        }
    }

    @Test func sqliteUnopenablePathThrowsStoreError() async throws {
        let path = "/nonexistent-\(UUID().uuidString)/sluice.db"
        await #expect(throws: StoreError.self) { _ = try await SQLiteStore.open(path: path, logger: testLogger) }
        let store = SQLiteStore(path: path, logger: testLogger)
        await #expect(throws: StoreError.self) { try await store.migrate() }
        try await store.close()
    }

    @Test func sqliteRelativePathIsPinnedWhenCreated() throws {
        let store = SQLiteStore(path: "relative/sluice.db", logger: testLogger)
        #expect(store.path == FileManager.default.currentDirectoryPath + "/relative/sluice.db")
        #expect(SQLiteStore(path: ":memory:", logger: testLogger).path == ":memory:")
    }

    @Test func sqliteInMemoryStoreWorks() async throws {
        let store = SQLiteStore(path: ":memory:", logger: testLogger)
        try await store.migrate()
        try await store.insertUsage([usage("u1", time: day0, cost: 0.25)])
        #expect(try await store.usageTotals(UsageQuery(since: 0)).requests == 1)
        try await store.close()
    }

    /// Nothing listens on port 1: the pool keeps retrying, and the store gives up after `connect_timeout`.
    @Test(.timeLimit(.minutes(1)))
    func postgresStoreFailsFastWhenTheServerIsDown() async throws {
        let password = "down-\(UUID().uuidString)"
        let url = "postgres://sluice:\(password)@127.0.0.1:1/sluice_test?sslmode=disable&connect_timeout=1"
        try await TestDatabase.withPostgresStore(url: url) { store in
            #expect(store.connectionWaitTimeout == .seconds(1))
            let clock = ContinuousClock()
            let start = clock.now
            let error = await #expect(throws: StoreError.self) {
                try await store.insertUsage([usage("u1", time: day0)])
            }
            #expect(clock.now - start < .seconds(10))
            #expect(error?.description.contains("insert usage records") == true)
            #expect(error?.description.contains(password) == false)

            // Every later call fails the same bounded way rather than queueing forever.
            await #expect(throws: StoreError.self) { try await store.key(hash: "hash") }
            #expect(clock.now - start < .seconds(20))
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func postgresStoreWithoutRunFailsInsteadOfHanging() async throws {
        let store = try PostgresStore(
            url: "postgres://sluice:sluice@127.0.0.1:1/sluice_test?sslmode=disable&connect_timeout=1", logger: testLogger)
        await #expect(throws: StoreError.self) { try await store.listKeys() }
    }

    @Test(.enabled(if: Backend.postgresURL != nil, "needs SLUICE_TEST_POSTGRES_URL"), .timeLimit(.minutes(1)))
    func postgresWrongPasswordIsReportedWithoutIt() async throws {
        let validURL = try #require(Backend.postgresURL)
        var components = try #require(URLComponents(string: validURL))
        let password = "wrong-\(UUID().uuidString)"
        components.password = password
        components.queryItems = (components.queryItems ?? []).filter { $0.name != "connect_timeout" }
            + [URLQueryItem(name: "connect_timeout", value: "2")]
        let url = try #require(components.string)

        try await TestDatabase.withPostgresStore(url: url) { store in
            let error = await #expect(throws: StoreError.self) { try await store.migrate() }
            #expect(error?.description.contains(password) == false)
            #expect(error?.description.contains(url) == false)
        }
    }
}
