import Logging
import SluiceCore
import SluiceServer
import SluiceStore
import Testing

/// What a key change reports about the instances it waited for and the ones it could not.
struct KeyPropagationTests {
    static let now: Double = 1_800_000_000

    func withStore(_ body: (SQLiteStore) async throws -> Void) async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = SQLiteStore(path: ":memory:", logger: logger)
        do {
            try await store.migrate()
            try await store.insertKey(
                APIKeyRecord(id: "k1", name: "k1", hash: "hash-k1", prefix: "sk-sluice-k1", createdAt: Self.now))
            try await body(store)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    @Test func instancesThatStoppedReportingAreCountedAsSilentNotWaitedFor() async throws {
        try await withStore { store in
            let revision = try await store.keysRevision()
            try await store.reportInstance(id: "current", keyRevision: revision, at: Self.now)
            try await store.reportInstance(id: "crashed", keyRevision: revision - 1, at: Self.now - 60)
            let outcome = try await KeyPropagation.awaitInstances(store: store, timeout: .seconds(5), now: { Self.now })
            #expect(outcome == .init(lagging: 0, silent: 1))
        }
    }

    @Test func aLiveInstanceThatNeverConfirmsIsLaggingWhenTheWaitRunsOut() async throws {
        try await withStore { store in
            let revision = try await store.keysRevision()
            try await store.reportInstance(id: "stuck", keyRevision: revision - 1, at: Self.now)
            try await store.reportInstance(id: "current", keyRevision: revision, at: Self.now - 60)
            let outcome = try await KeyPropagation.awaitInstances(store: store, timeout: .zero, now: { Self.now })
            #expect(outcome == .init(lagging: 1, silent: 0))
        }
    }
}
