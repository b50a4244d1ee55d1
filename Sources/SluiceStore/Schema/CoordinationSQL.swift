/// SQL of the instance registry both stores share; the upsert syntax is the same in SQLite and PostgreSQL.
enum InstanceSQL {
    /// Rows of instances silent this long are deleted by the next report: they died without saying goodbye.
    static let forgetAfter: Double = 3_600

    static func report(id: String, keyRevision: Int64, at time: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "INSERT INTO gateway_instances (id, key_revision, reported_at) VALUES (")
        statement.bind(id)
        statement.append(", ")
        statement.bind(Int(keyRevision))
        statement.append(", ")
        statement.bind(time)
        statement.append(") ON CONFLICT (id) DO UPDATE SET key_revision = excluded.key_revision, reported_at = excluded.reported_at")
        return statement
    }

    static func forgetSilent(before time: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "DELETE FROM gateway_instances WHERE reported_at < ")
        statement.bind(time)
        return statement
    }

    static func remove(id: String, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "DELETE FROM gateway_instances WHERE id = ")
        statement.bind(id)
        return statement
    }

    static func behind(keyRevision: Int64, reportedSince since: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT COUNT(*) FROM gateway_instances WHERE reported_at >= ")
        statement.bind(since)
        statement.append(" AND key_revision < ")
        statement.bind(Int(keyRevision))
        return statement
    }
}

/// SQL of the ended-session list both stores share: dashboard sign-outs, so every instance refuses the token.
enum SessionSQL {
    static func end(digest: String, expiresAt: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "INSERT INTO ended_sessions (digest, expires_at) VALUES (")
        statement.bind(digest)
        statement.append(", ")
        statement.bind(expiresAt)
        statement.append(") ON CONFLICT (digest) DO NOTHING")
        return statement
    }

    /// Rows of sessions that have expired anyway: no token they stand for is accepted any more.
    static func forgetExpired(before time: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "DELETE FROM ended_sessions WHERE expires_at < ")
        statement.bind(time)
        return statement
    }

    static func isEnded(digest: String, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT COUNT(*) FROM ended_sessions WHERE digest = ")
        statement.bind(digest)
        return statement
    }
}

/// SQL of the shared rate-limit buckets both stores use; the lease arithmetic itself is ``RateLeaseArithmetic``.
enum RateBucketSQL {
    static func live(reportedSince since: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT COUNT(*) FROM gateway_instances WHERE reported_at >= ")
        statement.bind(since)
        return statement
    }

    /// Buckets that have refilled completely: a missing row reads as a full bucket, so deleting them changes nothing.
    static func forgetFull(now: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "DELETE FROM rate_buckets WHERE tokens + (")
        statement.bind(now)
        statement.append(" - updated_at) * refill_per_second >= capacity")
        return statement
    }
}
