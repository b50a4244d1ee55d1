/// One step of the schema: applied once, in order, and recorded in `schema_migrations`.
///
/// SQLite and PostgreSQL get their own statements (types and idioms differ) but must describe the same tables,
/// so both stores answer the contract tests identically. Each statement is run separately: neither sqlite-nio
/// nor PostgresNIO's extended protocol accepts several statements in one string.
public struct Migration: Sendable {
    /// Strictly increasing; never renumber or edit a released migration, add a new one instead.
    public var version: Int
    public var name: String
    public var sqlite: [String]
    public var postgres: [String]

    public init(version: Int, name: String, sqlite: [String], postgres: [String]) {
        self.version = version
        self.name = name
        self.sqlite = sqlite
        self.postgres = postgres
    }
}

extension Migration {
    /// The schema, oldest first.
    public static let all: [Migration] = [
        Migration(
            version: 1,
            name: "keys and usage records",
            sqlite: [
                """
                CREATE TABLE api_keys (
                    id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    hash TEXT NOT NULL UNIQUE,
                    prefix TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    last_used_at REAL,
                    expires_at REAL,
                    allowed_models TEXT NOT NULL DEFAULT '[]',
                    rpm INTEGER,
                    tpm INTEGER,
                    budget_usd REAL,
                    revoked INTEGER NOT NULL DEFAULT 0,
                    updated_at REAL NOT NULL
                )
                """,
                // A single row bumped in the same transaction as every key change, so instances can poll one
                // cheap value instead of diffing the key table.
                "CREATE TABLE key_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL)",
                "INSERT INTO key_revision (id, revision) VALUES (1, 0)",
                """
                CREATE TABLE usage_records (
                    id TEXT PRIMARY KEY NOT NULL,
                    time REAL NOT NULL,
                    request_id TEXT NOT NULL,
                    key_id TEXT,
                    client_ip TEXT,
                    route TEXT NOT NULL,
                    model TEXT,
                    upstream TEXT,
                    status INTEGER NOT NULL,
                    error_code TEXT,
                    stream INTEGER NOT NULL,
                    cache_hit INTEGER NOT NULL,
                    prompt_tokens INTEGER NOT NULL,
                    completion_tokens INTEGER NOT NULL,
                    tokens_estimated INTEGER NOT NULL,
                    latency_ms REAL NOT NULL,
                    time_to_first_token_ms REAL,
                    cost_usd REAL NOT NULL,
                    saved_usd REAL NOT NULL
                )
                """,
                "CREATE INDEX usage_records_time ON usage_records (time)",
                "CREATE INDEX usage_records_key_time ON usage_records (key_id, time)",
                "CREATE INDEX usage_records_model_time ON usage_records (model, time)",
            ],
            postgres: [
                """
                CREATE TABLE api_keys (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    hash TEXT NOT NULL UNIQUE,
                    prefix TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    last_used_at DOUBLE PRECISION,
                    expires_at DOUBLE PRECISION,
                    allowed_models TEXT NOT NULL DEFAULT '[]',
                    rpm BIGINT,
                    tpm BIGINT,
                    budget_usd DOUBLE PRECISION,
                    revoked BOOLEAN NOT NULL DEFAULT FALSE,
                    updated_at DOUBLE PRECISION NOT NULL
                )
                """,
                "CREATE TABLE key_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision BIGINT NOT NULL)",
                "INSERT INTO key_revision (id, revision) VALUES (1, 0)",
                """
                CREATE TABLE usage_records (
                    id TEXT PRIMARY KEY,
                    time DOUBLE PRECISION NOT NULL,
                    request_id TEXT NOT NULL,
                    key_id TEXT,
                    client_ip TEXT,
                    route TEXT NOT NULL,
                    model TEXT,
                    upstream TEXT,
                    status INTEGER NOT NULL,
                    error_code TEXT,
                    stream BOOLEAN NOT NULL,
                    cache_hit BOOLEAN NOT NULL,
                    prompt_tokens BIGINT NOT NULL,
                    completion_tokens BIGINT NOT NULL,
                    tokens_estimated BOOLEAN NOT NULL,
                    latency_ms DOUBLE PRECISION NOT NULL,
                    time_to_first_token_ms DOUBLE PRECISION,
                    cost_usd DOUBLE PRECISION NOT NULL,
                    saved_usd DOUBLE PRECISION NOT NULL
                )
                """,
                "CREATE INDEX usage_records_time ON usage_records (time)",
                "CREATE INDEX usage_records_key_time ON usage_records (key_id, time)",
                "CREATE INDEX usage_records_model_time ON usage_records (model, time)",
            ]
        ),
        Migration(
            version: 2,
            name: "request and response bodies (store-bodies)",
            sqlite: [
                "ALTER TABLE usage_records ADD COLUMN request_body TEXT",
                "ALTER TABLE usage_records ADD COLUMN response_body TEXT",
            ],
            postgres: [
                "ALTER TABLE usage_records ADD COLUMN request_body TEXT",
                "ALTER TABLE usage_records ADD COLUMN response_body TEXT",
            ]
        ),
        Migration(
            version: 3,
            name: "running instances and the key revision each serves",
            sqlite: [
                """
                CREATE TABLE gateway_instances (
                    id TEXT PRIMARY KEY NOT NULL,
                    key_revision INTEGER NOT NULL,
                    reported_at REAL NOT NULL
                )
                """
            ],
            postgres: [
                """
                CREATE TABLE gateway_instances (
                    id TEXT PRIMARY KEY,
                    key_revision BIGINT NOT NULL,
                    reported_at DOUBLE PRECISION NOT NULL
                )
                """
            ]
        ),
        Migration(
            version: 4,
            name: "dashboard sessions ended by signing out",
            sqlite: [
                "CREATE TABLE ended_sessions (digest TEXT PRIMARY KEY NOT NULL, expires_at REAL NOT NULL)"
            ],
            postgres: [
                "CREATE TABLE ended_sessions (digest TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL)"
            ]
        ),
        Migration(
            version: 5,
            name: "what each key has spent, kept as a running total",
            sqlite: [
                "CREATE TABLE key_spend (key_id TEXT PRIMARY KEY NOT NULL, spent_usd REAL NOT NULL)",
                MigrationSQL.backfillKeySpend,
            ],
            postgres: [
                "CREATE TABLE key_spend (key_id TEXT PRIMARY KEY, spent_usd DOUBLE PRECISION NOT NULL)",
                MigrationSQL.backfillKeySpend,
            ]
        ),
        Migration(
            version: 6,
            name: "stored Responses API answers (previous_response_id)",
            sqlite: [
                """
                CREATE TABLE stored_responses (
                    id TEXT PRIMARY KEY NOT NULL,
                    key_id TEXT,
                    created_at REAL NOT NULL,
                    expires_at REAL NOT NULL,
                    model TEXT NOT NULL,
                    input_items TEXT NOT NULL,
                    output_items TEXT NOT NULL,
                    response TEXT NOT NULL
                )
                """,
                // Retention deletes the soonest-expired first in small batches; without it every batch scans all.
                "CREATE INDEX stored_responses_expires_at ON stored_responses (expires_at)",
            ],
            postgres: [
                """
                CREATE TABLE stored_responses (
                    id TEXT PRIMARY KEY,
                    key_id TEXT,
                    created_at DOUBLE PRECISION NOT NULL,
                    expires_at DOUBLE PRECISION NOT NULL,
                    model TEXT NOT NULL,
                    input_items TEXT NOT NULL,
                    output_items TEXT NOT NULL,
                    response TEXT NOT NULL
                )
                """,
                "CREATE INDEX stored_responses_expires_at ON stored_responses (expires_at)",
            ]
        ),
        Migration(
            version: 7,
            name: "prompt-cache and reasoning tokens of each call",
            sqlite: [
                "ALTER TABLE usage_records ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE usage_records ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE usage_records ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0",
            ],
            postgres: [
                // A constant default adds the columns without rewriting the table.
                "ALTER TABLE usage_records ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE usage_records ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE usage_records ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0",
            ]
        ),
        Migration(
            version: 8,
            name: "rate limits shared by every instance, leased out in shares",
            sqlite: [
                """
                CREATE TABLE rate_buckets (
                    scope TEXT PRIMARY KEY NOT NULL,
                    capacity REAL NOT NULL,
                    refill_per_second REAL NOT NULL,
                    tokens REAL NOT NULL,
                    updated_at REAL NOT NULL
                )
                """
            ],
            postgres: [
                """
                CREATE TABLE rate_buckets (
                    scope TEXT PRIMARY KEY,
                    capacity DOUBLE PRECISION NOT NULL,
                    refill_per_second DOUBLE PRECISION NOT NULL,
                    tokens DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL
                )
                """
            ]
        ),
        Migration(
            version: 9,
            name: "teams, whose keys share a budget, limits and models",
            sqlite: [
                """
                CREATE TABLE teams (
                    id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL UNIQUE,
                    created_at REAL NOT NULL,
                    allowed_models TEXT NOT NULL DEFAULT '[]',
                    rpm INTEGER,
                    tpm INTEGER,
                    budget_usd REAL,
                    budget_period TEXT NOT NULL DEFAULT 'total',
                    budget_alert REAL,
                    updated_at REAL NOT NULL
                )
                """,
                "ALTER TABLE api_keys ADD COLUMN team_id TEXT",
                "ALTER TABLE api_keys ADD COLUMN budget_period TEXT NOT NULL DEFAULT 'total'",
                "ALTER TABLE api_keys ADD COLUMN budget_alert REAL",
            ],
            postgres: [
                """
                CREATE TABLE teams (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    created_at DOUBLE PRECISION NOT NULL,
                    allowed_models TEXT NOT NULL DEFAULT '[]',
                    rpm BIGINT,
                    tpm BIGINT,
                    budget_usd DOUBLE PRECISION,
                    budget_period TEXT NOT NULL DEFAULT 'total',
                    budget_alert DOUBLE PRECISION,
                    updated_at DOUBLE PRECISION NOT NULL
                )
                """,
                "ALTER TABLE api_keys ADD COLUMN team_id TEXT",
                "ALTER TABLE api_keys ADD COLUMN budget_period TEXT NOT NULL DEFAULT 'total'",
                "ALTER TABLE api_keys ADD COLUMN budget_alert DOUBLE PRECISION",
            ]
        ),
        Migration(
            version: 10,
            name: "hourly usage rollups, written with each usage batch, and budget alerts sent once per period",
            // SQLite keeps the rollups in primary-key order (WITHOUT ROWID), so a report's range of hours is one
            // contiguous read instead of an index walk with a lookup per row.
            sqlite: [
                """
                CREATE TABLE usage_rollups (
                    hour REAL NOT NULL,
                    key_id TEXT NOT NULL,
                    team_id TEXT NOT NULL,
                    model TEXT NOT NULL,
                    route TEXT NOT NULL,
                    upstream TEXT NOT NULL,
                    requests INTEGER NOT NULL,
                    prompt_tokens INTEGER NOT NULL,
                    completion_tokens INTEGER NOT NULL,
                    cost_usd REAL NOT NULL,
                    saved_usd REAL NOT NULL,
                    errors INTEGER NOT NULL,
                    cache_hits INTEGER NOT NULL,
                    PRIMARY KEY (hour, key_id, team_id, model, route, upstream)
                ) WITHOUT ROWID
                """,
                "CREATE INDEX usage_rollups_key_hour ON usage_rollups (key_id, hour)",
                MigrationSQL.backfillRollups(hour: "CAST(time / 3600 AS INTEGER) * 3600.0"),
                "CREATE TABLE budget_alerts (subject TEXT NOT NULL, period_start REAL NOT NULL, sent_at REAL NOT NULL, PRIMARY KEY (subject, period_start))",
            ],
            postgres: [
                """
                CREATE TABLE usage_rollups (
                    hour DOUBLE PRECISION NOT NULL,
                    key_id TEXT NOT NULL,
                    team_id TEXT NOT NULL,
                    model TEXT NOT NULL,
                    route TEXT NOT NULL,
                    upstream TEXT NOT NULL,
                    requests BIGINT NOT NULL,
                    prompt_tokens BIGINT NOT NULL,
                    completion_tokens BIGINT NOT NULL,
                    cost_usd DOUBLE PRECISION NOT NULL,
                    saved_usd DOUBLE PRECISION NOT NULL,
                    errors BIGINT NOT NULL,
                    cache_hits BIGINT NOT NULL,
                    PRIMARY KEY (hour, key_id, team_id, model, route, upstream)
                )
                """,
                "CREATE INDEX usage_rollups_key_hour ON usage_rollups (key_id, hour)",
                MigrationSQL.backfillRollups(hour: "floor(time / 3600) * 3600"),
                "CREATE TABLE budget_alerts (subject TEXT NOT NULL, period_start DOUBLE PRECISION NOT NULL, sent_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (subject, period_start))",
            ]
        ),
        Migration(
            version: 11,
            name: "budget reservations of calls in flight, by instance, expiring",
            sqlite: [
                """
                CREATE TABLE budget_reservations (
                    request_id TEXT NOT NULL,
                    instance_id TEXT NOT NULL,
                    key_id TEXT NOT NULL,
                    amount_usd REAL NOT NULL,
                    expires_at REAL NOT NULL,
                    PRIMARY KEY (instance_id, request_id)
                )
                """,
                "CREATE INDEX budget_reservations_key ON budget_reservations (key_id, expires_at)",
            ],
            postgres: [
                """
                CREATE TABLE budget_reservations (
                    request_id TEXT NOT NULL,
                    instance_id TEXT NOT NULL,
                    key_id TEXT NOT NULL,
                    amount_usd DOUBLE PRECISION NOT NULL,
                    expires_at DOUBLE PRECISION NOT NULL,
                    PRIMARY KEY (instance_id, request_id)
                )
                """,
                "CREATE INDEX budget_reservations_key ON budget_reservations (key_id, expires_at)",
            ]
        ),
        Migration(
            version: 12,
            name: "keys that may overflow to hosted upstreams, and their priority class",
            sqlite: [
                "ALTER TABLE api_keys ADD COLUMN allow_overflow INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE api_keys ADD COLUMN priority TEXT NOT NULL DEFAULT 'interactive'",
            ],
            postgres: [
                "ALTER TABLE api_keys ADD COLUMN allow_overflow BOOLEAN NOT NULL DEFAULT FALSE",
                "ALTER TABLE api_keys ADD COLUMN priority TEXT NOT NULL DEFAULT 'interactive'",
            ]
        ),
        Migration(
            version: 13,
            name: "usage records say whether the call overflowed to a hosted upstream, and rollups count them",
            // Every record held before says no, so the rollups need no backfill.
            sqlite: [
                "ALTER TABLE usage_records ADD COLUMN overflowed INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE usage_rollups ADD COLUMN overflow_requests INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE usage_rollups ADD COLUMN overflow_cost_usd REAL NOT NULL DEFAULT 0",
            ],
            postgres: [
                "ALTER TABLE usage_records ADD COLUMN overflowed BOOLEAN NOT NULL DEFAULT FALSE",
                "ALTER TABLE usage_rollups ADD COLUMN overflow_requests BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE usage_rollups ADD COLUMN overflow_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0",
            ]
        ),
    ]
}

