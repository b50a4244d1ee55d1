import SluiceCore

/// One row of the hourly rollups: what a key spent on a model, route and upstream within one UTC hour.
struct RollupRow: Sendable, Hashable {
    struct Group: Hashable {
        var hour: Double
        var keyID: String
        var model: String
        var route: String
        var upstream: String
    }

    var group: Group
    var requests = 0
    var promptTokens = 0
    var completionTokens = 0
    var costUSD = 0.0
    var savedUSD = 0.0
    var errors = 0
    var cacheHits = 0
    /// Calls that overflowed to a hosted upstream, and what they cost.
    var overflowRequests = 0
    var overflowCostUSD = 0.0
}

/// Hourly rollups, written in the same transaction as the usage batch they sum, so reports over long spans and
/// budget periods read a few rows per key and hour instead of every record.
enum RollupSQL {
    static let columns =
        "hour, key_id, team_id, model, route, upstream, requests, prompt_tokens, completion_tokens, cost_usd, saved_usd, errors, cache_hits, overflow_requests, overflow_cost_usd"

    /// The start of the UTC hour containing `time`.
    static func hour(_ time: Double) -> Double { (time / 3600).rounded(.down) * 3600 }

    /// Sums records into rollup rows, in a stable order (so concurrent writers lock rows in the same order).
    static func aggregate(_ records: some Sequence<UsageRecord>) -> [RollupRow] {
        var rows: [RollupRow.Group: RollupRow] = [:]
        for record in records {
            let group = RollupRow.Group(
                hour: hour(record.time), keyID: (record.keyID ?? "").sanitized, model: (record.model ?? "").sanitized,
                route: record.route.sanitized, upstream: (record.upstream ?? "").sanitized)
            var row = rows[group] ?? RollupRow(group: group)
            row.requests += 1
            row.promptTokens += record.promptTokens
            row.completionTokens += record.completionTokens
            row.costUSD += record.costUSD
            row.savedUSD += record.savedUSD
            if record.status >= 400 || record.errorCode != nil { row.errors += 1 }
            if record.cacheHit { row.cacheHits += 1 }
            if record.overflowed {
                row.overflowRequests += 1
                row.overflowCostUSD += record.costUSD
            }
            rows[group] = row
        }
        return rows.values.sorted {
            ($0.group.hour, $0.group.keyID, $0.group.model, $0.group.route, $0.group.upstream)
                < ($1.group.hour, $1.group.keyID, $1.group.model, $1.group.route, $1.group.upstream)
        }
    }

    /// Adds to an existing row; the team is the key's, looked up as the row is written.
    static let onConflict = """
        ON CONFLICT (hour, key_id, team_id, model, route, upstream) DO UPDATE SET
            requests = usage_rollups.requests + excluded.requests,
            prompt_tokens = usage_rollups.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = usage_rollups.completion_tokens + excluded.completion_tokens,
            cost_usd = usage_rollups.cost_usd + excluded.cost_usd,
            saved_usd = usage_rollups.saved_usd + excluded.saved_usd,
            errors = usage_rollups.errors + excluded.errors,
            cache_hits = usage_rollups.cache_hits + excluded.cache_hits,
            overflow_requests = usage_rollups.overflow_requests + excluded.overflow_requests,
            overflow_cost_usd = usage_rollups.overflow_cost_usd + excluded.overflow_cost_usd
        """

    /// One row's upsert (SQLite; PostgreSQL unnests arrays).
    static func sqliteUpsert(_ row: RollupRow) -> SQLStatement {
        var statement = SQLStatement(.sqlite, "INSERT INTO usage_rollups (\(columns)) VALUES (")
        statement.bind(row.group.hour)
        statement.append(", ")
        statement.bind(row.group.keyID)
        statement.append(", COALESCE((SELECT team_id FROM api_keys WHERE id = ")
        statement.bind(row.group.keyID)
        statement.append("), ''), ")
        let values: [SQLValue] = [
            .text(row.group.model), .text(row.group.route), .text(row.group.upstream), .int(row.requests), .int(row.promptTokens),
            .int(row.completionTokens), .double(row.costUSD), .double(row.savedUSD), .int(row.errors), .int(row.cacheHits),
            .int(row.overflowRequests), .double(row.overflowCostUSD),
        ]
        statement.bindList(values)
        statement.append(") " + onConflict)
        return statement
    }

