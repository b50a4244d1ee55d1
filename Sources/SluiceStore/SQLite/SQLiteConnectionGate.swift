import SQLiteNIO

/// Hands one SQLite connection to one task at a time, opening it on first use.
///
/// sqlite-nio runs every statement as its own job on a thread pool, so two tasks sharing a connection would
/// interleave statements inside each other's transactions. Waiters queue in FIFO order; the wait is not
/// cancellable because every holder finishes in bounded time (the busy timeout bounds lock waits).
actor SQLiteConnectionGate {
    private enum State {
        case idle
        case open(SQLiteConnection)
        case closed
    }

    private var state: State = .idle
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private let opener: @Sendable () async throws -> SQLiteConnection

    init(opener: @escaping @Sendable () async throws -> SQLiteConnection) {
        self.opener = opener
    }

    /// Waits for exclusive use of the connection; pair every successful call with `release()`.
    func acquire() async throws -> SQLiteConnection {
        if self.held {
            await withCheckedContinuation { self.waiters.append($0) }
        } else {
            self.held = true
        }
        do {
            switch self.state {
            case .open(let connection):
                return connection
            case .closed:
                throw StoreError("the SQLite store is closed")
            case .idle:
                // Other callers queue behind `held` while this suspends.
                let connection = try await self.opener()
                self.state = .open(connection)
                return connection
            }
        } catch {
            self.release()
            throw error
        }
    }

    /// Passes the connection to the next waiter, if any.
    func release() {
        if self.waiters.isEmpty {
            self.held = false
        } else {
            // Ownership moves straight to the waiter; `held` stays true.
            self.waiters.removeFirst().resume()
        }
    }

    /// Closes the connection after current users finish; later `acquire()` calls throw. Idempotent.
    func close() async throws {
        if self.held {
            await withCheckedContinuation { self.waiters.append($0) }
        } else {
            self.held = true
        }
        defer { self.release() }
        if case .open(let connection) = self.state {
            self.state = .closed
            try await connection.closeToCompletion()
        }
        self.state = .closed
    }
}
