import SluiceCore

/// A value bound to a statement, before it becomes a backend-specific bind.
enum SQLValue: Sendable, Equatable {
    case text(String)
    case double(Double)
    case int(Int)
    case bool(Bool)
    case null
}

/// The two SQL dialects the stores speak.
enum SQLDialect: Sendable {
    case sqlite
    case postgres
}

/// Builds a statement's text and binds together so placeholders and values cannot drift apart.
struct SQLStatement: Sendable {
    let dialect: SQLDialect
    private(set) var sql = ""
    private(set) var binds: [SQLValue] = []

    init(_ dialect: SQLDialect, _ sql: String = "") {
        self.dialect = dialect
        self.sql = sql
    }

    mutating func append(_ fragment: String) {
        self.sql += fragment
    }

    /// Appends a placeholder for `value` (`?` for SQLite, `$n` for PostgreSQL).
    mutating func bind(_ value: SQLValue) {
        self.binds.append(value)
        switch self.dialect {
        case .sqlite: self.sql += "?"
        case .postgres: self.sql += "$\(self.binds.count)"
        }
    }

    mutating func bind(_ value: String?) { self.bind(value.map(SQLValue.text) ?? .null) }
    mutating func bind(_ value: Double?) { self.bind(value.map(SQLValue.double) ?? .null) }
    mutating func bind(_ value: Int?) { self.bind(value.map(SQLValue.int) ?? .null) }
    mutating func bind(_ value: Bool) { self.bind(.bool(value)) }

    /// Binds each value, comma-separated: the inside of `IN (…)` or `VALUES (…)`.
    mutating func bindList(_ values: some Sequence<SQLValue>) {
        for (index, value) in values.enumerated() {
            if index > 0 { self.append(", ") }
            self.bind(value)
        }
    }

    mutating func bindList(_ values: some Sequence<String>) { bindList(values.map(SQLValue.text)) }
}

/// Usage-record SQL common to both stores; only the dialect-specific bits differ.
enum UsageSQL {
    /// Column order used by every insert and select of usage records.
    static let columns = [
        "id", "time", "request_id", "key_id", "client_ip", "route", "model", "upstream", "status", "error_code",
        "stream", "cache_hit", "prompt_tokens", "completion_tokens", "tokens_estimated", "latency_ms",
        "time_to_first_token_ms", "cost_usd", "saved_usd", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
        "request_body", "response_body",
    ]
    static let columnList = columns.joined(separator: ", ")

    /// Rows per INSERT: 24 binds each keeps SQLite far below its 32,766; PostgreSQL sends arrays, whose size
    /// this bounds only to keep one message small.
    static let insertChunk = 500

    /// Binds one record in `columns` order.
    static func bindValues(_ record: UsageRecord) -> [SQLValue] {
        [
            .text(record.id), .double(record.time), .text(record.requestID), record.keyID.map(SQLValue.text) ?? .null,
            record.clientIP.map(SQLValue.text) ?? .null, .text(record.route), record.model.map(SQLValue.text) ?? .null,
            record.upstream.map(SQLValue.text) ?? .null, .int(record.status), record.errorCode.map(SQLValue.text) ?? .null,
            .bool(record.stream), .bool(record.cacheHit), .int(record.promptTokens), .int(record.completionTokens),
            .bool(record.tokensEstimated), .double(record.latencyMs),
            record.timeToFirstTokenMs.map(SQLValue.double) ?? .null, .double(record.costUSD), .double(record.savedUSD),
            .int(record.cachedTokens), .int(record.cacheWriteTokens), .int(record.reasoningTokens),
            // Empty is stored as NULL, as PostgreSQL's NULLIF does, so both stores read back the same.
            record.requestBody.flatMap { $0.isEmpty ? nil : SQLValue.text($0.sanitized) } ?? .null,
            record.responseBody.flatMap { $0.isEmpty ? nil : SQLValue.text($0.sanitized) } ?? .null,
        ]
    }

