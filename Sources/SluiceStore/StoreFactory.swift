import Foundation
import Logging
import ServiceLifecycle
import SluiceCore

/// Opens the store named by a `database` setting: `sqlite:PATH` (also `sqlite://PATH`, `sqlite::memory:`) or
/// `postgres://…` / `postgresql://…`.
///
/// Nothing connects yet. The result is also a `Service`: add it to the `ServiceGroup` before the ``UsageWriter``
/// (services shut down in reverse order, so the writer flushes while the store is still open), then call
/// ``GatewayStore/migrate()``. For one-shot commands use ``withGatewayStore(url:logger:_:)``. Errors never
/// repeat the URL, since it may carry a password.
public func makeStore(url: String, logger: Logger) throws -> any GatewayStore & Service {
    switch DatabaseURL.kind(of: url) {
    case .sqlite(let path):
        guard !path.isEmpty else {
            throw StoreError("the SQLite database URL has no path; use sqlite:PATH")
        }
        return SQLiteStore(path: path, logger: logger)
    case .postgres:
        return try PostgresStore(url: url, logger: logger)
    case nil:
        throw StoreError("unsupported database URL; use sqlite:PATH or postgres://user:password@host:port/database")
    }
}

/// Opens the store, runs its background work (PostgreSQL's pool) while `body` uses it, then closes it.
///
/// For commands such as `sluice keys list` that do not run a `ServiceGroup`. Does not migrate.
public func withGatewayStore<Result: Sendable>(
    url: String, logger: Logger, _ body: @Sendable (any GatewayStore) async throws -> Result
) async throws -> Result {
    let store = try makeStore(url: url, logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await store.run() }
        do {
            let result = try await body(store)
            group.cancelAll()
            try? await store.close()
            return result
        } catch {
            group.cancelAll()
            try? await store.close()
            throw error
        }
    }
}

/// Recognises and masks database URLs.
public enum DatabaseURL {
    public enum Kind: Equatable, Sendable {
        case sqlite(path: String)
        case postgres
    }

    /// The backend a URL names, or nil for an unknown scheme.
    public static func kind(of url: String) -> Kind? {
        let lowered = url.lowercased()
        if lowered.hasPrefix("postgres://") || lowered.hasPrefix("postgresql://") {
            return .postgres
        }
        if lowered.hasPrefix("sqlite://") {
            return .sqlite(path: String(url.dropFirst("sqlite://".count)))
        }
        if lowered.hasPrefix("sqlite:") {
            return .sqlite(path: String(url.dropFirst("sqlite:".count)))
        }
        return nil
    }

    /// The URL with any password replaced by `***`, for printing effective configuration and logs.
    public static func redacted(_ url: String) -> String {
        kind(of: url) == .postgres ? CredentialMasking.redacted(url) : url
    }
}
