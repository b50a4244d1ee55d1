import Foundation
import PostgresNIO

extension PostgresStore {
    /// Parses `postgres://user:password@host:port/database?sslmode=…` into a client configuration.
    ///
    /// User and password may be percent-encoded. `sslmode` follows libpq: `disable`, `allow`/`prefer` (the default:
    /// TLS when the server offers it, unverified), `require` (TLS, unverified), `verify-ca`, `verify-full`.
    /// `?host=/path/to/socket/dir` connects over a Unix socket. `connect_timeout` (whole seconds, default 10) bounds
    /// both opening a connection and, in ``PostgresStore``, waiting for one from the pool.
    /// Errors never repeat the URL, which holds the password.
    public static func configuration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
              let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql"
        else {
            throw StoreError("the PostgreSQL URL is malformed; expected postgres://user:password@host:port/database")
        }
        guard let username = components.user, !username.isEmpty else {
            throw StoreError("the PostgreSQL URL has no user name")
        }
        let password = components.password
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let parameters = Dictionary(
            (components.queryItems ?? []).map { ($0.name.lowercased(), $0.value ?? "") }, uniquingKeysWith: { _, last in last })

        var connectTimeout = Duration.seconds(10)
        if let text = parameters["connect_timeout"] {
            guard let seconds = Int(text), seconds > 0 else {
                throw StoreError("connect_timeout in the PostgreSQL URL must be a positive number of seconds")
            }
            connectTimeout = .seconds(seconds)
        }

        if let socketDirectory = parameters["host"], socketDirectory.hasPrefix("/") {
            let port = components.port ?? 5432
            var configuration = PostgresClient.Configuration(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password,
                database: database.isEmpty ? nil : database)
            configuration.options.connectTimeout = connectTimeout
            Self.applyApplicationName(parameters, to: &configuration)
            return configuration
        }
        guard var host = components.host, !host.isEmpty else {
            throw StoreError("the PostgreSQL URL has no host")
        }
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }

        let tls: PostgresClient.Configuration.TLS
        switch parameters["sslmode"]?.lowercased() ?? "prefer" {
        case "disable":
            tls = .disable
        case "allow", "prefer":
            tls = .prefer(Self.tlsConfiguration(verification: .none))
        case "require":
            tls = .require(Self.tlsConfiguration(verification: .none))
        case "verify-ca":
            tls = .require(Self.tlsConfiguration(verification: .noHostnameVerification))
        case "verify-full":
            tls = .require(Self.tlsConfiguration(verification: .fullVerification))
        default:
            throw StoreError("unknown sslmode in the PostgreSQL URL; use disable, prefer, require, verify-ca or verify-full")
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: username, password: password,
            database: database.isEmpty ? nil : database, tls: tls)
        configuration.options.connectTimeout = connectTimeout
        Self.applyApplicationName(parameters, to: &configuration)
        return configuration
    }

    private static func applyApplicationName(_ parameters: [String: String], to configuration: inout PostgresClient.Configuration) {
        if let name = parameters["application_name"], !name.isEmpty {
            configuration.options.additionalStartupParameters.append(("application_name", name))
        }
    }

    private static func tlsConfiguration(verification: CertificateVerification) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = verification
        return tls
    }
}