    /// A multi-row insert that skips ids already stored and returns the ids of the rows it did insert
    /// (SQLite; PostgreSQL unnests arrays instead).
    static func sqliteInsert(_ records: ArraySlice<UsageRecord>) -> SQLStatement {
        var statement = SQLStatement(.sqlite)
        statement.append("INSERT OR IGNORE INTO usage_records (\(columnList)) VALUES ")
        for (index, record) in records.enumerated() {
            statement.append(index == 0 ? "(" : ", (")
            for (column, value) in bindValues(record).enumerated() {
                if column > 0 { statement.append(", ") }
                statement.bind(value)
            }
            statement.append(")")
        }
        statement.append(" RETURNING id")
        return statement
    }

    /// Flags the records of a batch that overflowed, after the batch is inserted: a separate statement, so the insert
    /// stays the one every batch without overflow uses. Setting a flag twice is harmless when a batch is retried.
    static func markOverflowed(_ records: [UsageRecord], dialect: SQLDialect) -> SQLStatement? {
        let ids = records.filter(\.overflowed).map(\.id)
        guard !ids.isEmpty else { return nil }
        var statement = SQLStatement(dialect, "UPDATE usage_records SET overflowed = ")
        statement.bind(true)
        statement.append(" WHERE id IN (")
        statement.bindList(ids)
        statement.append(")")
        return statement
    }

    /// Appends ` WHERE …` for the query's filters. `until` is exclusive, `since` inclusive.
    static func appendFilter(_ query: UsageQuery, to statement: inout SQLStatement) {
        statement.append(" WHERE time >= ")
        statement.bind(query.since)
        if let until = query.until {
            statement.append(" AND time < ")
            statement.bind(until)
        }
        appendKeyAndModel(query, to: &statement)
    }

    /// Appends ` AND …` for the query's key and model filters, which records and rollups share.
    static func appendKeyAndModel(_ query: UsageQuery, to statement: inout SQLStatement) {
        if let keyID = query.keyID {
            statement.append(" AND key_id = ")
            statement.bind(keyID)
        }
        if let model = query.model {
            statement.append(" AND model = ")
            statement.bind(model)
        }
    }

