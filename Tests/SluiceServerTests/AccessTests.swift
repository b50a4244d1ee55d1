import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SluiceCore
import Synchronization
import Testing

@testable import SluiceServer

@Suite("Rate limiter")
struct RateLimiterTests {
    func key(rpm: Int? = nil, tpm: Int? = nil) -> APIKeyRecord {
        var record = IssuedKey(name: "k", now: 0).record
        record.rpm = rpm
        record.tpm = tpm
        return record
    }

    @Test func concurrentRequestsAdmitExactlyTheLimit() async {
        let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 0, now: 0)
        let record = key(rpm: 37)
        let admitted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<500 {
                group.addTask { limiter.admit(clientIP: "10.0.0.1", key: record, now: 0).refusedBy == nil }
            }
            var count = 0
            for await ok in group where ok { count += 1 }
            return count
        }
        #expect(admitted == 37)
    }

    @Test func globalLimitUsesTheBurst() {
        let limiter = RateLimiter(globalRPS: 5, globalBurst: 10, ipRPM: 0, now: 0)
        let admitted = (0..<50).filter { _ in limiter.admit(clientIP: nil, key: nil, now: 0).refusedBy == nil }.count
        #expect(admitted == 10)
        let refused = limiter.admit(clientIP: nil, key: nil, now: 0)
        #expect(refused.refusedBy?.contains("global") == true)
        #expect(refused.retryAfter > 0)
        #expect(limiter.admit(clientIP: nil, key: nil, now: 0.2).refusedBy == nil)
    }

    @Test func ipLimitIsPerAddress() {
        let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 2, now: 0)
        #expect(limiter.admit(clientIP: "a", key: nil, now: 0).refusedBy == nil)
        #expect(limiter.admit(clientIP: "a", key: nil, now: 0).refusedBy == nil)
        #expect(limiter.admit(clientIP: "a", key: nil, now: 0).refusedBy != nil)
        #expect(limiter.admit(clientIP: "b", key: nil, now: 0).refusedBy == nil)
    }

    /// A client refused by its address's limit gets the same `x-ratelimit-*` headers a key's limit gives.
    @Test func ipRefusalCarriesRateLimitHeaders() {
        let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 2, now: 0)
        _ = limiter.admit(clientIP: "a", key: nil, now: 0)
        _ = limiter.admit(clientIP: "a", key: nil, now: 0)
        let refused = limiter.admit(clientIP: "a", key: key(rpm: 100), now: 0)
        #expect(refused.refusedBy != nil)
        let headers = Dictionary(uniqueKeysWithValues: refused.headers.map { ($0.name, $0.value) })
        #expect(headers["x-ratelimit-limit-requests"] == "2")
        #expect(headers["x-ratelimit-remaining-requests"] == "0")
        #expect(headers["x-ratelimit-reset-requests"] != nil)
    }

    @Test func aRefusedRequestUsesUpNoOtherLimit() {
        let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 1, now: 0)
        let record = key(rpm: 2)
        #expect(limiter.admit(clientIP: "a", key: record, now: 0).refusedBy == nil)
        // Refused by the IP limit: the key's second request stays available.
        #expect(limiter.admit(clientIP: "a", key: record, now: 0).refusedBy != nil)
        #expect(limiter.admit(clientIP: "b", key: record, now: 0).refusedBy == nil)
    }

    @Test func tokensPerMinuteAreChargedAfterwards() {
        let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 0, now: 0)
        let record = key(tpm: 100)
        let first = limiter.admit(clientIP: nil, key: record, now: 0)
        #expect(first.refusedBy == nil)
        #expect(first.headers.contains { $0.name == "x-ratelimit-limit-tokens" && $0.value == "100" })
        limiter.chargeTokens(keyID: record.id, tokens: 150, now: 0)
        let refused = limiter.admit(clientIP: nil, key: record, now: 0)
        #expect(refused.refusedBy?.contains("tokens") == true)
        #expect(limiter.admit(clientIP: nil, key: record, now: 31).refusedBy == nil)
    }

    @Test func headersReportRemainingRequests() {
        let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 0, now: 0)
        let record = key(rpm: 3)
        let verdict = limiter.admit(clientIP: nil, key: record, now: 0)
        let headers = Dictionary(verdict.headers.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(headers["x-ratelimit-limit-requests"] == "3")
        #expect(headers["x-ratelimit-remaining-requests"] == "2")
        #expect(headers["x-ratelimit-reset-requests"] == "20s")
    }

    @Test func idleBucketsAreEvicted() {
        let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 60, now: 0)
        for i in 0..<5000 {
            _ = limiter.admit(clientIP: "ip-\(i)", key: nil, now: 0)
        }
        #expect(limiter.trackedBuckets <= 5000)
        // After a minute every bucket has refilled: forgetting them changes no decision.
        limiter.sweep(now: 61)
        #expect(limiter.trackedBuckets == 0)
        // Amortised sweeping keeps memory bounded by the active set while traffic goes on.
        for i in 0..<20_000 {
            _ = limiter.admit(clientIP: "ip-\(i)", key: nil, now: 100 + Double(i))
        }
        #expect(limiter.trackedBuckets < 2 * 1024 + 200)
    }
}

