import Foundation
import Logging
import SQLiteNIO
import ServiceLifecycle
import SluiceCore

/// The embedded store: one SQLite file in WAL mode, on sqlite-nio's thread pool.
///
/// Statements run on `NIOThreadPool.singleton`, never on an event loop or the cooperative pool. All use of the
/// single connection is serialised (see ``SQLiteConnectionGate``); several processes may share the file, waiting
/// up to the busy timeout for each other's write locks.
///
/// The connection opens on first use, so `init` never fails; ``open(path:busyTimeout:logger:)`` opens eagerly to
/// surface a bad path at start-up. As a `Service`, ``run()`` waits for graceful shutdown and then closes the
/// connection: put the store before the ``UsageWriter`` in a `ServiceGroup` so the writer's final flush happens
/// first. Outside a service group, call ``close()``.
public final class SQLiteStore: GatewayStore, Service {
    /// The database file (absolute), or `:memory:`.
    public let path: String
    private let logger: Logger
    private let gate: SQLiteConnectionGate

    /// - Parameters:
    ///   - path: A file path (relative paths resolve against the current directory now) or `:memory:`.
    ///   - busyTimeout: How long a statement waits for another process's lock before failing.
    public init(path: String, busyTimeout: Duration = .seconds(5), logger: Logger) {
        let resolved: String
        if path == ":memory:" || path.hasPrefix("/") {
            resolved = path
        } else {
            // sqlite-nio resolves relative paths at open time; pin them now so a later chdir cannot move the database.
            resolved = URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
                .standardizedFileURL.path
        }
        self.path = resolved
        self.logger = logger
        let timeoutMs = Int(busyTimeout.components.seconds * 1000 + busyTimeout.components.attoseconds / 1_000_000_000_000_000)
        self.gate = SQLiteConnectionGate { [logger] in
            try await Self.openConnection(path: resolved, busyTimeoutMs: timeoutMs, logger: logger)
        }
    }

    /// Opens the database now, so a bad path or unreadable file fails here rather than on the first request.
    public static func open(path: String, busyTimeout: Duration = .seconds(5), logger: Logger) async throws -> SQLiteStore {
        let store = SQLiteStore(path: path, busyTimeout: busyTimeout, logger: logger)
        try await store.withConnection { _ in }
        return store
    }

    private static func openConnection(path: String, busyTimeoutMs: Int, logger: Logger) async throws -> SQLiteConnection {
        let storage: SQLiteConnection.Storage
        if path == ":memory:" {
            storage = .memory
        } else {
            storage = .file(path: path)
            // The file holds key hashes and client IPs: create it owner-only (SQLite gives -wal/-shm the same mode).
            try await NIOThreadPool.singleton.runIfActive {
                // O_EXCL, not FileManager.createFile: that writes atomically (temp file + rename), which would
                // swap the file under a connection another process or task opened a moment earlier.
                #if canImport(Glibc)
                let fd = Glibc.open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
                if fd >= 0 { _ = Glibc.close(fd) }
                #else
                let fd = Darwin.open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
                if fd >= 0 { _ = Darwin.close(fd) }
                #endif
                // A file made by an older version, another tool or a restored backup may be world-readable: tighten it
                // (and its journal files, whose mode SQLite copies from the database) before any connection opens it.
                for file in [path, path + "-wal", path + "-shm", path + "-journal"] where try Self.restrictToOwner(file) {
                    logger.warning("database file was readable by other users; set it to mode 0600", metadata: ["file": .string(file)])
                }
            }
        }
        let connection = try await SQLiteConnection.open(storage: storage, logger: logger)
        do {
            // Replaces sqlite-nio's retry-forever busy handler with a bounded wait.
            _ = try await connection.execute("PRAGMA busy_timeout = \(busyTimeoutMs)")
            // WAL lets readers (another `sluice` process, a report) run while the writer commits.
            try await Self.enableWAL(connection)
            // In WAL mode NORMAL is still crash-safe for the database; only the last commits may roll back on power loss.
            _ = try await connection.execute("PRAGMA synchronous = NORMAL")
        } catch {
            try? await connection.closeToCompletion()
            throw error
        }
        return connection
    }