    static let postgresUpsert = """
        INSERT INTO usage_rollups (\(columns))
        SELECT v.hour, v.key_id, COALESCE(k.team_id, ''), v.model, v.route, v.upstream, v.requests, v.prompt_tokens,
            v.completion_tokens, v.cost_usd, v.saved_usd, v.errors, v.cache_hits, v.overflow_requests, v.overflow_cost_usd
        FROM unnest($1::float8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[],
            $9::float8[], $10::float8[], $11::int8[], $12::int8[], $13::int8[], $14::float8[])
            WITH ORDINALITY AS v(hour, key_id, model, route, upstream, requests, prompt_tokens, completion_tokens, cost_usd,
                saved_usd, errors, cache_hits, overflow_requests, overflow_cost_usd, n)
        LEFT JOIN api_keys k ON k.id = v.key_id
        ORDER BY v.n
        \(onConflict)
        """

    /// What each key spent from `since` on, summed from the rollups (periods start on whole hours).
    static func periodSpend(keyIDs: ArraySlice<String>, since: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT key_id, SUM(cost_usd) FROM usage_rollups WHERE hour >= ")
        statement.bind(since)
        statement.append(" AND key_id IN (")
        statement.bindList(keyIDs)
        statement.append(") GROUP BY key_id")
        return statement
    }

    /// Records that an alert for `subject` went out for the period starting at `periodStart`; returns a row only
    /// to the first instance that claims it.
    static func claimAlert(subject: String, periodStart: Double, at time: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "INSERT INTO budget_alerts (subject, period_start, sent_at) VALUES (")
        statement.bind(subject)
        statement.append(", ")
        statement.bind(periodStart)
        statement.append(", ")
        statement.bind(time)
        statement.append(") ON CONFLICT (subject, period_start) DO NOTHING RETURNING subject")
        return statement
    }
}

/// SQL of the budget reservations both stores share.
enum ReservationSQL {
    static func insert(_ reservation: BudgetReservation, instanceID: String, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(
            dialect, "INSERT INTO budget_reservations (request_id, instance_id, key_id, amount_usd, expires_at) VALUES (")
        statement.bind(reservation.requestID.sanitized)
        statement.append(", ")
        statement.bind(instanceID.sanitized)
        statement.append(", ")
        statement.bind(reservation.keyID.sanitized)
        statement.append(", ")
        statement.bind(reservation.amountUSD)
        statement.append(", ")
        statement.bind(reservation.expiresAt)
        statement.append(") ON CONFLICT (instance_id, request_id) DO UPDATE SET amount_usd = excluded.amount_usd, expires_at = excluded.expires_at")
        return statement
    }

    /// Settling twice, or a reservation never published, deletes nothing: settlement is idempotent by request id.
    static func settle(requestID: String, instanceID: String, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "DELETE FROM budget_reservations WHERE instance_id = ")
        statement.bind(instanceID.sanitized)
        statement.append(" AND request_id = ")
        statement.bind(requestID.sanitized)
        return statement
    }

    static func forgetExpired(now: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "DELETE FROM budget_reservations WHERE expires_at < ")
        statement.bind(now)
        return statement
    }

    /// What other instances hold reserved per key, expired reservations (of instances that died) left out.
    static func reservedByOthers(keyIDs: ArraySlice<String>, instanceID: String, now: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT key_id, SUM(amount_usd) FROM budget_reservations WHERE instance_id <> ")
        statement.bind(instanceID.sanitized)
        statement.append(" AND expires_at >= ")
        statement.bind(now)
        statement.append(" AND key_id IN (")
        statement.bindList(keyIDs)
        statement.append(") GROUP BY key_id")
        return statement
    }
}

extension RollupSQL {
    /// Reports spanning more than this read whole hours from the rollups and only the partial hours at either end
    /// from the records.
    static let rollupSpan: Double = 86_400

    /// How a report is read: records only, or records for the partial hours at the ends and rollups between.
    struct Plan {
        /// Record queries for the partial hours (empty ranges left out).
        var raw: [UsageQuery]
        /// Whole hours `[from, to)` read from the rollups.
        var hours: (from: Double, to: Double)?
    }

    static func plan(_ query: UsageQuery) -> Plan {
        guard let until = query.until, until - query.since > rollupSpan else { return Plan(raw: [query], hours: nil) }
        let from = (query.since / 3600).rounded(.up) * 3600
        let to = hour(until)
        var raw: [UsageQuery] = []
        if query.since < from {
            var head = query
            head.until = from
            raw.append(head)
        }
        if to < until {
            var tail = query
            tail.since = to
            raw.append(tail)
        }
        return Plan(raw: raw, hours: (from, to))
    }

