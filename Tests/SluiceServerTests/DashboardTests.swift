import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SluiceCore
import SluiceStore
import Synchronization
import Testing

@testable import SluiceServer

@Suite("Dashboard sessions")
struct DashboardSessionTests {
    final class TestClock: Sendable {
        let value = Mutex<Double>(1000)
        func advance(_ seconds: Double) { value.withLock { $0 += seconds } }
    }

    @Test func sessionsExpireAfterTwelveHours() throws {
        let clock = TestClock()
        let sessions = DashboardSessions(masterKey: "master", now: { clock.value.withLock { $0 } })
        let token = try #require(sessions.create())
        #expect(sessions.isValid(token))
        #expect(!sessions.isValid(token + "0"))
        #expect(!sessions.isValid(nil))
        #expect(!sessions.isValid(""))
        clock.advance(Double(DashboardSessions.lifetime) + 1)
        #expect(!sessions.isValid(token))
    }

    /// Any instance with the same master key accepts a session; another master key, or a forged one, does not.
    @Test func sessionsAreSignedWithTheMasterKey() throws {
        let clock = TestClock()
        let here = DashboardSessions(masterKey: "master", now: { clock.value.withLock { $0 } })
        let elsewhere = DashboardSessions(masterKey: "master", now: { clock.value.withLock { $0 } })
        let rotated = DashboardSessions(masterKey: "new master", now: { clock.value.withLock { $0 } })
        let token = try #require(here.create())
        #expect(elsewhere.isValid(token))
        #expect(!rotated.isValid(token))
        #expect(DashboardSessions(masterKey: nil, now: { 1000 }).create() == nil)
        #expect(!DashboardSessions(masterKey: nil, now: { 1000 }).isValid(token))

        // Changing any part breaks the signature: a later expiry, another nonce, a truncated MAC.
        let parts = token.split(separator: ".").map(String.init)
        #expect(parts.count == 4 && parts[0] == "v1")
        let later = [parts[0], String(Int(parts[1])! + 3600), parts[2], parts[3]].joined(separator: ".")
        #expect(!here.isValid(later))
        let otherNonce = [parts[0], parts[1], String(repeating: "0", count: 32), parts[3]].joined(separator: ".")
        #expect(!here.isValid(otherNonce))
        #expect(!here.isValid(String(token.dropLast(2))))
        #expect(!here.isValid(token.replacingOccurrences(of: "v1.", with: "v2.")))
        #expect(here.create() != token)
    }

    @Test func signingOutEndsTheSessionAndTheTableStaysBounded() throws {
        let clock = TestClock()
        let sessions = DashboardSessions(masterKey: "master", capacity: 3, now: { clock.value.withLock { $0 } })
        let tokens = try (0..<5).map { _ in try #require(sessions.create()) }
        sessions.end(tokens[0])
        #expect(!sessions.isValid(tokens[0]))
        #expect(sessions.isValid(tokens[1]))
        sessions.end("v1.not.a.token")
        #expect(sessions.endedCount == 1)
        for token in tokens.dropFirst() { sessions.end(token) }
        #expect(sessions.endedCount == 3)
        // Ended sessions are forgotten once they would have expired anyway.
        clock.advance(Double(DashboardSessions.lifetime) + 1)
        sessions.end(sessions.create())
        #expect(sessions.endedCount == 1)
    }

    /// Signing out on one instance ends the session on every instance sharing the store, at once.
    @Test func signingOutReachesEveryInstanceThroughTheStore() async throws {
        let clock = TestClock()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = SQLiteStore(path: ":memory:", logger: logger)
        try await store.migrate()
        let here = DashboardSessions(masterKey: "master", store: store, now: { clock.value.withLock { $0 } })
        let elsewhere = DashboardSessions(masterKey: "master", store: store, now: { clock.value.withLock { $0 } })
        let token = try #require(here.create())
        let other = try #require(here.create())
        #expect(try await elsewhere.isLive(token, logger: logger))
        try await here.signOut(token)
        #expect(try await !elsewhere.isLive(token, logger: logger))
        #expect(try await !here.isLive(token, logger: logger))
        #expect(try await elsewhere.isLive(other, logger: logger))
        // Nothing that is not a session of this master key reaches the store.
        try await here.signOut("v1.not.a.token")
        #expect(try await !elsewhere.isLive(nil, logger: logger))
        try await store.close()
    }

    /// A session that may have been ended elsewhere is not taken on trust when the store cannot be asked.
    @Test func aSessionIsNotTakenOnTrustWhenTheStoreIsDown() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = SQLiteStore(path: ":memory:", logger: logger)
        try await store.migrate()
        let sessions = DashboardSessions(masterKey: "master", store: store, now: { 1000 })
        let token = try #require(sessions.create())
        try await store.close()
        await #expect(throws: (any Error).self) { try await sessions.isLive(token, logger: logger) }
    }
}