    /// The expression a report groups by; records without a key or model fall in the "" group.
    static func groupExpression(_ grouping: UsageGrouping, dialect: SQLDialect) -> String {
        switch (grouping, dialect) {
        case (.key, _): "COALESCE(key_id, '')"
        case (.model, _): "COALESCE(model, '')"
        case (.route, _): "route"
        case (.team, _): "COALESCE((SELECT team_id FROM api_keys WHERE api_keys.id = usage_records.key_id), '')"
        case (.day, .sqlite): "strftime('%Y-%m-%d', time, 'unixepoch')"
        case (.day, .postgres): "to_char(to_timestamp(time) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
    }

    /// Totals (one row) or groups (one row per group, ascending), each row being
    /// `group, requests, prompt, completion, cost, saved, cache hits, errors, p50, p95, overflowed, overflow cost`.
    ///
    /// Latency percentiles use the nearest-rank definition on both backends: the value at rank ceil(p·N) in
    /// ascending order, 0 for no rows. PostgreSQL's `percentile_disc` is exactly that; SQLite has no percentile
    /// aggregate, so it ranks rows with window functions and picks rank ceil(p·N) with integer arithmetic
    /// (`(a·N + b − 1) / b` for p = a/b), which equals PostgreSQL's floating-point ceil for p = 0.5 and 0.95.
    static func report(_ query: UsageQuery, grouping: UsageGrouping?, dialect: SQLDialect) -> SQLStatement {
        let group = grouping.map { groupExpression($0, dialect: dialect) }
        var statement = SQLStatement(dialect)
        switch dialect {
        case .postgres:
            statement.append("SELECT \(group ?? "''::text") AS grp, COUNT(*), ")
            statement.append("COALESCE(SUM(prompt_tokens), 0)::BIGINT, COALESCE(SUM(completion_tokens), 0)::BIGINT, ")
            statement.append("COALESCE(SUM(cost_usd), 0)::DOUBLE PRECISION, COALESCE(SUM(saved_usd), 0)::DOUBLE PRECISION, ")
            statement.append("COUNT(*) FILTER (WHERE cache_hit), ")
            statement.append("COUNT(*) FILTER (WHERE status >= 400 OR error_code IS NOT NULL), ")
            statement.append("COALESCE(percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms), 0)::DOUBLE PRECISION, ")
            statement.append("COALESCE(percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms), 0)::DOUBLE PRECISION, ")
            statement.append("COUNT(*) FILTER (WHERE overflowed), COALESCE(SUM(cost_usd) FILTER (WHERE overflowed), 0)::DOUBLE PRECISION ")
            statement.append("FROM usage_records")
            appendFilter(query, to: &statement)
            if group != nil {
                statement.append(" GROUP BY grp ORDER BY grp")
            }
        case .sqlite:
            let partition = group.map { "PARTITION BY \($0) " } ?? ""
            statement.append("SELECT \(group == nil ? "''" : "grp") AS grp, COUNT(*), ")
            statement.append("COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), ")
            statement.append("COALESCE(SUM(cost_usd), 0.0), COALESCE(SUM(saved_usd), 0.0), ")
            statement.append("COUNT(*) FILTER (WHERE cache_hit), ")
            statement.append("COUNT(*) FILTER (WHERE status >= 400 OR error_code IS NOT NULL), ")
            statement.append("COALESCE(MAX(CASE WHEN rn = (n + 1) / 2 THEN latency_ms END), 0.0), ")
            statement.append("COALESCE(MAX(CASE WHEN rn = (19 * n + 19) / 20 THEN latency_ms END), 0.0), ")
            statement.append("COUNT(*) FILTER (WHERE overflowed), COALESCE(SUM(cost_usd) FILTER (WHERE overflowed), 0.0) ")
            statement.append("FROM (SELECT \(group ?? "''") AS grp, prompt_tokens, completion_tokens, cost_usd, saved_usd, ")
            statement.append("cache_hit, status, error_code, latency_ms, overflowed, ")
            statement.append("ROW_NUMBER() OVER (\(partition)ORDER BY latency_ms) AS rn, ")
            statement.append("COUNT(*) OVER (\(partition)) AS n FROM usage_records")
            appendFilter(query, to: &statement)
            statement.append(")")
            if group != nil {
                statement.append(" GROUP BY grp ORDER BY grp")
            }
        }
        return statement
    }

    /// Newest first; ties broken by id so pages are stable.
    static func recent(_ query: UsageQuery, limit: Int, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT \(columnList), overflowed FROM usage_records")
        appendFilter(query, to: &statement)
        statement.append(" ORDER BY time DESC, id DESC LIMIT ")
        statement.bind(max(0, limit))
        return statement
    }

    /// A key's running total, which retention never lowers: budgets count everything a key spent, not what the
    /// records still held happen to add up to, and reading it costs one row however long the key's history.
    static func spend(keyIDs: ArraySlice<String>, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT key_id, spent_usd FROM key_spend WHERE key_id IN (")
        statement.bindList(keyIDs)
        statement.append(")")
        return statement
    }

    /// Keys per spend query: well under both backends' limits on bound parameters.
    static let spendChunk = 500

    /// Adds a batch's cost to a key's running total (SQLite; PostgreSQL does it in the insert statement).
    static func addSpend(keyID: String, costUSD: Double) -> SQLStatement {
        var statement = SQLStatement(.sqlite, "INSERT INTO key_spend (key_id, spent_usd) VALUES (")
        statement.bind(keyID)
        statement.append(", ")
        statement.bind(costUSD)
        statement.append(") ON CONFLICT (key_id) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd")
        return statement
    }

    /// One bounded statement, oldest first, so a retention job never holds a long lock.
    static func delete(before: Double, limit: Int, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect)
        if dialect == .postgres { statement.append("WITH deleted AS (") }
        statement.append("DELETE FROM usage_records WHERE id IN (SELECT id FROM usage_records WHERE time < ")
        statement.bind(before)
        statement.append(" ORDER BY time LIMIT ")
        statement.bind(max(0, limit))
        statement.append(")")
        if dialect == .postgres { statement.append(" RETURNING 1) SELECT COUNT(*) FROM deleted") }
        return statement
    }
}

extension Array where Element == UsageRecord {
    /// Drops repeated ids within one batch, keeping the first, so a retried batch cannot double-count.
    func uniquedByID() -> [UsageRecord] {
        var seen = Set<String>()
        return self.filter { seen.insert($0.id).inserted }
    }
}
