import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import SluiceCore
import Synchronization

/// The shared store for several gateway instances: PostgreSQL through a `PostgresClient` connection pool.
///
/// The pool only hands out connections while ``run()`` runs, so run the store as a `Service` (before the
/// ``UsageWriter`` in the `ServiceGroup`, so the writer's final flush still has connections), or use
/// ``withGatewayStore(url:logger:_:)`` for one-shot commands. ``run()`` returns on graceful shutdown or
/// cancellation, closing the pool's connections; ``close()`` is a no-op kept for the protocol.
///
/// The pool queues requests while it cannot connect and keeps retrying, so every operation waits at most
/// ``connectionWaitTimeout`` for a connection and then throws: a gateway whose database is down fails fast instead
/// of holding requests and the usage writer's flushes for a minute.
///
/// Errors and logs name the failing operation and PostgreSQL's message and SQLSTATE, never the URL, password or
/// bound values.
public final class PostgresStore: GatewayStore, Service {
    /// The pool; exposed for callers that already manage `PostgresClient`s themselves.
    public let client: PostgresClient
    /// How long an operation waits for a pooled connection before failing (the configuration's connect timeout).
    public let connectionWaitTimeout: Duration
    private let logger: Logger

    /// Serialises `migrate()` across every instance sharing the database (any constant works; this spells "sluice").
    static let migrationLockKey: Int64 = 0x736C_7569_6365_0001

    /// - Parameter url: `postgres://user:password@host:port/database` (or `postgresql://`); see
    ///   ``configuration(url:)`` for the query parameters understood.
    public convenience init(url: String, logger: Logger) throws {
        try self.init(configuration: Self.configuration(url: url), logger: logger)
    }

    public init(configuration: PostgresClient.Configuration, logger: Logger) {
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.connectionWaitTimeout = configuration.options.connectTimeout
        self.logger = logger
    }

    // MARK: Service

    /// Runs the connection pool until graceful shutdown or cancellation.
    public func run() async {
        await self.client.run()
    }

    /// Nothing to do: the pool closes when ``run()`` ends.
    public func close() async throws {}

    // MARK: Migrations

    public func migrate() async throws {
        try await self.migrate(through: .max)
    }

