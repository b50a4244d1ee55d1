import SQLiteNIO

extension SQLiteConnection {
    /// Runs one statement to completion, even when the calling task has been cancelled.
    ///
    /// sqlite-nio's async `query` silently skips its work for a cancelled task. Inside a transaction that would
    /// strand the shared connection: a skipped `ROLLBACK` leaves the `BEGIN` open and every later `BEGIN` fails.
    /// Statements are short (lock waits are bounded by the busy timeout), so finishing them is always safe.
    @discardableResult
    func execute(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        try await self.query(sql, binds).get()
    }

    /// Closes the handle even when the calling task has been cancelled (a service group cancels `run()` at
    /// shutdown); the async `close()` would skip the work, leaking the handle and its file locks.
    func closeToCompletion() async throws {
        try await self.close().get()
    }
}