@Suite("Access control and headers")
struct AccessRouteTests {
    static let chat = ByteBuffer(string: #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#)

    let issued = IssuedKey(name: "alice", now: 0, rpm: 2)
    let scoped = IssuedKey(name: "scoped", now: 0, allowedModels: ["qwen2.5"])
    let revoked: IssuedKey = {
        var key = IssuedKey(name: "old", now: 0)
        key.record.revoked = true
        return key
    }()
    let expired = IssuedKey(name: "expired", now: 0, expiresAt: 10)
    let broke = IssuedKey(name: "broke", now: 0, budgetUSD: 0)

    func app(
        auth: GatewayConfiguration.AuthMode = .auto, master: String? = "master-secret-value",
        metrics: GatewayMetrics = GatewayMetrics(), recorder: CollectingRecorder = CollectingRecorder(),
        configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        var configuration = GatewayConfiguration()
        configuration.auth = auth
        configuration.masterKey = master
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return try buildApplication(
            configuration: configuration, logger: logger,
            dependencies: .init(
                upstreams: [FakeUpstream(.answer("hello"))], recorder: recorder, store: .none,
                keys: [issued.record, scoped.record, revoked.record, expired.record, broke.record], metrics: metrics,
                now: { 1_700_000_000 }))
    }

    func code(_ response: TestResponse) -> String? {
        let value = try? JSONDecoder().decode(JSONValue.self, from: response.body)
        guard case .object(let root)? = value, case .object(let error)? = root["error"], case .string(let code)? = error["code"]
        else { return nil }
        return code
    }

    @Test func missingKeyIs401() async throws {
        let metrics = GatewayMetrics()
        try await app(metrics: metrics).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.chat) { response in
                #expect(response.status == .unauthorized)
                #expect(code(response) == "missing_api_key")
            }
        }
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains(#"sluice_auth_failures_total{reason="missing"} 1"#))
    }

    @Test func bearerAndXAPIKeyBothWork() async throws {
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer \(issued.secret)"], body: Self.chat
            ) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.xAPIKey: issued.secret], body: Self.chat
            ) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func theMasterKeyIsAcceptedOnTheAPI() async throws {
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer master-secret-value"], body: Self.chat
            ) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test(arguments: [("wrong", "invalid_api_key"), ("revoked", "invalid_api_key"), ("expired", "invalid_api_key")])
    func badKeysAre401(_ which: String, _ expected: String) async throws {
        let secret =
            switch which {
            case "revoked": revoked.secret
            case "expired": expired.secret
            default: "sk-sluice-" + String(repeating: "x", count: 43)
            }
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer \(secret)"], body: Self.chat
            ) { response in
                #expect(response.status == .unauthorized)
                #expect(code(response) == expected)
                // The presented key never comes back.
                #expect(!String(buffer: response.body).contains(secret))
            }
        }
    }

    @Test func scopedKeyGets403ForOtherModels() async throws {
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer \(scoped.secret)"], body: Self.chat
            ) { response in
                #expect(response.status == .forbidden)
                #expect(code(response) == "model_not_allowed")
            }
        }
    }

    @Test func spentBudgetIs403() async throws {
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer \(broke.secret)"], body: Self.chat
            ) { response in
                #expect(response.status == .forbidden)
                #expect(code(response) == "budget_exceeded")
            }
        }
    }

    @Test func perKeyRPMGives429WithHeaders() async throws {
        let recorder = CollectingRecorder()
        try await app(recorder: recorder).test(.router) { client in
            for remaining in ["1", "0"] {
                try await client.execute(
                    uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer \(issued.secret)"], body: Self.chat
                ) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[HTTPField.Name("x-ratelimit-limit-requests")!] == "2")
                    #expect(response.headers[HTTPField.Name("x-ratelimit-remaining-requests")!] == remaining)
                }
            }
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer \(issued.secret)"], body: Self.chat
            ) { response in
                #expect(response.status == .tooManyRequests)
                #expect(code(response) == "rate_limit_exceeded")
                #expect(response.headers[.retryAfter] == "30")
                #expect(response.headers[HTTPField.Name("x-ratelimit-remaining-requests")!] == "0")
            }
        }
        // Rate-limited requests are accounted too.
        #expect(recorder.all.map(\.status).sorted() == [200, 200, 429])
        #expect(recorder.all.allSatisfy { $0.keyID == issued.record.id })
    }

    @Test func authOffIgnoresKeys() async throws {
        try await app(auth: .off, master: nil).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.chat) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func autoWithoutKeysOrMasterIsOpenAndToleratesDummyKeys() async throws {
        var configuration = GatewayConfiguration()
        configuration.auth = .auto
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try buildApplication(
            configuration: configuration, logger: logger,
            dependencies: .init(upstreams: [FakeUpstream(.answer("hello"))], store: .none, now: { 1_700_000_000 }))
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer ollama"], body: Self.chat) {
                #expect($0.status == .ok)
            }
        }
    }

    @Test func adminNeedsTheMasterKey() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/admin/config", method: .get) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/admin/config", method: .get, headers: [.authorization: "Bearer \(issued.secret)"]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/admin/config", method: .get, headers: [.authorization: "Bearer master-secret-value"]) { response in
                #expect(response.status == .ok)
                #expect(!String(buffer: response.body).contains("master-secret-value"))
            }
        }
    }

    @Test func securityHeadersOnEveryAnswer() async throws {
        try await app(auth: .off, master: nil).test(.router) { client in
            for uri in ["/healthz", "/v1/models", "/nope"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.headers[.xContentTypeOptions] == "nosniff")
                    #expect(response.headers[.xFrameOptions] == "DENY")
                    #expect(response.headers[.referrerPolicy] == "no-referrer")
                    #expect(response.headers[.cacheControl] == "no-store")
                }
            }
        }
    }

    @Test func corsAllowsOnlyConfiguredOrigins() async throws {
        try await app(auth: .off, master: nil, configure: { $0.corsOrigins = ["https://app.example"] }).test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions", method: .options,
                headers: [.origin: "https://app.example", .accessControlRequestMethod: "POST"]
            ) { response in
                #expect(response.headers[.accessControlAllowOrigin] == "https://app.example")
                #expect(response.headers[.accessControlAllowMethods]?.contains("POST") == true)
            }
            try await client.execute(
                uri: "/v1/chat/completions", method: .options,
                headers: [.origin: "https://evil.example", .accessControlRequestMethod: "POST"]
            ) { response in
                #expect(response.status == .forbidden)
                #expect(response.headers[.accessControlAllowOrigin] == nil)
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.origin: "https://evil.example"]) { response in
                #expect(response.headers[.accessControlAllowOrigin] == nil)
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.origin: "https://app.example"]) { response in
                #expect(response.headers[.accessControlAllowOrigin] == "https://app.example")
            }
        }
    }

    @Test func presentedKeyParsing() {
        #expect(AccessMiddleware.presentedKey([.authorization: "Bearer abc"]) == "abc")
        #expect(AccessMiddleware.presentedKey([.authorization: "bearer   abc"]) == "abc")
        #expect(AccessMiddleware.presentedKey([.authorization: "Basic abc"]) == nil)
        #expect(AccessMiddleware.presentedKey([.xAPIKey: "abc"]) == "abc")
        #expect(AccessMiddleware.presentedKey([:]) == nil)
    }
}