    /// Applies pending migrations up to and including `lastVersion`, as an older release would have.
    public func migrate(through lastVersion: Int) async throws {
        try await self.withConnection("migrate the schema") { connection in
            for migration in Migration.all where migration.version <= lastVersion {
                try await connection.withTransaction(logger: self.logger) { connection in
                    // A transaction-scoped advisory lock: concurrent migrators queue here, and the lock
                    // disappears with the transaction even if this process dies.
                    try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLockKey))", logger: self.logger)
                    try await connection.query(PostgresQuery(unsafeSQL: MigrationSQL.createVersionTable), logger: self.logger)
                    let applied = try await connection.query(
                        "SELECT version FROM schema_migrations WHERE version = \(migration.version)", logger: self.logger
                    ).collect()
                    guard applied.isEmpty else { return }
                    for statement in migration.postgres {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                    }
                    try await connection.query(
                        """
                        INSERT INTO schema_migrations (version, name, applied_at) \
                        VALUES (\(migration.version), \(migration.name), \(Date().timeIntervalSince1970))
                        """,
                        logger: self.logger)
                    self.logger.info(
                        "applied schema migration",
                        metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                }
            }
        }
    }

    /// Applied migration versions, ascending (for tests and diagnostics).
    public func appliedMigrations() async throws -> [Int] {
        try await self.withConnection("read schema versions") { connection in
            try await connection.query("SELECT version FROM schema_migrations ORDER BY version", logger: self.logger)
                .collect().map { try $0.decode(Int.self) }
        }
    }

    // MARK: Keys

    public func insertKey(_ key: APIKeyRecord) async throws {
        let models = try KeyColumns.encodeModels(key.allowedModels)
        try await self.withConnection("insert a key") { connection in
            try await connection.withTransaction(logger: self.logger) { connection in
                try await connection.query(
                    """
                    INSERT INTO api_keys (id, name, hash, prefix, created_at, last_used_at, expires_at, allowed_models,
                        rpm, tpm, budget_usd, revoked, updated_at, budget_period, budget_alert, team_id)
                    VALUES (\(key.id.sanitized), \(key.name.sanitized), \(key.hash.sanitized), \(key.prefix.sanitized),
                        \(key.createdAt), \(key.lastUsedAt), \(key.expiresAt), \(models.sanitized), \(key.rpm), \(key.tpm),
                        \(key.budgetUSD), \(key.revoked), \(Date().timeIntervalSince1970), \(key.budgetPeriod.rawValue),
                        \(key.budgetAlert), \(key.teamID?.sanitized))
                    """,
                    logger: self.logger)
                if let terms = KeyColumns.schedulingUpdate(key, dialect: .postgres) {
                    try await connection.query(Self.query(terms), logger: self.logger)
                }
                try await Self.bumpKeyRevision(connection, logger: self.logger)
            }
        }
    }

    public func key(hash: String) async throws -> APIKeyRecord? {
        try await self.withConnection("look up a key") { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT \(KeyColumns.list) FROM api_keys WHERE hash = $1", binds: Self.binds([.text(hash)])),
                logger: self.logger
            ).collect().first.map(Self.decodeKey)
        }
    }

    public func key(id: String) async throws -> APIKeyRecord? {
        try await self.withConnection("look up a key") { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT \(KeyColumns.list) FROM api_keys WHERE id = $1", binds: Self.binds([.text(id)])),
                logger: self.logger
            ).collect().first.map(Self.decodeKey)
        }
    }

    public func listKeys() async throws -> [APIKeyRecord] {
        try await self.withConnection("list keys") { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT \(KeyColumns.list) FROM api_keys ORDER BY created_at, id"), logger: self.logger
            ).collect().map(Self.decodeKey)
        }
    }

    public func insertTeam(_ team: TeamRecord) async throws {
        let models = try KeyColumns.encodeModels(team.allowedModels)
        try await self.withConnection("insert a team") { connection in
            try await connection.withTransaction(logger: self.logger) { connection in
                let inserted = try await connection.query(
                    """
                    INSERT INTO teams (id, name, created_at, allowed_models, rpm, tpm, budget_usd, budget_period, budget_alert, updated_at)
                    VALUES (\(team.id.sanitized), \(team.name.sanitized), \(team.createdAt), \(models.sanitized), \(team.rpm),
                        \(team.tpm), \(team.budgetUSD), \(team.budgetPeriod.rawValue), \(team.budgetAlert), \(Date().timeIntervalSince1970))
                    ON CONFLICT (name) DO NOTHING RETURNING id
                    """,
                    logger: self.logger
                ).collect()
                guard !inserted.isEmpty else { throw StoreError("a team named \(team.name) exists already") }
                // Teams travel with the keys: every instance reloads both when the revision moves.
                try await Self.bumpKeyRevision(connection, logger: self.logger)
            }
        }
    }

    public func listTeams() async throws -> [TeamRecord] {
        try await self.withConnection("list teams") { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT \(KeyColumns.teamList) FROM teams ORDER BY name"), logger: self.logger
            ).collect().map(Self.decodeTeam)
        }
    }

    public func revokeKey(id: String) async throws -> Bool {
        try await self.withConnection("revoke a key") { connection in
            try await connection.withTransaction(logger: self.logger) { connection in
                let updated = try await connection.query(
                    "UPDATE api_keys SET revoked = TRUE, updated_at = \(Date().timeIntervalSince1970) WHERE id = \(id.sanitized) RETURNING id",
                    logger: self.logger
                ).collect()
                guard !updated.isEmpty else { return false }
                try await Self.bumpKeyRevision(connection, logger: self.logger)
                return true
            }
        }
    }

    public func touchKeys(_ lastUsed: [String: Double]) async throws {
        guard !lastUsed.isEmpty else { return }
        let sorted = lastUsed.sorted { $0.key < $1.key }
        let ids = sorted.map(\.key.sanitized)
        let times = sorted.map(\.value)
        try await self.withConnection("record key use") { connection in
            // One statement for the whole batch; GREATEST ignores NULL, and keeps a newer time another instance wrote.
            _ = try await connection.query(
                """
                UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, v.t)
                FROM unnest(\(ids)::TEXT[], \(times)::DOUBLE PRECISION[]) AS v(id, t) WHERE k.id = v.id
                """,
                logger: self.logger)
        }
    }

    public func keysRevision() async throws -> Int64 {
        try await self.withConnection("read the key revision") { connection in
            try await connection.query("SELECT revision FROM key_revision WHERE id = 1", logger: self.logger)
                .collect().first.map { try $0.decode(Int64.self) } ?? 0
        }
    }

    public func reportInstance(id: String, keyRevision: Int64, at time: Double) async throws {
        try await self.withConnection("report this instance") { connection in
            try await connection.query(
                Self.query(InstanceSQL.report(id: id, keyRevision: keyRevision, at: time, dialect: .postgres)), logger: self.logger)
            try await connection.query(
                Self.query(InstanceSQL.forgetSilent(before: time - InstanceSQL.forgetAfter, dialect: .postgres)), logger: self.logger)
        }
    }

    public func removeInstance(id: String) async throws {
        try await self.withConnection("remove this instance") { connection in
            _ = try await connection.query(Self.query(InstanceSQL.remove(id: id, dialect: .postgres)), logger: self.logger)
        }
    }

    public func instancesBehind(keyRevision: Int64, reportedSince since: Double) async throws -> Int {
        try await self.withConnection("read the running instances") { connection in
            try await connection.query(
                Self.query(InstanceSQL.behind(keyRevision: keyRevision, reportedSince: since, dialect: .postgres)), logger: self.logger
            ).collect().first.map { try $0.decode(Int.self) } ?? 0
        }
    }

    public func liveInstances(reportedSince since: Double) async throws -> Int {
        try await self.withConnection("count the live instances") { connection in
            try await connection.query(Self.query(RateBucketSQL.live(reportedSince: since, dialect: .postgres)), logger: self.logger)
                .collect().first.map { try $0.decode(Int.self) } ?? 0
        }
    }

    // MARK: Shared rate limits

    public func exchangeRateLeases(_ requests: [RateLeaseRequest], instances: Int, now: Double) async throws -> [RateLease] {
        guard !requests.isEmpty else { return [] }
        // Rows are created or locked in scope order (the no-op update locks an existing row, so a concurrent
        // sweep of full buckets cannot delete it between here and the update), and instances exchanging overlapping
        // sets never deadlock.
        let sorted = requests.sorted { $0.scope < $1.scope }
        let scopes = sorted.map(\.scope.sanitized)
        return try await self.withConnection("exchange rate-limit leases") { connection in
            try await connection.withTransaction(logger: self.logger) { connection in
                try await connection.query(
                    """
                    INSERT INTO rate_buckets (scope, capacity, refill_per_second, tokens, updated_at)
                    SELECT scope, capacity, refill, capacity, \(now)
                    FROM unnest(\(scopes)::TEXT[], \(sorted.map(\.capacity))::DOUBLE PRECISION[],
                        \(sorted.map(\.refillPerSecond))::DOUBLE PRECISION[]) AS v(scope, capacity, refill)
                    ORDER BY scope
                    ON CONFLICT (scope) DO UPDATE SET capacity = rate_buckets.capacity
                    """,
                    logger: self.logger)
                var stored: [String: (tokens: Double, updatedAt: Double)] = [:]
                let rows = try await connection.query(
                    "SELECT scope, tokens, updated_at FROM rate_buckets WHERE scope = ANY(\(scopes)::TEXT[]) ORDER BY scope FOR UPDATE",
                    logger: self.logger)
                for try await (scope, tokens, updatedAt) in rows.decode((String, Double, Double).self) {
                    stored[scope] = (tokens, updatedAt)
                }
                var leases: [String: RateLease] = [:]
                var balances: [Double] = []
                for request in sorted {
                    let (tokens, lease) = RateLeaseArithmetic.exchange(
                        stored: stored[request.scope.sanitized], request, instances: instances, now: now)
                    leases[request.scope] = lease
                    balances.append(tokens)
                }
                try await connection.query(
                    """
                    UPDATE rate_buckets AS b SET capacity = v.capacity, refill_per_second = v.refill, tokens = v.tokens,
                        updated_at = \(now)
                    FROM unnest(\(scopes)::TEXT[], \(sorted.map(\.capacity))::DOUBLE PRECISION[],
                        \(sorted.map(\.refillPerSecond))::DOUBLE PRECISION[], \(balances)::DOUBLE PRECISION[])
                        AS v(scope, capacity, refill, tokens)
                    WHERE b.scope = v.scope
                    """,
                    logger: self.logger)
                return requests.compactMap { leases[$0.scope] }
            }
        }
    }

    public func forgetFullRateBuckets(now: Double) async throws -> Int {
        try await self.withConnection("forget full rate-limit buckets") { connection in
            var statement = RateBucketSQL.forgetFull(now: now, dialect: .postgres)
            statement.append(" RETURNING 1")
            return try await connection.query(Self.query(statement), logger: self.logger).collect().count
        }
    }

    // MARK: Dashboard sessions

    public func endSession(digest: String, expiresAt: Double, now: Double) async throws {
        try await self.withConnection("record a dashboard sign-out") { connection in
            try await connection.query(
                Self.query(SessionSQL.end(digest: digest, expiresAt: expiresAt, dialect: .postgres)), logger: self.logger)
            try await connection.query(Self.query(SessionSQL.forgetExpired(before: now, dialect: .postgres)), logger: self.logger)
        }
    }

    public func isSessionEnded(digest: String) async throws -> Bool {
        try await self.withConnection("read the dashboard sign-outs") { connection in
            try await connection.query(Self.query(SessionSQL.isEnded(digest: digest, dialect: .postgres)), logger: self.logger)
                .collect().first.map { try $0.decode(Int.self) } ?? 0
        } > 0
    }

    // MARK: Usage

    public func insertUsage(_ records: [UsageRecord]) async throws {
        let records = records.uniquedByID()
        guard !records.isEmpty else { return }
        try await self.withConnection("insert usage records") { connection in
            try await connection.withTransaction(logger: self.logger) { connection in
                // Only rows this batch inserted are rolled up: a retried batch that had committed adds nothing twice.
                var inserted = Set<String>()
                for start in stride(from: 0, to: records.count, by: UsageSQL.insertChunk) {
                    let chunk = records[start..<min(start + UsageSQL.insertChunk, records.count)]
                    for try await id in try await connection.query(Self.insertQuery(chunk), logger: self.logger).decode(String.self) {
                        inserted.insert(id)
                    }
                    if let mark = UsageSQL.markOverflowed(Array(chunk), dialect: .postgres) {
                        try await connection.query(Self.query(mark), logger: self.logger)
                    }
                }
                let rows = RollupSQL.aggregate(records.filter { inserted.contains($0.id.sanitized) })
                guard !rows.isEmpty else { return }
                var binds = PostgresBindings(capacity: 14)
                binds.append(rows.map(\.group.hour))
                binds.append(rows.map(\.group.keyID))
                binds.append(rows.map(\.group.model))
                binds.append(rows.map(\.group.route))
                binds.append(rows.map(\.group.upstream))
                binds.append(rows.map(\.requests))
                binds.append(rows.map(\.promptTokens))
                binds.append(rows.map(\.completionTokens))
                binds.append(rows.map(\.costUSD))
                binds.append(rows.map(\.savedUSD))
                binds.append(rows.map(\.errors))
                binds.append(rows.map(\.cacheHits))
                binds.append(rows.map(\.overflowRequests))
                binds.append(rows.map(\.overflowCostUSD))
                try await connection.query(PostgresQuery(unsafeSQL: RollupSQL.postgresUpsert, binds: binds), logger: self.logger)
            }
        }
    }

    public func usageReport(_ query: UsageQuery, by grouping: UsageGrouping?) async throws -> UsageBreakdown {
        let plan = RollupSQL.plan(query)
        if let hours = plan.hours {
            let parts = RollupSQL.statements(query, plan: plan, hours: hours, grouping: grouping, dialect: .postgres)
            return try await self.withConnection("read usage totals") { connection in
                try await connection.withTransaction(logger: self.logger) { connection in
                    try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", logger: self.logger)
                    var breakdowns: [UsageBreakdown] = []
                    for (totals, groups) in parts {
                        var part = UsageBreakdown()
                        if let groups { part.groups = try await Self.groups(groups, on: connection, logger: self.logger) }
                        if let totals {
                            part.totals = try await Self.groups(totals, on: connection, logger: self.logger).first?.totals ?? UsageTotals()
                        }
                        breakdowns.append(part)
                    }
                    return RollupSQL.merge(breakdowns)
                }
            }
        }
        let totals = UsageSQL.report(query, grouping: nil, dialect: .postgres)
        guard let grouping else {
            return try await self.withConnection("read usage totals") { connection in
                UsageBreakdown(totals: try await Self.groups(totals, on: connection, logger: self.logger).first?.totals ?? UsageTotals())
            }
        }
        let groups = UsageSQL.report(query, grouping: grouping, dialect: .postgres)
        return try await self.withConnection("read usage totals") { connection in
            try await connection.withTransaction(logger: self.logger) { connection in
                // READ COMMITTED would give each statement its own snapshot; a batch committed between the two
                // would then show in the groups but not in the totals.
                try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", logger: self.logger)
                return UsageBreakdown(
                    totals: try await Self.groups(totals, on: connection, logger: self.logger).first?.totals ?? UsageTotals(),
                    groups: try await Self.groups(groups, on: connection, logger: self.logger))
            }
        }
    }

    public func recentUsage(_ query: UsageQuery, limit: Int) async throws -> [UsageRecord] {
        try await self.withConnection("read usage records") { connection in
            try await connection.query(Self.query(UsageSQL.recent(query, limit: limit, dialect: .postgres)), logger: self.logger)
                .collect().map(Self.decodeUsage)
        }
    }

    public func spend(keyIDs: [String]) async throws -> [String: Double] {
        try await self.withConnection("read what keys spent") { connection in
            var spent: [String: Double] = [:]
            for start in stride(from: 0, to: keyIDs.count, by: UsageSQL.spendChunk) {
                let chunk = keyIDs[start..<min(start + UsageSQL.spendChunk, keyIDs.count)]
                let rows = try await connection.query(Self.query(UsageSQL.spend(keyIDs: chunk, dialect: .postgres)), logger: self.logger)
                for try await (keyID, total) in rows.decode((String, Double).self) {
                    spent[keyID] = total
                }
            }
            return spent
        }
    }

    public func periodSpend(keyIDs: [String], since: Double) async throws -> [String: Double] {
        try await self.withConnection("read what keys spent this period") { connection in
            var spent: [String: Double] = [:]
            for start in stride(from: 0, to: keyIDs.count, by: UsageSQL.spendChunk) {
                let chunk = keyIDs[start..<min(start + UsageSQL.spendChunk, keyIDs.count)]
                let rows = try await connection.query(
                    Self.query(RollupSQL.periodSpend(keyIDs: chunk, since: since, dialect: .postgres)), logger: self.logger)
                for try await (keyID, total) in rows.decode((String, Double).self) {
                    spent[keyID] = total
                }
            }
            return spent
        }
    }

    public func publishReservations(instanceID: String, reserved: [BudgetReservation], settled: [String], now: Double) async throws {
        try await self.withConnection("publish budget reservations") { connection in
            try await connection.withTransaction(logger: self.logger) { connection in
                for reservation in reserved {
                    try await connection.query(
                        Self.query(ReservationSQL.insert(reservation, instanceID: instanceID, dialect: .postgres)), logger: self.logger)
                }
                for requestID in settled {
                    try await connection.query(
                        Self.query(ReservationSQL.settle(requestID: requestID, instanceID: instanceID, dialect: .postgres)), logger: self.logger)
                }
                try await connection.query(Self.query(ReservationSQL.forgetExpired(now: now, dialect: .postgres)), logger: self.logger)
            }
        }
    }

    public func reservedByOthers(keyIDs: [String], instanceID: String, now: Double) async throws -> [String: Double] {
        try await self.withConnection("read budget reservations") { connection in
            var reserved: [String: Double] = [:]
            for start in stride(from: 0, to: keyIDs.count, by: UsageSQL.spendChunk) {
                let chunk = keyIDs[start..<min(start + UsageSQL.spendChunk, keyIDs.count)]
                let statement = ReservationSQL.reservedByOthers(keyIDs: chunk, instanceID: instanceID, now: now, dialect: .postgres)
                for try await (keyID, total) in try await connection.query(Self.query(statement), logger: self.logger).decode((String, Double).self) {
                    reserved[keyID] = total
                }
            }
            return reserved
        }
    }

    public func claimBudgetAlert(subject: String, periodStart: Double, at time: Double) async throws -> Bool {
        try await self.withConnection("record a budget alert") { connection in
            try await !connection.query(
                Self.query(RollupSQL.claimAlert(subject: subject, periodStart: periodStart, at: time, dialect: .postgres)),
                logger: self.logger
            ).collect().isEmpty
        }
    }

    public func deleteRollups(before: Double, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        return try await self.withConnection("delete usage rollups") { connection in
            try await connection.query(Self.query(RollupSQL.delete(before: before, limit: limit, dialect: .postgres)), logger: self.logger)
                .collect().first.map { try $0.decode(Int.self) } ?? 0
        }
    }

    public func deleteUsage(before: Double, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        return try await self.withConnection("delete usage records") { connection in
            try await connection.query(
                Self.query(UsageSQL.delete(before: before, limit: limit, dialect: .postgres)), logger: self.logger
            ).collect().first.map { try $0.decode(Int.self) } ?? 0
        }
    }

    // MARK: Stored responses

    public func saveResponse(_ response: StoredResponse) async throws {
        let statement = ResponseSQL.insert(response, dialect: .postgres)
        try await self.withConnection("save a response") { connection in
            _ = try await connection.query(Self.query(statement), logger: self.logger)
        }
    }

    public func response(id: String, keyID: String?, now: Double) async throws -> StoredResponse? {
        let statement = ResponseSQL.select(id: id, keyID: keyID, now: now, dialect: .postgres)
        return try await self.withConnection("read a stored response") { connection in
            try await connection.query(Self.query(statement), logger: self.logger).collect().first.map(Self.decodeResponse)
        }
    }

    public func deleteResponse(id: String, keyID: String?) async throws -> Bool {
        let statement = ResponseSQL.delete(id: id, keyID: keyID, dialect: .postgres)
        return try await self.withConnection("delete a stored response") { connection in
            try await !connection.query(Self.query(statement), logger: self.logger).collect().isEmpty
        }
    }

    public func deleteExpiredResponses(before: Double, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        let statement = ResponseSQL.deleteExpired(before: before, limit: limit, dialect: .postgres)
        return try await self.withConnection("delete expired responses") { connection in
            try await connection.query(Self.query(statement), logger: self.logger)
                .collect().first.map { try $0.decode(Int.self) } ?? 0
        }
    }

    private static func groups(
        _ statement: SQLStatement, on connection: PostgresConnection, logger: Logger
    ) async throws -> [UsageGroup] {
        try await connection.query(Self.query(statement), logger: logger).collect().map { row in
            let (group, requests, prompt, completion, cost, saved, hits, errors, p50, p95, overflowed, overflowCost) = try row.decode(
                (String, Int, Int, Int, Double, Double, Int, Int, Double, Double, Int, Double).self)
            return UsageGroup(
                group: group,
                totals: UsageTotals(
                    requests: requests, promptTokens: prompt, completionTokens: completion, costUSD: cost,
                    savedUSD: saved, cacheHits: hits, errors: errors, p50LatencyMs: p50, p95LatencyMs: p95,
                    overflowRequests: overflowed, overflowCostUSD: overflowCost))
        }
    }

    // MARK: Plumbing

    /// Runs `body` on a pooled connection, turning any failure into a `StoreError` that is safe to log.
    ///
    /// Only the wait for a connection is bounded by ``connectionWaitTimeout``; the timeout never interrupts `body`,
    /// so a slow report or a transaction that has begun runs to completion.
    private func withConnection<R: Sendable>(
        _ action: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> R
    ) async throws -> R {
        let lease = LeaseRace()
        do {
            return try await withThrowingTaskGroup(of: LeaseOutcome<R>.self) { group in
                group.addTask {
                    try await self.client.withConnection { connection in
                        // Lost the race: the caller has been told the operation failed, so do not run it.
                        guard lease.markLeased() else { throw CancellationError() }
                        return .value(try await body(connection))
                    }
                }
                group.addTask {
                    do {
                        try await Task.sleep(for: self.connectionWaitTimeout)
                    } catch {
                        // Cancelled: a waiting lease is cancelled too, and a leased operation runs to completion.
                        return .timerStopped
                    }
                    return lease.markTimedOut() ? .timedOut : .timerStopped
                }
                while let outcome = try await group.next() {
                    switch outcome {
                    case .value(let value):
                        group.cancelAll()
                        return value
                    case .timedOut:
                        group.cancelAll()
                        throw StoreError(
                            "could not \(action) (no PostgreSQL connection within \(self.connectionWaitTimeout): "
                                + "the server is down, unreachable or refusing the connection)")
                    case .timerStopped:
                        continue
                    }
                }
                throw CancellationError()
            }
        } catch {
            throw Self.storeError(error, doing: action)
        }
    }

    private static func bumpKeyRevision(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("UPDATE key_revision SET revision = revision + 1 WHERE id = 1", logger: logger)
    }

    /// One INSERT of a batch that passes each column as one array and unnests them.
    ///
    /// A multi-row VALUES list has 19 parameters per record, which PostgreSQL parses and plans anew for every
    /// batch (9,500 for 500 records); with arrays the statement always has 19, or 21 when some record of the
    /// batch carries bodies (`store-bodies`): without them the server is spared two arrays of empty strings.
    /// Arrays here cannot hold NULL elements, so an empty string and NaN stand for NULL in the nullable columns
    /// (no stored value is ever empty or NaN) and NULLIF turns them back.
    static func insertQuery(_ records: ArraySlice<UsageRecord>) -> PostgresQuery {
        let withBodies = records.contains { $0.requestBody != nil || $0.responseBody != nil }
        var binds = PostgresBindings(capacity: UsageSQL.columns.count)
        binds.append(records.map { $0.id.sanitized })
        binds.append(records.map(\.time))
        binds.append(records.map { $0.requestID.sanitized })
        binds.append(records.map { ($0.keyID ?? "").sanitized })
        binds.append(records.map { ($0.clientIP ?? "").sanitized })
        binds.append(records.map { $0.route.sanitized })
        binds.append(records.map { ($0.model ?? "").sanitized })
        binds.append(records.map { ($0.upstream ?? "").sanitized })
        binds.append(records.map(\.status))
        binds.append(records.map { ($0.errorCode ?? "").sanitized })
        binds.append(records.map(\.stream))
        binds.append(records.map(\.cacheHit))
        binds.append(records.map(\.promptTokens))
        binds.append(records.map(\.completionTokens))
        binds.append(records.map(\.tokensEstimated))
        binds.append(records.map(\.latencyMs))
        binds.append(records.map { $0.timeToFirstTokenMs ?? .nan })
        binds.append(records.map(\.costUSD))
        binds.append(records.map(\.savedUSD))
        binds.append(records.map(\.cachedTokens))
        binds.append(records.map(\.cacheWriteTokens))
        binds.append(records.map(\.reasoningTokens))
        guard withBodies else { return PostgresQuery(unsafeSQL: insertWithoutBodiesSQL, binds: binds) }
        binds.append(records.map { ($0.requestBody ?? "").sanitized })
        binds.append(records.map { ($0.responseBody ?? "").sanitized })
        return PostgresQuery(unsafeSQL: insertWithBodiesSQL, binds: binds)
    }

    private static let insertWithoutBodiesSQL = withSpend("""
        INSERT INTO usage_records (\(UsageSQL.columns.dropLast(2).joined(separator: ", ")))
        SELECT id, time, request_id, NULLIF(key_id, ''), NULLIF(client_ip, ''), route, NULLIF(model, ''),
            NULLIF(upstream, ''), status, NULLIF(error_code, ''), stream, cache_hit, prompt_tokens, completion_tokens,
            tokens_estimated, latency_ms, NULLIF(time_to_first_token_ms, 'NaN'::float8), cost_usd, saved_usd,
            cached_tokens, cache_write_tokens, reasoning_tokens
        FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::int8[], $10::text[], $11::bool[], $12::bool[], $13::int8[], $14::int8[], $15::bool[], $16::float8[],
            $17::float8[], $18::float8[], $19::float8[], $20::int8[], $21::int8[], $22::int8[])
            AS batch(id, time, request_id, key_id, client_ip, route, model, upstream, status, error_code, stream,
                cache_hit, prompt_tokens, completion_tokens, tokens_estimated, latency_ms, time_to_first_token_ms,
                cost_usd, saved_usd, cached_tokens, cache_write_tokens, reasoning_tokens)
        ON CONFLICT (id) DO NOTHING
        """)

    private static let insertWithBodiesSQL = withSpend("""
        INSERT INTO usage_records (\(UsageSQL.columnList))
        SELECT id, time, request_id, NULLIF(key_id, ''), NULLIF(client_ip, ''), route, NULLIF(model, ''),
            NULLIF(upstream, ''), status, NULLIF(error_code, ''), stream, cache_hit, prompt_tokens, completion_tokens,
            tokens_estimated, latency_ms, NULLIF(time_to_first_token_ms, 'NaN'::float8), cost_usd, saved_usd,
            cached_tokens, cache_write_tokens, reasoning_tokens, NULLIF(request_body, ''), NULLIF(response_body, '')
        FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::int8[], $10::text[], $11::bool[], $12::bool[], $13::int8[], $14::int8[], $15::bool[], $16::float8[],
            $17::float8[], $18::float8[], $19::float8[], $20::int8[], $21::int8[], $22::int8[], $23::text[], $24::text[])
            AS batch(id, time, request_id, key_id, client_ip, route, model, upstream, status, error_code, stream,
                cache_hit, prompt_tokens, completion_tokens, tokens_estimated, latency_ms, time_to_first_token_ms,
                cost_usd, saved_usd, cached_tokens, cache_write_tokens, reasoning_tokens, request_body, response_body)
        ON CONFLICT (id) DO NOTHING
        """)

    /// Wraps a batch insert so that the same statement adds the cost of the rows it inserted to each key's running
    /// total; rows skipped as duplicates add nothing. Keys are updated in id order, so concurrent batches from several
    /// instances lock them in the same order and never deadlock.
    private static func withSpend(_ insert: String) -> String {
        """
        WITH inserted AS (
        \(insert)
        RETURNING id, key_id, cost_usd
        )
        , spent AS (
        INSERT INTO key_spend (key_id, spent_usd)
        SELECT key_id, SUM(cost_usd) FROM inserted WHERE key_id IS NOT NULL GROUP BY key_id ORDER BY key_id
        ON CONFLICT (key_id) DO UPDATE SET spent_usd = key_spend.spent_usd + excluded.spent_usd
        )
        SELECT id FROM inserted
        """
    }

    private static func query(_ statement: SQLStatement) -> PostgresQuery {
        PostgresQuery(unsafeSQL: statement.sql, binds: binds(statement.binds))
    }

    private static func binds(_ values: [SQLValue]) -> PostgresBindings {
        var binds = PostgresBindings(capacity: values.count)
        for value in values {
            switch value {
            case .text(let text): binds.append(text.sanitized)
            case .double(let double): binds.append(double)
            case .int(let int): binds.append(int)
            case .bool(let bool): binds.append(bool)
            case .null: binds.appendNull()
            }
        }
        return binds
    }

    private static func decodeKey(_ row: PostgresRow) throws -> APIKeyRecord {
        let (id, name, hash, prefix, createdAt, lastUsedAt, expiresAt, models, rpm, tpm, budget, revoked, period, alert, team, overflow, priority) =
            try row.decode(
                (String, String, String, String, Double, Double?, Double?, String, Int?, Int?, Double?, Bool, String, Double?, String?, Bool, String)
                    .self)
        var record = APIKeyRecord(
            id: id, name: name, hash: hash, prefix: prefix, createdAt: createdAt, lastUsedAt: lastUsedAt,
            expiresAt: expiresAt, allowedModels: try KeyColumns.decodeModels(models), rpm: rpm, tpm: tpm,
            budgetUSD: budget, revoked: revoked, budgetPeriod: KeyColumns.period(period), budgetAlert: alert, teamID: team)
        record.allowOverflow = overflow
        record.priority = PriorityClass(rawValue: priority) ?? .interactive
        return record
    }

    private static func decodeTeam(_ row: PostgresRow) throws -> TeamRecord {
        let (id, name, createdAt, models, rpm, tpm, budget, period, alert) = try row.decode(
            (String, String, Double, String, Int?, Int?, Double?, String, Double?).self)
        return TeamRecord(
            id: id, name: name, createdAt: createdAt, allowedModels: try KeyColumns.decodeModels(models), rpm: rpm, tpm: tpm,
            budgetUSD: budget, budgetPeriod: KeyColumns.period(period), budgetAlert: alert)
    }

    private static func decodeUsage(_ row: PostgresRow) throws -> UsageRecord {
        // Columns come back in `UsageSQL.columns` order.
        let (
            id, time, requestID, keyID, clientIP, route, model, upstream, status, errorCode, stream, cacheHit, prompt,
            completion, estimated, latency, ttft, cost, saved, cached, cacheWrite, reasoning, requestBody, responseBody, overflowed
        ) = try row.decode(
            (String, Double, String, String?, String?, String, String?, String?, Int, String?, Bool, Bool, Int, Int, Bool,
             Double, Double?, Double, Double, Int, Int, Int, String?, String?, Bool).self)
        return UsageRecord(
            id: id, time: time, requestID: requestID, keyID: keyID, clientIP: clientIP, route: route, model: model,
            upstream: upstream, status: status, errorCode: errorCode, stream: stream, cacheHit: cacheHit,
            promptTokens: prompt, completionTokens: completion, cachedTokens: cached, cacheWriteTokens: cacheWrite,
            reasoningTokens: reasoning, tokensEstimated: estimated, latencyMs: latency,
            timeToFirstTokenMs: ttft, costUSD: cost, savedUSD: saved, overflowed: overflowed, requestBody: requestBody,
            responseBody: responseBody)
    }

    private static func decodeResponse(_ row: PostgresRow) throws -> StoredResponse {
        // Columns come back in `ResponseSQL.columns` order.
        let (id, keyID, createdAt, expiresAt, model, inputItems, outputItems, response) = try row.decode(
            (String, String?, Double, Double, String, String, String, String).self)
        return StoredResponse(
            id: id, keyID: keyID, createdAt: createdAt, expiresAt: expiresAt, model: model, inputItems: inputItems,
            outputItems: outputItems, response: response)
    }

    /// PostgreSQL errors reduced to the operation, SQLSTATE and primary message. The message never contains the
    /// password; the DETAIL field (which can echo bound values such as a key hash) is left out on purpose.
    static func storeError(_ error: any Error, doing action: String) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as PostgresTransactionError:
            if let inner = error.closureError ?? error.beginError ?? error.commitError {
                return storeError(inner, doing: action)
            }
            return StoreError("could not \(action) (PostgreSQL transaction failed)")
        case let error as PSQLError:
            if let server = error.serverInfo {
                let state = server[.sqlState].map { " [\($0)]" } ?? ""
                return StoreError("could not \(action) (PostgreSQL\(state): \(server[.message] ?? "error"))")
            }
            if let underlying = error.underlying {
                return StoreError("could not \(action) (PostgreSQL \(error.code): \(underlying))")
            }
            return StoreError("could not \(action) (PostgreSQL \(error.code))")
        case let error as PostgresDecodingError:
            return StoreError("could not \(action) (unexpected column type: \(error.code))")
        default:
            return StoreError("could not \(action): \(error)")
        }
    }
}

/// What finished first in ``PostgresStore``'s bounded wait for a connection.
private enum LeaseOutcome<R: Sendable>: Sendable {
    case value(R)
    /// The timer fired after the connection was leased, or was cancelled; keep waiting for the operation.
    case timerStopped
    case timedOut
}

/// Decides, exactly once, whether the connection lease or the wait timeout came first.
private final class LeaseRace: Sendable {
    private enum State { case waiting, leased, timedOut }
    private let state = Mutex(State.waiting)

    /// True if the lease won (or had already won).
    func markLeased() -> Bool {
        self.state.withLock { state in
            if state == .waiting { state = .leased }
            return state == .leased
        }
    }

    /// True if the timeout won.
    func markTimedOut() -> Bool {
        self.state.withLock { state in
            if state == .waiting { state = .timedOut }
            return state == .timedOut
        }
    }
}