    static func groupExpression(_ grouping: UsageGrouping, dialect: SQLDialect) -> String {
        switch (grouping, dialect) {
        case (.key, _): "key_id"
        case (.team, _): "team_id"
        case (.model, _): "model"
        case (.route, _): "route"
        case (.day, .sqlite): "strftime('%Y-%m-%d', hour, 'unixepoch')"
        case (.day, .postgres): "to_char(to_timestamp(hour) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
    }

    /// Totals or groups over whole hours, in the columns of ``UsageSQL/report(_:grouping:dialect:)``; latency
    /// percentiles are not kept in rollups and read 0.
    static func report(_ query: UsageQuery, hours: (from: Double, to: Double), grouping: UsageGrouping?, dialect: SQLDialect) -> SQLStatement {
        let group = grouping.map { groupExpression($0, dialect: dialect) }
        let (int, double, text) = dialect == .postgres ? ("::BIGINT", "::DOUBLE PRECISION", "::text") : ("", "", "")
        var statement = SQLStatement(dialect, "SELECT \(group ?? "''\(text)") AS grp, ")
        statement.append("COALESCE(SUM(requests), 0)\(int), COALESCE(SUM(prompt_tokens), 0)\(int), ")
        statement.append("COALESCE(SUM(completion_tokens), 0)\(int), COALESCE(SUM(cost_usd), 0)\(double), ")
        statement.append("COALESCE(SUM(saved_usd), 0)\(double), COALESCE(SUM(cache_hits), 0)\(int), COALESCE(SUM(errors), 0)\(int), ")
        statement.append("0.0\(double), 0.0\(double), COALESCE(SUM(overflow_requests), 0)\(int), ")
        statement.append("COALESCE(SUM(overflow_cost_usd), 0)\(double) FROM usage_rollups WHERE hour >= ")
        statement.bind(hours.from)
        statement.append(" AND hour < ")
        statement.bind(hours.to)
        UsageSQL.appendKeyAndModel(query, to: &statement)
        if group != nil { statement.append(" GROUP BY grp ORDER BY grp") }
        return statement
    }

    /// The statements of a planned report, as (totals, groups) per span. The rollups' totals are the sum of their
    /// groups (they hold no percentiles), so a grouped report reads the rollups once.
    static func statements(
        _ query: UsageQuery, plan: Plan, hours: (from: Double, to: Double), grouping: UsageGrouping?, dialect: SQLDialect
    ) -> [(totals: SQLStatement?, groups: SQLStatement?)] {
        var statements: [(totals: SQLStatement?, groups: SQLStatement?)] = plan.raw.map { raw in
            (UsageSQL.report(raw, grouping: nil, dialect: dialect), grouping.map { UsageSQL.report(raw, grouping: $0, dialect: dialect) })
        }
        if let grouping {
            statements.append((nil, report(query, hours: hours, grouping: grouping, dialect: dialect)))
        } else {
            statements.append((report(query, hours: hours, grouping: nil, dialect: dialect), nil))
        }
        return statements
    }

    /// Adds up breakdowns of disjoint spans; percentiles come from the record spans only (0 when none). A span
    /// read as groups only counts its groups into the totals.
    static func merge(_ parts: [UsageBreakdown]) -> UsageBreakdown {
        var totals = UsageTotals()
        var groups: [String: UsageTotals] = [:]
        func add(_ a: inout UsageTotals, _ b: UsageTotals) {
            a.requests += b.requests
            a.promptTokens += b.promptTokens
            a.completionTokens += b.completionTokens
            a.costUSD += b.costUSD
            a.savedUSD += b.savedUSD
            a.cacheHits += b.cacheHits
            a.errors += b.errors
            a.overflowRequests += b.overflowRequests
            a.overflowCostUSD += b.overflowCostUSD
        }
        for part in parts {
            if part.totals == UsageTotals() {
                for group in part.groups { add(&totals, group.totals) }
            } else {
                add(&totals, part.totals)
            }
            for group in part.groups { add(&groups[group.group, default: UsageTotals()], group.totals) }
        }
        return UsageBreakdown(totals: totals, groups: groups.keys.sorted().map { UsageGroup(group: $0, totals: groups[$0]!) })
    }
}

extension RollupSQL {
    /// One bounded statement, oldest first, so retention never holds a long lock.
    static func delete(before: Double, limit: Int, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect)
        if dialect == .postgres {
            statement.append("WITH deleted AS (DELETE FROM usage_rollups WHERE ctid IN (SELECT ctid FROM usage_rollups WHERE hour < ")
        } else {
            // Rollups have no rowid in SQLite; their primary key leads with the hour.
            statement.append(
                "DELETE FROM usage_rollups WHERE (hour, key_id, team_id, model, route, upstream) IN "
                    + "(SELECT hour, key_id, team_id, model, route, upstream FROM usage_rollups WHERE hour < ")
        }
        statement.bind(before)
        statement.append(" ORDER BY hour LIMIT ")
        statement.bind(max(0, limit))
        statement.append(")")
        if dialect == .postgres { statement.append(" RETURNING 1) SELECT COUNT(*) FROM deleted") }
        return statement
    }
}
