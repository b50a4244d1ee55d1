import Foundation
import Logging
import PostgresNIO
import SQLiteNIO
import SluiceCore
import SluiceStore
import Testing

/// A store as the contract tests see it: the protocol plus the diagnostics both implementations offer.
protocol StoreUnderTest: GatewayStore {
    func appliedMigrations() async throws -> [Int]
    func migrate(through lastVersion: Int) async throws
}

extension GatewayStore {
    /// What one key has spent in all: the contract's checks read keys one at a time.
    func spend(keyID: String) async throws -> Double {
        try await self.spend(keyIDs: [keyID])[keyID] ?? 0
    }
}

extension SQLiteStore: StoreUnderTest {}
extension PostgresStore: StoreUnderTest {}

/// The backends the contract runs against.
enum Backend: String, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { self.rawValue }

    /// `SLUICE_TEST_POSTGRES_URL`, e.g. from `eval "$(scripts/start-postgres)"`.
    static var postgresURL: String? {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_TEST_POSTGRES_URL"], !url.isEmpty else { return nil }
        return url
    }

    /// CI sets `SLUICE_REQUIRE_POSTGRES=1` so that a missing server fails instead of skipping.
    static var postgresRequired: Bool {
        ProcessInfo.processInfo.environment["SLUICE_REQUIRE_POSTGRES"] == "1"
    }

    /// SQLite always; PostgreSQL when a test server is configured.
    static var available: [Backend] {
        postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]
    }
}

let testLogger: Logger = {
    var logger = Logger(label: "sluice.store-tests")
    logger.logLevel = .warning
    return logger
}()

/// One empty database for one test, and the stores opened on it.
///
/// SQLite databases are files in a fresh temporary directory. PostgreSQL tests share the server's database, so
/// the contract suite is serialised and ``reset()`` drops the schema's tables before each test.
struct TestDatabase: Sendable {
    let backend: Backend
    /// The SQLite file, or the PostgreSQL URL.
    let location: String

    /// Runs `body` with an empty database, removing it afterwards.
    static func withFresh<R>(_ backend: Backend, _ body: (TestDatabase) async throws -> R) async throws -> R {
        switch backend {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("sluice-store-tests-\(UUID().uuidString)", isDirectory: true)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            return try await body(TestDatabase(backend: .sqlite, location: directory.appendingPathComponent("sluice.db").path))
        case .postgres:
            let url = try #require(Backend.postgresURL, "SLUICE_TEST_POSTGRES_URL is not set")
            let database = TestDatabase(backend: .postgres, location: url)
            try await database.reset()
            return try await body(database)
        }
    }

    /// Opens a store on this database for the duration of `body` (running PostgreSQL's pool meanwhile).
    func withStore<R>(migrate: Bool = true, _ body: (any StoreUnderTest) async throws -> R) async throws -> R {
        switch self.backend {
        case .sqlite:
            let store = SQLiteStore(path: self.location, logger: testLogger)
            do {
                if migrate { try await store.migrate() }
                let result = try await body(store)
                try await store.close()
                return result
            } catch {
                try? await store.close()
                throw error
            }
        case .postgres:
            return try await Self.withPostgresStore(url: self.location) { store in
                if migrate { try await store.migrate() }
                return try await body(store)
            }
        }
    }

    /// Runs a `PostgresStore` (its pool) while `body` uses it.
    static func withPostgresStore<R>(url: String, _ body: (PostgresStore) async throws -> R) async throws -> R {
        let store = try PostgresStore(url: url, logger: testLogger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            defer { group.cancelAll() }
            return try await body(store)
        }
    }

    /// Runs one statement straight on the database, past the store: for states the store itself never makes, such
    /// as records written by an older release.
    func execute(_ sql: String) async throws {
        switch backend {
        case .sqlite:
            let connection = try await SQLiteConnection.open(storage: .file(path: location), logger: testLogger)
            do {
                _ = try await connection.query(sql)
            } catch {
                try? await connection.close()
                throw error
            }
            try await connection.close()
        case .postgres:
            try await Self.withPostgresStore(url: location) { store in
                _ = try await store.client.query(PostgresQuery(unsafeSQL: sql), logger: testLogger)
            }
        }
    }

    /// Inserts a key with only the first schema's columns, as an older release would have.
    func insertOldKey(_ id: String) async throws {
        try await execute(
            """
            INSERT INTO api_keys (id, name, hash, prefix, created_at, allowed_models, updated_at)
            VALUES ('\(id)', '\(id)', 'hash-\(id)', 'sk-sluice-\(id)', \(day0), '[]', \(day0))
            """)
    }

    /// Inserts a usage record and its key's running total as a release before rollups would have.
    func insertOldUsage(_ id: String, key: String, cost: Double) async throws {
        let bool = backend == .sqlite ? "0" : "FALSE"
        try await execute(
            """
            INSERT INTO usage_records (id, time, request_id, key_id, route, status, stream, cache_hit, prompt_tokens,
                completion_tokens, tokens_estimated, latency_ms, cost_usd, saved_usd)
            VALUES ('\(id)', \(day0), 'req-\(id)', '\(key)', '/v1/chat/completions', 200, \(bool), \(bool), 0, 0, \(bool), 1, \(cost), 0)
            """)
        try await execute("INSERT INTO key_spend (key_id, spent_usd) VALUES ('\(key)', \(cost))")
    }

    /// Drops every table the migrations create, so the next store starts from an empty schema.
    private func reset() async throws {
        try await Self.withPostgresStore(url: self.location) { store in
            _ = try await store.client.query(
                "DROP TABLE IF EXISTS usage_records, api_keys, key_revision, gateway_instances, ended_sessions, key_spend, stored_responses, rate_buckets, teams, usage_rollups, budget_alerts, budget_reservations, schema_migrations", logger: testLogger)
        }
    }
}

// MARK: Fixtures

/// 2023-11-14T00:00:00Z and the following day.
let day0: Double = 1_699_920_000
let day1: Double = day0 + 86_400

func usage(
    _ id: String, time: Double, key: String? = nil, model: String? = nil, status: Int = 200, errorCode: String? = nil,
    cacheHit: Bool = false, prompt: Int = 0, completion: Int = 0, latency: Double = 1, cost: Double = 0, saved: Double = 0,
    route: String = "/v1/chat/completions"
) -> UsageRecord {
    UsageRecord(
        id: id, time: time, requestID: "req-\(id)", keyID: key, clientIP: "127.0.0.1", route: route,
        model: model, upstream: model == nil ? nil : "local", status: status, errorCode: errorCode, stream: false,
        cacheHit: cacheHit, promptTokens: prompt, completionTokens: completion, tokensEstimated: false, latencyMs: latency,
        timeToFirstTokenMs: nil, costUSD: cost, savedUSD: saved)
}

func apiKey(_ id: String, createdAt: Double, name: String? = nil) -> APIKeyRecord {
    APIKeyRecord(id: id, name: name ?? "key \(id)", hash: "hash-\(id)", prefix: "sk-sluice-\(id.prefix(4))", createdAt: createdAt)
}

/// The nearest-rank percentile: the value at rank ceil(p·N) of the ascending values (PostgreSQL's `percentile_disc`).
func nearestRank(_ p: Double, of values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let rank = Int((p * Double(values.count)).rounded(.up))
    return values.sorted()[max(rank, 1) - 1]
}