@Suite("Dashboard routes", .timeLimit(.minutes(1)))
struct DashboardRouteTests {
    /// Characters a form must percent-encode, so the login decodes the body rather than reading it raw.
    static let master = "master key+/=&ü"
    static let now: Double = 1_700_000_000

    var loginBody: ByteBuffer {
        let encoded = Self.master.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        return ByteBuffer(string: "key=\(encoded)")
    }

    let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    /// Runs `body` against an app with an in-memory SQLite store holding three usage records.
    func withApp(
        master: String? = Self.master, metrics: GatewayMetrics = GatewayMetrics(),
        _ body: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = SQLiteStore(path: ":memory:", logger: logger)
        do {
            try await store.migrate()
            try await store.insertUsage((0..<3).map { usageRecord($0, time: Self.now - 60) })
            var configuration = GatewayConfiguration()
            configuration.masterKey = master
            configuration.retentionDays = 0
            let app = try buildApplication(
                configuration: configuration, logger: logger,
                dependencies: .init(
                    upstreams: [FakeUpstream(.answer("hello"))], recorder: CollectingRecorder(), store: .given(store), metrics: metrics,
                    now: { Self.now }))
            try await app.test(.router) { client in try await body(client) }
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    /// Signs in and returns the `Cookie` header value.
    func signIn(_ client: some TestClientProtocol) async throws -> String {
        try await client.execute(uri: "/dashboard/login", method: .post, headers: form, body: loginBody) { response in
            #expect(response.status == .seeOther)
            #expect(response.headers[.location] == "/dashboard")
            let setCookie = try #require(response.headers[.setCookie])
            return try #require(setCookie.split(separator: ";").first.map(String.init))
        }
    }

    @Test func theLoginPageNeedsNoKeyAndCarriesTheCSP() async throws {
        try await withApp { client in
            try await client.execute(uri: "/dashboard", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                #expect(response.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
                #expect(response.headers[.cacheControl] == "no-store")
                let page = String(buffer: response.body)
                #expect(page.contains(#"action="/dashboard/login""#))
                #expect(!page.contains("data-kpi"))
                // No inline script or style: the CSP would block it.
                #expect(!page.contains("<script>") && !page.contains("<style") && !page.contains("style="))
            }
        }
    }

    @Test func aWrongKeyIs401AndCounted() async throws {
        let metrics = GatewayMetrics()
        try await withApp(metrics: metrics) { client in
            try await client.execute(
                uri: "/dashboard/login", method: .post, headers: form, body: ByteBuffer(string: "key=master-secret-guess")
            ) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.setCookie] == nil)
                #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
                let page = String(buffer: response.body)
                #expect(page.contains("not the master key"))
                #expect(!page.contains("master-secret-guess"))
            }
        }
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains(#"sluice_auth_failures_total{reason="invalid"} 1"#))
    }

