/// SQL of stored Responses API answers, common to both stores.
///
/// Each operation is one statement in autocommit: saving or pruning responses takes no lock on the tables the
/// usage writer and key changes use (`usage_records`, `key_spend`, `api_keys`), and on SQLite it holds the file's
/// write lock only for that statement, so a large conversation never delays a usage batch for long.
enum ResponseSQL {
    static let columns = ["id", "key_id", "created_at", "expires_at", "model", "input_items", "output_items", "response"]
    static let columnList = columns.joined(separator: ", ")

    /// A plain insert: ids are made by the gateway, so an existing one is a bug to surface (a constraint error),
    /// not a row to overwrite, which could hand one key's conversation to another.
    static func insert(_ stored: StoredResponse, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "INSERT INTO stored_responses (\(columnList)) VALUES (")
        let values: [SQLValue] = [
            .text(stored.id), stored.keyID.map(SQLValue.text) ?? .null, .double(stored.createdAt),
            .double(stored.expiresAt), .text(stored.model), .text(stored.inputItems), .text(stored.outputItems),
            .text(stored.response),
        ]
        statement.bindList(values)
        statement.append(")")
        return statement
    }

    /// The row if it exists, belongs to `keyID` and has not expired at `now`, in `columns` order. The three misses
    /// look alike on purpose: the caller answers 404 to each, so another key cannot learn that an id exists.
    static func select(id: String, keyID: String?, now: Double, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "SELECT \(columnList) FROM stored_responses WHERE id = ")
        statement.bind(id)
        appendOwner(keyID, to: &statement)
        statement.append(" AND expires_at > ")
        statement.bind(now)
        return statement
    }

    /// Deletes the row if it belongs to `keyID`; returns one row per deleted response.
    static func delete(id: String, keyID: String?, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect, "DELETE FROM stored_responses WHERE id = ")
        statement.bind(id)
        appendOwner(keyID, to: &statement)
        statement.append(" RETURNING id")
        return statement
    }

    /// One bounded statement, soonest-expired first, like ``UsageSQL/delete(before:limit:dialect:)``.
    static func deleteExpired(before: Double, limit: Int, dialect: SQLDialect) -> SQLStatement {
        var statement = SQLStatement(dialect)
        if dialect == .postgres { statement.append("WITH deleted AS (") }
        statement.append("DELETE FROM stored_responses WHERE id IN (SELECT id FROM stored_responses WHERE expires_at < ")
        statement.bind(before)
        statement.append(" ORDER BY expires_at LIMIT ")
        statement.bind(max(0, limit))
        statement.append(")")
        if dialect == .postgres { statement.append(" RETURNING 1) SELECT COUNT(*) FROM deleted") }
        return statement
    }

    /// `key_id = x` never matches a NULL row, and `key_id IS NULL` only matches one: an anonymous response is
    /// visible to anonymous callers alone, and a keyed one to its key alone. Two spellings rather than a null-safe
    /// comparison, whose syntax differs between the backends (`IS` and `IS NOT DISTINCT FROM`).
    private static func appendOwner(_ keyID: String?, to statement: inout SQLStatement) {
        if let keyID {
            statement.append(" AND key_id = ")
            statement.bind(keyID)
        } else {
            statement.append(" AND key_id IS NULL")
        }
    }
}
