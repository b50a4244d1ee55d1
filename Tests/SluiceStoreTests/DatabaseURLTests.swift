import Foundation
import Logging
import SluiceStore
import Testing

struct DatabaseURLTests {
    @Test(arguments: [
        ("sqlite:/var/lib/sluice/sluice.db", DatabaseURL.Kind.sqlite(path: "/var/lib/sluice/sluice.db")),
        ("sqlite:///var/lib/sluice/sluice.db", .sqlite(path: "/var/lib/sluice/sluice.db")),
        ("sqlite://sluice.db", .sqlite(path: "sluice.db")),
        ("sqlite:data/sluice.db", .sqlite(path: "data/sluice.db")),
        ("sqlite::memory:", .sqlite(path: ":memory:")),
        ("SQLite:Mixed.db", .sqlite(path: "Mixed.db")),
        ("sqlite:", .sqlite(path: "")),
        ("postgres://u:p@db:5432/sluice", .postgres),
        ("postgresql://u@db/sluice", .postgres),
        ("POSTGRES://db/sluice", .postgres),
    ])
    func kindOfKnownURLs(_ url: String, _ kind: DatabaseURL.Kind) {
        #expect(DatabaseURL.kind(of: url) == kind)
    }

    @Test(arguments: ["", "mysql://root:pw@db/x", "/var/lib/sluice.db", "sluice.db", "postgres:/db", "sqlitex:foo", "http://db"])
    func kindOfUnknownURLs(_ url: String) {
        #expect(DatabaseURL.kind(of: url) == nil)
    }

    @Test(arguments: [
        ("postgres://sluice:s3cret@db:5432/sluice", "postgres://sluice:***@db:5432/sluice"),
        ("postgresql://sluice:s3cret@db/sluice?sslmode=require", "postgresql://sluice:***@db/sluice?sslmode=require"),
        // A raw @ in the password: the last @ of the authority ends it.
        ("postgres://sluice:p@ss@word@db/sluice", "postgres://sluice:***@db/sluice"),
        ("postgres://sluice:p%40ss@db/sluice", "postgres://sluice:***@db/sluice"),
        // An @ in the query does not count.
        ("postgres://sluice:s3cret@db/sluice?application_name=a@b", "postgres://sluice:***@db/sluice?application_name=a@b"),
        ("postgres://sluice:@db/sluice", "postgres://sluice:***@db/sluice"),
        // No password: nothing to hide.
        ("postgres://sluice@db/sluice", "postgres://sluice@db/sluice"),
        ("postgres://db:5432/sluice", "postgres://db:5432/sluice"),
        ("postgres://db/sluice?application_name=a@b", "postgres://db/sluice?application_name=a@b"),
        ("sqlite:/var/lib/user:pw@host.db", "sqlite:/var/lib/user:pw@host.db"),
    ])
    func redactedHidesPasswords(_ url: String, _ expected: String) {
        #expect(DatabaseURL.redacted(url) == expected)
    }

    /// A raw `/`, `?` or `#` in a password ends the apparent authority early; the password must still not show.
    @Test(arguments: ["pa/ss", "pa?ss", "pa#ss", "p/a@s?s"])
    func redactedHidesPasswordsWithDelimiters(_ password: String) {
        let redacted = DatabaseURL.redacted("postgres://sluice:\(password)@db:5432/sluice")
        #expect(!redacted.contains(password))
        #expect(!redacted.contains("ss"))
        #expect(redacted.hasPrefix("postgres://sluice:***@"))
    }

    @Test func makeStoreRejectsUnsupportedURLsWithoutEchoingThem() {
        let url = "mysql://root:hunter2@db.internal:3306/sluice"
        let error = #expect(throws: StoreError.self) { try makeStore(url: url, logger: testLogger) }
        let description = error?.description ?? ""
        #expect(!description.contains("hunter2"))
        #expect(!description.contains("db.internal"))
        #expect(!description.contains(url))
        #expect(description.contains("sqlite:PATH"))
    }

    @Test func makeStoreRejectsAnEmptySQLitePath() {
        #expect(throws: StoreError.self) { try makeStore(url: "sqlite:", logger: testLogger) }
        #expect(throws: StoreError.self) { try makeStore(url: "sqlite://", logger: testLogger) }
    }

    @Test func makeStoreChoosesTheBackendWithoutConnecting() throws {
        let sqlite = try makeStore(url: "sqlite:/nonexistent-directory/sluice.db", logger: testLogger)
        #expect((sqlite as? SQLiteStore)?.path == "/nonexistent-directory/sluice.db")
        let postgres = try makeStore(url: "postgres://u:p@127.0.0.1:1/db", logger: testLogger)
        #expect(postgres is PostgresStore)
    }

    @Test(arguments: [
        "postgres://:hunter2@db/sluice",  // no user name
        "postgres://sluice:hunter2@/sluice",  // no host
        "postgres://sluice:hunter2@db/sluice?sslmode=sometimes",
        "postgres://sluice:hunter2@db/sluice?connect_timeout=0",
        "postgres://sluice:hunter2@db/sluice?connect_timeout=soon",
        "postgres://sluice:hunter2@db:notaport/sluice",
    ])
    func badPostgresURLsFailWithoutEchoingThePassword(_ url: String) {
        let error = #expect(throws: StoreError.self) { try makeStore(url: url, logger: testLogger) }
        #expect(error?.description.contains("hunter2") == false)
    }

    @Test func postgresConfigurationFromURL() throws {
        let configuration = try PostgresStore.configuration(
            url: "postgresql://sluice%2Badmin:p%40ss%2Fw0rd@[::1]:6543/sluice%20db?sslmode=disable&connect_timeout=3")
        #expect(configuration.username == "sluice+admin")
        #expect(configuration.password == "p@ss/w0rd")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 6543)
        #expect(configuration.database == "sluice db")
        #expect(configuration.options.connectTimeout == .seconds(3))

        let defaults = try PostgresStore.configuration(url: "postgres://sluice@db.internal/sluice")
        #expect(defaults.host == "db.internal")
        #expect(defaults.port == 5432)
        #expect(defaults.password == nil)
        #expect(defaults.options.connectTimeout == .seconds(10))

        let noDatabase = try PostgresStore.configuration(url: "postgres://sluice:pw@db")
        #expect(noDatabase.database == nil)

        let socket = try PostgresStore.configuration(
            url: "postgres://sluice:pw@localhost:5433/sluice?host=/var/run/postgresql&connect_timeout=4")
        #expect(socket.unixSocketPath == "/var/run/postgresql/.s.PGSQL.5433")
        #expect(socket.host == nil)
        #expect(socket.options.connectTimeout == .seconds(4))
    }

    @Test func postgresStoreWaitsForConnectionsAsLongAsItsConnectTimeout() throws {
        let store = try PostgresStore(url: "postgres://u:p@127.0.0.1:1/db?connect_timeout=7", logger: testLogger)
        #expect(store.connectionWaitTimeout == .seconds(7))
    }
}