@Suite("Key directory")
struct KeyDirectoryTests {
    /// A reload begun after an admin change must win over a poll that began before it, whichever ends last.
    @Test func anOlderLoadNeverPutsOlderKeysBack() {
        let directory = KeyDirectory(masterKey: nil, loaded: false)
        let revoked = IssuedKey(name: "soon revoked", now: 0)
        var revokedRecord = revoked.record
        let poll = directory.beginLoad()  // the poll read the store before the revocation
        let adminReload = directory.beginLoad()
        revokedRecord.revoked = true
        directory.replace(with: [revokedRecord], revision: 2, load: adminReload)
        directory.replace(with: [revoked.record], revision: 1, load: poll)
        guard case .key(let record) = directory.lookup(revoked.secret) else {
            Issue.record("the key disappeared")
            return
        }
        #expect(record.revoked)
        #expect(directory.revision == 2)
        // A load begun later applies.
        directory.replace(with: [], revision: 3)
        #expect(!directory.hasKeys)
    }

    /// A refresh from the store never forgets spend the store does not hold yet, and takes in what others spent.
    @Test func spendMergesTheStoresTotalsWithTheLocalCount() {
        let directory = KeyDirectory(
            masterKey: nil, keys: [APIKeyRecord(id: "k", name: "k", hash: "h", prefix: "p", createdAt: 0, budgetUSD: 10)], loaded: true)
        func spend(_ amount: Double) -> KeyDirectory.Spend { KeyDirectory.Spend(periodStart: 0, amount: amount) }
        directory.addSpend(keyID: "k", cost: 1, now: 5)
        directory.mergeSpend(["k": spend(0)])
        #expect(directory.spent(keyID: "k", now: 5) == 1)
        directory.mergeSpend(["k": spend(3)])
        #expect(directory.spent(keyID: "k", now: 5) == 3)
        directory.addSpend(keyID: "k", cost: 0.5, now: 5)
        directory.mergeSpend(["k": spend(3.25)])
        #expect(directory.spent(keyID: "k", now: 5) == 3.5)
        directory.mergeSpend(["k": spend(4)])
        #expect(directory.spent(keyID: "k", now: 5) == 4)
        // Budgets no longer tracked are forgotten.
        directory.mergeSpend([:])
        #expect(directory.spent(keyID: "k", now: 5) == 0)
    }
}