/// Statements shared by both backends' migration runners.
enum MigrationSQL {
    /// The spend of every key so far, from the records still held; from then on each inserted batch adds its own.
    static let backfillKeySpend = """
        INSERT INTO key_spend (key_id, spent_usd)
        SELECT key_id, SUM(cost_usd) FROM usage_records WHERE key_id IS NOT NULL GROUP BY key_id
        """

    /// Rollups of the records held when rollups began; from then on each inserted batch adds its own.
    static func backfillRollups(hour: String) -> String {
        """
        INSERT INTO usage_rollups (hour, key_id, team_id, model, route, upstream, requests, prompt_tokens,
            completion_tokens, cost_usd, saved_usd, errors, cache_hits)
        SELECT \(hour) AS h, COALESCE(u.key_id, ''), COALESCE(k.team_id, ''), COALESCE(u.model, ''), u.route,
            COALESCE(u.upstream, ''), COUNT(*), SUM(u.prompt_tokens), SUM(u.completion_tokens), SUM(u.cost_usd),
            SUM(u.saved_usd), SUM(CASE WHEN u.status >= 400 OR u.error_code IS NOT NULL THEN 1 ELSE 0 END),
            SUM(CASE WHEN u.cache_hit THEN 1 ELSE 0 END)
        FROM usage_records u LEFT JOIN api_keys k ON k.id = u.key_id
        GROUP BY h, COALESCE(u.key_id, ''), COALESCE(k.team_id, ''), COALESCE(u.model, ''), u.route, COALESCE(u.upstream, '')
        """
    }

    static let createVersionTable = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at DOUBLE PRECISION NOT NULL
        )
        """
}