    @Test func loginAttemptsAreLimitedPerClient() async throws {
        try await withApp { client in
            for _ in 0..<10 {
                try await client.execute(
                    uri: "/dashboard/login", method: .post, headers: form, body: ByteBuffer(string: "key=guess")
                ) { #expect($0.status == .unauthorized) }
            }
            // Even the right key waits: guessing must not get cheaper by interleaving a known answer.
            try await client.execute(uri: "/dashboard/login", method: .post, headers: form, body: loginBody) { response in
                #expect(response.status == .tooManyRequests)
                #expect(response.headers[.setCookie] == nil)
            }
        }
    }

    @Test func withoutAMasterKeyNobodyCanSignIn() async throws {
        try await withApp(master: nil) { client in
            try await client.execute(uri: "/dashboard/login", method: .post, headers: form, body: ByteBuffer(string: "key=")) { response in
                #expect(response.status == .unauthorized)
                #expect(String(buffer: response.body).contains("--master-key"))
            }
        }
    }

    @Test func theRightKeySetsAStrictHttpOnlyCookie() async throws {
        try await withApp { client in
            try await client.execute(uri: "/dashboard/login", method: .post, headers: form, body: loginBody) { response in
                #expect(response.status == .seeOther)
                let setCookie = try #require(response.headers[.setCookie])
                let attributes = setCookie.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
                #expect(attributes[0].hasPrefix("sluice_session=v1."))
                #expect(attributes.contains("HttpOnly"))
                #expect(attributes.contains("SameSite=Strict"))
                #expect(attributes.contains("Path=/"))
                #expect(attributes.contains("Max-Age=43200"))
                // Plain HTTP here: a Secure cookie would never be sent back.
                #expect(!attributes.contains("Secure"))
            }
        }
    }

    @Test func theSessionOpensTheDashboardAndTheAdminAPI() async throws {
        try await withApp { client in
            try await client.execute(uri: "/admin/usage", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            let cookie = try await signIn(client)
            try await client.execute(uri: "/dashboard", method: .get, headers: [.cookie: cookie]) { response in
                #expect(response.status == .ok)
                let page = String(buffer: response.body)
                for kpi in ["requests", "tokens", "cost", "savings", "cache_hit_rate", "error_rate", "p95_latency"] {
                    #expect(page.contains(#"data-kpi="\#(kpi)""#))
                }
                #expect(page.contains(#"<script src="/dashboard/app.js" defer></script>"#))
            }
            try await client.execute(uri: "/admin/usage?since=24h&by=day", method: .get, headers: [.cookie: cookie]) { response in
                #expect(response.status == .ok)
                let report = try JSONDecoder().decode(UsageReport.self, from: response.body)
                #expect(report.totals.requests == 3)
                #expect(report.groups.count == 1)
            }
            try await client.execute(uri: "/admin/usage/recent?limit=2", method: .get, headers: [.cookie: cookie]) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains(#""request_id":"req-"#))
            }
            // A forged or stale cookie is no session.
            try await client.execute(
                uri: "/admin/usage", method: .get, headers: [.cookie: "sluice_session=" + String(repeating: "a", count: 64)]
            ) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test func cookieAuthenticatedChangesNeedTheCSRFHeader() async throws {
        try await withApp { client in
            let cookie = try await signIn(client)
            let create = ByteBuffer(string: #"{"name":"from-dashboard","rpm":5}"#)
            try await client.execute(uri: "/admin/keys", method: .post, headers: [.cookie: cookie, .contentType: "application/json"], body: create) {
                response in
                #expect(response.status == .forbidden)
                #expect(String(buffer: response.body).contains("csrf_header_missing"))
            }
            let id = try await client.execute(
                uri: "/admin/keys", method: .post,
                headers: [.cookie: cookie, .contentType: "application/json", .sluiceCSRF: "1"], body: create
            ) { response in
                #expect(response.status == .created)
                let created = try JSONDecoder().decode(APIKeyView.self, from: response.body)
                #expect(created.key?.hasPrefix("sk-sluice-") == true)
                return created.id
            }
            try await client.execute(uri: "/admin/keys/\(id)", method: .delete, headers: [.cookie: cookie, .sluiceCSRF: "1"]) { response in
                #expect(response.status == .noContent)
            }
            // The master key in a header is not a browser session: no extra header needed.
            try await client.execute(
                uri: "/admin/keys", method: .post,
                headers: [.authorization: "Bearer \(Self.master)", .contentType: "application/json"], body: create
            ) { response in
                #expect(response.status == .created)
            }
        }
    }

    /// A session cookie is not taken on trust while the store that knows about sign-outs cannot be asked.
    @Test func aSessionMeets503WhileTheStoreIsDown() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = FakeUsageStore()
        var configuration = GatewayConfiguration()
        configuration.masterKey = Self.master
        let app = try buildApplication(
            configuration: configuration, logger: logger,
            dependencies: .init(
                upstreams: [FakeUpstream(.answer("hello"))], recorder: CollectingRecorder(), store: .given(store), now: { Self.now }))
        try await app.test(.router) { client in
            let cookie = try await signIn(client)
            store.setFailing(true)
            for uri in ["/admin/keys", "/dashboard"] {
                try await client.execute(uri: uri, method: .get, headers: [.cookie: cookie]) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(String(buffer: response.body).contains("store_unavailable"))
                }
            }
            // Signing out still drops the cookie in this browser.
            try await client.execute(uri: "/dashboard/logout", method: .post, headers: [.cookie: cookie]) { response in
                #expect(response.status == .seeOther)
                #expect(response.headers[.setCookie]?.contains("Max-Age=0") == true)
            }
            store.setFailing(false)
            try await client.execute(uri: "/admin/keys", method: .get, headers: [.cookie: cookie]) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test func theMasterKeyInAHeaderAlsoOpensTheDashboard() async throws {
        try await withApp { client in
            try await client.execute(uri: "/dashboard", method: .get, headers: [.xAPIKey: Self.master]) { response in
                #expect(String(buffer: response.body).contains("data-kpi"))
            }
            try await client.execute(uri: "/dashboard", method: .get, headers: [.xAPIKey: "not-it"]) { response in
                #expect(response.status == .ok)
                #expect(!String(buffer: response.body).contains("data-kpi"))
            }
        }
    }

    @Test(arguments: [("/dashboard/app.css", "text/css; charset=utf-8"), ("/dashboard/app.js", "text/javascript; charset=utf-8")])
    func assetsAreServedWithTheirTypes(_ path: String, _ type: String) async throws {
        try await withApp { client in
            try await client.execute(uri: path, method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == type)
                #expect(response.headers[.cacheControl] == "no-store")
                #expect(response.headers[.xContentTypeOptions] == "nosniff")
                #expect(response.body.readableBytes > 1000)
                // Data goes into the page as text, never as markup.
                #expect(!String(buffer: response.body).contains("innerHTML"))
            }
        }
    }

    @Test func logoutEndsTheSession() async throws {
        try await withApp { client in
            let cookie = try await signIn(client)
            try await client.execute(uri: "/dashboard/logout", method: .post, headers: [.cookie: cookie]) { response in
                #expect(response.status == .seeOther)
                #expect(response.headers[.location] == "/dashboard")
                let setCookie = try #require(response.headers[.setCookie])
                #expect(setCookie.hasPrefix("sluice_session=;"))
                #expect(setCookie.contains("Max-Age=0"))
            }
            try await client.execute(uri: "/admin/usage", method: .get, headers: [.cookie: cookie]) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/dashboard", method: .get, headers: [.cookie: cookie]) { response in
                #expect(!String(buffer: response.body).contains("data-kpi"))
            }
        }
    }

    @Test func aWrongMethodOnADashboardPathIs405() async throws {
        try await withApp { client in
            try await client.execute(uri: "/dashboard/login", method: .get) { response in
                #expect(response.status == .methodNotAllowed)
            }
        }
    }
}