    /// Sets `file` to mode 0600 if it exists with any group or other bit; a file that cannot be changed (another
    /// owner) is refused with a message that says what to do, rather than opened readable by others.
    /// Returns whether it changed the mode.
    static func restrictToOwner(_ file: String) throws -> Bool {
        var info = stat()
        guard stat(file, &info) == 0 else { return false }
        guard info.st_mode & 0o077 != 0 else { return false }
        guard chmod(file, 0o600) == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw StoreError(
                "database file \(file) has mode 0\(mode), readable by other users, and cannot be set to 0600 "
                    + "(errno \(errno)); run `chmod 600 \(file)` as its owner")
        }
        return true
    }

    /// Switching a fresh file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once, without its
    /// busy handler, when two connections switch at the same moment (two instances starting together). The
    /// switch is idempotent, so a bounded retry settles it.
    static func enableWAL(_ connection: SQLiteConnection) async throws {
        var attempt = 0
        while true {
            do {
                _ = try await connection.execute("PRAGMA journal_mode = WAL")
                return
            } catch let error as SQLiteError where error.reason == .busy && attempt < 100 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    // MARK: Service

    /// Waits for graceful shutdown (or cancellation), then closes the connection.
    public func run() async throws {
        try? await gracefulShutdown()
        try await self.close()
    }

    public func close() async throws {
        do {
            try await self.gate.close()
        } catch {
            throw Self.storeError(error, doing: "close the database")
        }
    }

    // MARK: Migrations

    public func migrate() async throws {
        try await self.migrate(through: .max)
    }

    /// Applies pending migrations up to and including `lastVersion`, as an older release would have.
    public func migrate(through lastVersion: Int) async throws {
        try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                _ = try await connection.execute(MigrationSQL.createVersionTable)
            }
            for migration in Migration.all where migration.version <= lastVersion {
                // BEGIN IMMEDIATE takes the write lock first, so a second process waits here and then sees the version.
                try await self.inTransaction(connection) {
                    let applied = try await connection.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", [.integer(migration.version)])
                    guard applied.isEmpty else { return }
                    for statement in migration.sqlite {
                        _ = try await connection.execute(statement)
                    }
                    _ = try await connection.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        [.integer(migration.version), .text(migration.name), .float(Date().timeIntervalSince1970)])
                    self.logger.info(
                        "applied schema migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                }
            }
        }
    }

    /// Applied migration versions, ascending (for tests and diagnostics).
    public func appliedMigrations() async throws -> [Int] {
        try await self.withConnection { connection in
            try await connection.execute("SELECT version FROM schema_migrations ORDER BY version").compactMap {
                $0.column("version")?.integer.map { Int($0) }
            }
        }
    }

    // MARK: Keys

    public func insertKey(_ key: APIKeyRecord) async throws {
        try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                _ = try await connection.execute(
                    """
                    INSERT INTO api_keys (id, name, hash, prefix, created_at, last_used_at, expires_at, allowed_models,
                        rpm, tpm, budget_usd, revoked, updated_at, budget_period, budget_alert, team_id)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(key.id), .text(key.name), .text(key.hash), .text(key.prefix), .float(key.createdAt),
                        Self.data(key.lastUsedAt), Self.data(key.expiresAt), .text(try KeyColumns.encodeModels(key.allowedModels)),
                        Self.data(key.rpm), Self.data(key.tpm), Self.data(key.budgetUSD), .integer(key.revoked ? 1 : 0),
                        .float(Date().timeIntervalSince1970), .text(key.budgetPeriod.rawValue), Self.data(key.budgetAlert),
                        key.teamID.map { .text($0) } ?? .null,
                    ])
                if let terms = KeyColumns.schedulingUpdate(key, dialect: .sqlite) { try await Self.run(terms, on: connection) }
                try await Self.bumpKeyRevision(connection)
            }
        }
    }

    public func key(hash: String) async throws -> APIKeyRecord? {
        try await self.withConnection { connection in
            try await connection.execute("SELECT \(KeyColumns.list) FROM api_keys WHERE hash = ?", [.text(hash)])
                .first.map(Self.decodeKey)
        }
    }

    public func key(id: String) async throws -> APIKeyRecord? {
        try await self.withConnection { connection in
            try await connection.execute("SELECT \(KeyColumns.list) FROM api_keys WHERE id = ?", [.text(id)])
                .first.map(Self.decodeKey)
        }
    }

    public func listKeys() async throws -> [APIKeyRecord] {
        try await self.withConnection { connection in
            try await connection.execute("SELECT \(KeyColumns.list) FROM api_keys ORDER BY created_at, id")
                .map(Self.decodeKey)
        }
    }

    public func insertTeam(_ team: TeamRecord) async throws {
        try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                let existing = try await connection.execute("SELECT 1 FROM teams WHERE name = ?", [.text(team.name.sanitized)])
                guard existing.isEmpty else { throw StoreError("a team named \(team.name) exists already") }
                _ = try await connection.execute(
                    """
                    INSERT INTO teams (id, name, created_at, allowed_models, rpm, tpm, budget_usd, budget_period, budget_alert, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(team.id.sanitized), .text(team.name.sanitized), .float(team.createdAt),
                        .text(try KeyColumns.encodeModels(team.allowedModels)), Self.data(team.rpm), Self.data(team.tpm),
                        Self.data(team.budgetUSD), .text(team.budgetPeriod.rawValue), Self.data(team.budgetAlert),
                        .float(Date().timeIntervalSince1970),
                    ])
                // Teams travel with the keys: every instance reloads both when the revision moves.
                try await Self.bumpKeyRevision(connection)
            }
        }
    }

    public func listTeams() async throws -> [TeamRecord] {
        try await self.withConnection { connection in
            try await connection.execute("SELECT \(KeyColumns.teamList) FROM teams ORDER BY name").map(Self.decodeTeam)
        }
    }

    public func revokeKey(id: String) async throws -> Bool {
        try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                _ = try await connection.execute(
                    "UPDATE api_keys SET revoked = 1, updated_at = ? WHERE id = ?",
                    [.float(Date().timeIntervalSince1970), .text(id)])
                guard try await Self.changes(connection) > 0 else { return false }
                try await Self.bumpKeyRevision(connection)
                return true
            }
        }
    }

    public func touchKeys(_ lastUsed: [String: Double]) async throws {
        guard !lastUsed.isEmpty else { return }
        try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                // Not a key edit, so the revision stays: pollers should not reload keys on every request.
                for (id, time) in lastUsed.sorted(by: { $0.key < $1.key }) {
                    _ = try await connection.execute(
                        "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, ?), ?) WHERE id = ?",
                        [.float(time), .float(time), .text(id)])
                }
            }
        }
    }

    public func keysRevision() async throws -> Int64 {
        try await self.withConnection { connection in
            let rows = try await connection.execute("SELECT revision FROM key_revision WHERE id = 1")
            return Int64(rows.first?.column("revision")?.integer ?? 0)
        }
    }

    public func reportInstance(id: String, keyRevision: Int64, at time: Double) async throws {
        try await self.withConnection { connection in
            try await Self.run(InstanceSQL.report(id: id, keyRevision: keyRevision, at: time, dialect: .sqlite), on: connection)
            try await Self.run(InstanceSQL.forgetSilent(before: time - InstanceSQL.forgetAfter, dialect: .sqlite), on: connection)
        }
    }

    public func removeInstance(id: String) async throws {
        try await self.withConnection { connection in
            _ = try await Self.run(InstanceSQL.remove(id: id, dialect: .sqlite), on: connection)
        }
    }

    public func instancesBehind(keyRevision: Int64, reportedSince since: Double) async throws -> Int {
        try await self.withConnection { connection in
            let rows = try await Self.run(InstanceSQL.behind(keyRevision: keyRevision, reportedSince: since, dialect: .sqlite), on: connection)
            return Int(rows.first?.columns.first?.data.integer ?? 0)
        }
    }

    public func liveInstances(reportedSince since: Double) async throws -> Int {
        try await self.withConnection { connection in
            let rows = try await Self.run(RateBucketSQL.live(reportedSince: since, dialect: .sqlite), on: connection)
            return Int(rows.first?.columns.first?.data.integer ?? 0)
        }
    }

    // MARK: Shared rate limits

    public func exchangeRateLeases(_ requests: [RateLeaseRequest], instances: Int, now: Double) async throws -> [RateLease] {
        guard !requests.isEmpty else { return [] }
        return try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                var leases: [RateLease] = []
                for request in requests {
                    let scope = request.scope.sanitized
                    let rows = try await connection.execute(
                        "SELECT tokens, updated_at FROM rate_buckets WHERE scope = ?", [.text(scope)])
                    let stored = rows.first.map { ($0.column("tokens")?.double ?? 0, $0.column("updated_at")?.double ?? now) }
                    let (tokens, lease) = RateLeaseArithmetic.exchange(stored: stored, request, instances: instances, now: now)
                    _ = try await connection.execute(
                        """
                        INSERT INTO rate_buckets (scope, capacity, refill_per_second, tokens, updated_at) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (scope) DO UPDATE SET capacity = excluded.capacity,
                            refill_per_second = excluded.refill_per_second, tokens = excluded.tokens, updated_at = excluded.updated_at
                        """,
                        [.text(scope), .float(request.capacity), .float(request.refillPerSecond), .float(tokens), .float(now)])
                    leases.append(lease)
                }
                return leases
            }
        }
    }

    public func forgetFullRateBuckets(now: Double) async throws -> Int {
        try await self.withConnection { connection in
            try await Self.run(RateBucketSQL.forgetFull(now: now, dialect: .sqlite), on: connection)
            return try await Self.changes(connection)
        }
    }

    // MARK: Dashboard sessions

    public func endSession(digest: String, expiresAt: Double, now: Double) async throws {
        try await self.withConnection { connection in
            try await Self.run(SessionSQL.end(digest: digest, expiresAt: expiresAt, dialect: .sqlite), on: connection)
            try await Self.run(SessionSQL.forgetExpired(before: now, dialect: .sqlite), on: connection)
        }
    }

    public func isSessionEnded(digest: String) async throws -> Bool {
        try await self.withConnection { connection in
            let rows = try await Self.run(SessionSQL.isEnded(digest: digest, dialect: .sqlite), on: connection)
            return (rows.first?.columns.first?.data.integer ?? 0) > 0
        }
    }

    // MARK: Usage

    public func insertUsage(_ records: [UsageRecord]) async throws {
        let records = records.uniquedByID()
        guard !records.isEmpty else { return }
        try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                // Only rows this batch inserted count: a retried batch that had committed adds nothing twice.
                var inserted = Set<String>()
                for start in stride(from: 0, to: records.count, by: UsageSQL.insertChunk) {
                    let chunk = records[start..<min(start + UsageSQL.insertChunk, records.count)]
                    for row in try await Self.run(UsageSQL.sqliteInsert(chunk), on: connection) {
                        if let id = row.column("id")?.string { inserted.insert(id) }
                    }
                    if let mark = UsageSQL.markOverflowed(Array(chunk), dialect: .sqlite) { try await Self.run(mark, on: connection) }
                }
                let new = records.filter { inserted.contains($0.id.sanitized) }
                var spent: [String: Double] = [:]
                for record in new {
                    if let keyID = record.keyID { spent[keyID.sanitized, default: 0] += record.costUSD }
                }
                for (keyID, cost) in spent.sorted(by: { $0.key < $1.key }) {
                    try await Self.run(UsageSQL.addSpend(keyID: keyID, costUSD: cost), on: connection)
                }
                for row in RollupSQL.aggregate(new) {
                    try await Self.run(RollupSQL.sqliteUpsert(row), on: connection)
                }
            }
        }
    }

    public func usageReport(_ query: UsageQuery, by grouping: UsageGrouping?) async throws -> UsageBreakdown {
        let plan = RollupSQL.plan(query)
        if let hours = plan.hours {
            return try await self.withConnection { connection in
                try await self.inTransaction(connection, begin: "BEGIN DEFERRED") {
                    var parts: [UsageBreakdown] = []
                    for (totals, groups) in RollupSQL.statements(query, plan: plan, hours: hours, grouping: grouping, dialect: .sqlite) {
                        var part = UsageBreakdown()
                        if let groups { part.groups = try await Self.groups(groups, on: connection) }
                        if let totals { part.totals = try await Self.groups(totals, on: connection).first?.totals ?? UsageTotals() }
                        parts.append(part)
                    }
                    return RollupSQL.merge(parts)
                }
            }
        }
        return try await self.withConnection { connection in
            let totals = UsageSQL.report(query, grouping: nil, dialect: .sqlite)
            guard let grouping else {
                return UsageBreakdown(totals: try await Self.groups(totals, on: connection).first?.totals ?? UsageTotals())
            }
            // In WAL mode a deferred read transaction reads one snapshot, so a batch committed between the two
            // statements cannot show in the groups but not in the totals.
            return try await self.inTransaction(connection, begin: "BEGIN DEFERRED") {
                UsageBreakdown(
                    totals: try await Self.groups(totals, on: connection).first?.totals ?? UsageTotals(),
                    groups: try await Self.groups(UsageSQL.report(query, grouping: grouping, dialect: .sqlite), on: connection))
            }
        }
    }

    public func recentUsage(_ query: UsageQuery, limit: Int) async throws -> [UsageRecord] {
        try await self.withConnection { connection in
            try await Self.run(UsageSQL.recent(query, limit: limit, dialect: .sqlite), on: connection).map(Self.decodeUsage)
        }
    }

    public func spend(keyIDs: [String]) async throws -> [String: Double] {
        try await self.withConnection { connection in
            var spent: [String: Double] = [:]
            for start in stride(from: 0, to: keyIDs.count, by: UsageSQL.spendChunk) {
                let chunk = keyIDs[start..<min(start + UsageSQL.spendChunk, keyIDs.count)]
                for row in try await Self.run(UsageSQL.spend(keyIDs: chunk, dialect: .sqlite), on: connection) {
                    guard let keyID = row.column("key_id")?.string else { continue }
                    spent[keyID] = row.column("spent_usd")?.double ?? 0
                }
            }
            return spent
        }
    }

    public func periodSpend(keyIDs: [String], since: Double) async throws -> [String: Double] {
        try await self.withConnection { connection in
            var spent: [String: Double] = [:]
            for start in stride(from: 0, to: keyIDs.count, by: UsageSQL.spendChunk) {
                let chunk = keyIDs[start..<min(start + UsageSQL.spendChunk, keyIDs.count)]
                for row in try await Self.run(RollupSQL.periodSpend(keyIDs: chunk, since: since, dialect: .sqlite), on: connection) {
                    guard let keyID = row.columns.first?.data.string else { continue }
                    spent[keyID] = row.columns.dropFirst().first?.data.double ?? 0
                }
            }
            return spent
        }
    }

    public func publishReservations(instanceID: String, reserved: [BudgetReservation], settled: [String], now: Double) async throws {
        try await self.withConnection { connection in
            try await self.inTransaction(connection) {
                for reservation in reserved {
                    try await Self.run(ReservationSQL.insert(reservation, instanceID: instanceID, dialect: .sqlite), on: connection)
                }
                for requestID in settled {
                    try await Self.run(ReservationSQL.settle(requestID: requestID, instanceID: instanceID, dialect: .sqlite), on: connection)
                }
                try await Self.run(ReservationSQL.forgetExpired(now: now, dialect: .sqlite), on: connection)
            }
        }
    }

    public func reservedByOthers(keyIDs: [String], instanceID: String, now: Double) async throws -> [String: Double] {
        try await self.withConnection { connection in
            var reserved: [String: Double] = [:]
            for start in stride(from: 0, to: keyIDs.count, by: UsageSQL.spendChunk) {
                let chunk = keyIDs[start..<min(start + UsageSQL.spendChunk, keyIDs.count)]
                let statement = ReservationSQL.reservedByOthers(keyIDs: chunk, instanceID: instanceID, now: now, dialect: .sqlite)
                for row in try await Self.run(statement, on: connection) {
                    guard let keyID = row.columns.first?.data.string else { continue }
                    reserved[keyID] = row.columns.dropFirst().first?.data.double ?? 0
                }
            }
            return reserved
        }
    }

    public func claimBudgetAlert(subject: String, periodStart: Double, at time: Double) async throws -> Bool {
        try await self.withConnection { connection in
            try await !Self.run(RollupSQL.claimAlert(subject: subject, periodStart: periodStart, at: time, dialect: .sqlite), on: connection).isEmpty
        }
    }

    public func deleteRollups(before: Double, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        return try await self.withConnection { connection in
            try await Self.run(RollupSQL.delete(before: before, limit: limit, dialect: .sqlite), on: connection)
            return try await Self.changes(connection)
        }
    }

    public func deleteUsage(before: Double, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        return try await self.withConnection { connection in
            // `changes()` reads this connection's last statement, which the gate guarantees is ours.
            try await Self.run(UsageSQL.delete(before: before, limit: limit, dialect: .sqlite), on: connection)
            return try await Self.changes(connection)
        }
    }

    // MARK: Stored responses

    public func saveResponse(_ response: StoredResponse) async throws {
        let statement = ResponseSQL.insert(response, dialect: .sqlite)
        try await self.withConnection { connection in
            _ = try await Self.run(statement, on: connection)
        }
    }

    public func response(id: String, keyID: String?, now: Double) async throws -> StoredResponse? {
        let statement = ResponseSQL.select(id: id, keyID: keyID, now: now, dialect: .sqlite)
        return try await self.withConnection { connection in
            try await Self.run(statement, on: connection).first.map(Self.decodeResponse)
        }
    }

    public func deleteResponse(id: String, keyID: String?) async throws -> Bool {
        let statement = ResponseSQL.delete(id: id, keyID: keyID, dialect: .sqlite)
        return try await self.withConnection { connection in
            try await !Self.run(statement, on: connection).isEmpty
        }
    }

    public func deleteExpiredResponses(before: Double, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        let statement = ResponseSQL.deleteExpired(before: before, limit: limit, dialect: .sqlite)
        return try await self.withConnection { connection in
            try await Self.run(statement, on: connection)
            return try await Self.changes(connection)
        }
    }

    private static func groups(_ statement: SQLStatement, on connection: SQLiteConnection) async throws -> [UsageGroup] {
        try await Self.run(statement, on: connection).map { row in
            let values = row.columns.map(\.data)
            return UsageGroup(
                group: values[0].string ?? "",
                totals: UsageTotals(
                    requests: Int(values[1].integer ?? 0), promptTokens: Int(values[2].integer ?? 0),
                    completionTokens: Int(values[3].integer ?? 0), costUSD: values[4].double ?? 0,
                    savedUSD: values[5].double ?? 0, cacheHits: Int(values[6].integer ?? 0),
                    errors: Int(values[7].integer ?? 0), p50LatencyMs: values[8].double ?? 0,
                    p95LatencyMs: values[9].double ?? 0, overflowRequests: Int(values[10].integer ?? 0),
                    overflowCostUSD: values[11].double ?? 0))
        }
    }

    // MARK: Plumbing

    /// Runs `body` with exclusive use of the connection, translating failures into `StoreError`.
    private func withConnection<R: Sendable>(_ body: (SQLiteConnection) async throws -> R) async throws -> R {
        let connection: SQLiteConnection
        do {
            connection = try await self.gate.acquire()
        } catch let error as StoreError {
            throw error
        } catch {
            throw Self.storeError(error, doing: "open the database")
        }
        do {
            let result = try await body(connection)
            await self.gate.release()
            return result
        } catch {
            await self.gate.release()
            throw Self.storeError(error, doing: "query the database")
        }
    }

    /// `begin` … `COMMIT`, rolling back on error. Only call while holding the connection.
    /// Writers begin IMMEDIATE, which takes the write lock up front: a deferred transaction that later upgrades can
    /// fail with SQLITE_BUSY without waiting for the busy timeout. Readers begin DEFERRED and take no lock.
    private func inTransaction<R: Sendable>(
        _ connection: SQLiteConnection, begin: String = "BEGIN IMMEDIATE", _ body: () async throws -> R
    ) async throws -> R {
        _ = try await connection.execute(begin)
        do {
            let result = try await body()
            _ = try await connection.execute("COMMIT")
            return result
        } catch {
            do {
                _ = try await connection.execute("ROLLBACK")
            } catch {
                self.logger.warning("SQLite rollback failed", metadata: ["error": "\(error)"])
            }
            throw error
        }
    }

    @discardableResult
    private static func run(_ statement: SQLStatement, on connection: SQLiteConnection) async throws -> [SQLiteRow] {
        try await connection.execute(statement.sql, statement.binds.map(Self.data))
    }

    private static func changes(_ connection: SQLiteConnection) async throws -> Int {
        let rows = try await connection.execute("SELECT changes() AS n")
        return Int(rows.first?.column("n")?.integer ?? 0)
    }

    private static func bumpKeyRevision(_ connection: SQLiteConnection) async throws {
        _ = try await connection.execute("UPDATE key_revision SET revision = revision + 1 WHERE id = 1")
    }

    private static func data(_ value: SQLValue) -> SQLiteData {
        switch value {
        case .text(let text): .text(text.sanitized)
        case .double(let double): .float(double)
        case .int(let int): .integer(int)
        case .bool(let bool): .integer(bool ? 1 : 0)
        case .null: .null
        }
    }

    private static func data(_ value: Double?) -> SQLiteData { value.map(SQLiteData.float) ?? .null }
    private static func data(_ value: Int?) -> SQLiteData { value.map(SQLiteData.integer) ?? .null }

    private static func decodeKey(_ row: SQLiteRow) throws -> APIKeyRecord {
        func text(_ name: String) -> String? { row.column(name)?.string }
        func double(_ name: String) -> Double? { row.column(name).flatMap { $0.isNull ? nil : $0.double } }
        func int(_ name: String) -> Int? { row.column(name).flatMap { $0.isNull ? nil : $0.integer.map { Int($0) } } }
        var record = APIKeyRecord(
            id: text("id") ?? "", name: text("name") ?? "", hash: text("hash") ?? "", prefix: text("prefix") ?? "",
            createdAt: double("created_at") ?? 0, lastUsedAt: double("last_used_at"), expiresAt: double("expires_at"),
            allowedModels: try KeyColumns.decodeModels(text("allowed_models")), rpm: int("rpm"), tpm: int("tpm"),
            budgetUSD: double("budget_usd"), revoked: int("revoked") == 1, budgetPeriod: KeyColumns.period(text("budget_period")),
            budgetAlert: double("budget_alert"), teamID: text("team_id"))
        record.allowOverflow = int("allow_overflow") == 1
        record.priority = text("priority").flatMap(PriorityClass.init) ?? .interactive
        return record
    }

    private static func decodeTeam(_ row: SQLiteRow) throws -> TeamRecord {
        func text(_ name: String) -> String? { row.column(name)?.string }
        func double(_ name: String) -> Double? { row.column(name).flatMap { $0.isNull ? nil : $0.double } }
        func int(_ name: String) -> Int? { row.column(name).flatMap { $0.isNull ? nil : $0.integer.map { Int($0) } } }
        return TeamRecord(
            id: text("id") ?? "", name: text("name") ?? "", createdAt: double("created_at") ?? 0,
            allowedModels: try KeyColumns.decodeModels(text("allowed_models")), rpm: int("rpm"), tpm: int("tpm"),
            budgetUSD: double("budget_usd"), budgetPeriod: KeyColumns.period(text("budget_period")),
            budgetAlert: double("budget_alert"))
    }

    private static func decodeUsage(_ row: SQLiteRow) -> UsageRecord {
        // Columns come back in `UsageSQL.columns` order, then `overflowed`.
        let v = row.columns.map(\.data)
        func text(_ i: Int) -> String? { v[i].isNull ? nil : v[i].string }
        func double(_ i: Int) -> Double? { v[i].isNull ? nil : v[i].double }
        func int(_ i: Int) -> Int { Int(v[i].integer ?? 0) }
        return UsageRecord(
            id: text(0) ?? "", time: double(1) ?? 0, requestID: text(2) ?? "", keyID: text(3), clientIP: text(4),
            route: text(5) ?? "", model: text(6), upstream: text(7), status: int(8), errorCode: text(9),
            stream: int(10) != 0, cacheHit: int(11) != 0, promptTokens: int(12), completionTokens: int(13),
            cachedTokens: int(19), cacheWriteTokens: int(20), reasoningTokens: int(21),
            tokensEstimated: int(14) != 0, latencyMs: double(15) ?? 0, timeToFirstTokenMs: double(16),
            costUSD: double(17) ?? 0, savedUSD: double(18) ?? 0, overflowed: int(24) != 0, requestBody: text(22), responseBody: text(23))
    }

    private static func decodeResponse(_ row: SQLiteRow) -> StoredResponse {
        // Columns come back in `ResponseSQL.columns` order.
        let v = row.columns.map(\.data)
        func text(_ i: Int) -> String { v[i].string ?? "" }
        func double(_ i: Int) -> Double { v[i].double ?? 0 }
        let keyID: String? = v[1].isNull ? nil : v[1].string
        return StoredResponse(
            id: text(0), keyID: keyID, createdAt: double(2), expiresAt: double(3), model: text(4), inputItems: text(5),
            outputItems: text(6), response: text(7))
    }

    /// SQLite errors carry the statement's failure, never bound values, so their text is safe to log.
    static func storeError(_ error: any Error, doing action: String) -> StoreError {
        if let error = error as? StoreError { return error }
        if let error = error as? SQLiteError {
            if case .constraint = error.reason {
                return StoreError("SQLite constraint violated: \(error.message)")
            }
            return StoreError("could not \(action) (SQLite \(error.reason): \(error.message))")
        }
        return StoreError("could not \(action): \(error)")
    }
}
