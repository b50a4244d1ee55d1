import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SluiceCore
import SluiceStore
import Testing

@testable import SluiceServer

/// Query parameters and JSON bodies of the admin API and the API routes, fed the values that once killed the process.
@Suite struct AdminValidationTests {
    static let master = "master-" + String(repeating: "m", count: 32)
    static let now: Double = 1_700_000_000

    func withApp(keys: [APIKeyRecord] = [], _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = SQLiteStore(path: ":memory:", logger: logger)
        do {
            try await store.migrate()
            for key in keys { try await store.insertKey(key) }
            var configuration = GatewayConfiguration()
            configuration.masterKey = Self.master
            configuration.retentionDays = 0
            let app = try buildApplication(
                configuration: configuration, logger: logger,
                dependencies: .init(
                    upstreams: [FakeUpstream(.answer("hello"))], recorder: CollectingRecorder(), store: .given(store), keys: keys,
                    now: { Self.now }))
            try await app.test(.router) { client in try await body(client) }
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    static var admin: HTTPFields { [.authorization: "Bearer \(master)", .contentType: "application/json"] }

    static func error(_ response: TestResponse) throws -> JSONValue {
        let value = try JSONDecoder().decode(JSONValue.self, from: response.body)
        return try #require(value["error"])
    }

    @Test(arguments: [
        ("since=1e30", "since"), ("since=inf", "since"), ("since=-inf", "since"), ("since=nan", "since"), ("since=-5s", "since"),
        ("since=99999999999999999999d", "since"), ("until=99999999999999999999d", "until"), ("until=1e300", "until"),
        ("since=\(String(repeating: "9", count: 5000))", "since"), ("since=36526d", "since"),
    ])
    func usageQueryOutOfRangeIs400(query: String, param: String) async throws {
        try await withApp { client in
            for path in ["/admin/usage", "/admin/usage/recent"] {
                try await client.execute(uri: "\(path)?\(query)", method: .get, headers: Self.admin) { response in
                    #expect(response.status == .badRequest, "\(path)?\(query.prefix(40))")
                    let error = try Self.error(response)
                    #expect(error["param"] == .string(param))
                    #expect(error["type"] == "invalid_request_error")
                }
            }
        }
    }

    @Test(arguments: ["limit=99999999999999999999", "limit=0", "limit=-1", "limit=1e3", "limit=1001", "limit=abc", "limit=nan"])
    func recentLimitOutOfRangeIs400(query: String) async throws {
        try await withApp { client in
            try await client.execute(uri: "/admin/usage/recent?\(query)", method: .get, headers: Self.admin) { response in
                #expect(response.status == .badRequest)
                let error = try Self.error(response)
                #expect(error["param"] == "limit")
            }
        }
    }

    @Test func usageQueriesInRangeStillAnswer() async throws {
        try await withApp { client in
            for uri in ["/admin/usage?since=24h", "/admin/usage?since=36525d&until=1h", "/admin/usage/recent?limit=1000", "/admin/usage?since=2026-01-01"] {
                try await client.execute(uri: uri, method: .get, headers: Self.admin) { response in
                    #expect(response.status == .ok, "\(uri)")
                }
            }
        }
    }

    @Test(arguments: [
        (#"{"name":"k","expires":"1e300"}"#, "expires"), (#"{"name":"k","expires":"99999999999999999999d"}"#, "expires"),
        (#"{"name":"k","expires":"inf"}"#, "expires"), (#"{"name":"k","rpm":1e300}"#, "rpm"),
        (#"{"name":"k","rpm":9223372036854775807}"#, "rpm"), (#"{"name":"k","tpm":99999999999999999999}"#, "tpm"),
        (#"{"name":"k","budget_usd":1e999}"#, "budget_usd"), (#"{"name":"k","budget_usd":1e300}"#, "budget_usd"),
        (#"{"name":"k","name":"other"}"#, "name"), (#"{"name":"k","models":["a",""]}"#, "models"),
    ])
    func keyCreationOutOfRangeIs400(body: String, param: String) async throws {
        try await withApp { client in
            try await client.execute(uri: "/admin/keys", method: .post, headers: Self.admin, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .badRequest, "\(body)")
                let error = try Self.error(response)
                #expect(error["param"] == .string(param), "\(body)")
            }
            // The process is still up and the store took nothing.
            try await client.execute(uri: "/admin/keys", method: .get, headers: Self.admin) { response in
                #expect(response.status == .ok)
                let list = try JSONDecoder().decode(JSONValue.self, from: response.body)
                #expect(list["data"] == .array([]))
            }
        }
    }

    /// A key scoped to one model cannot reach another by sending `model` twice (Python and Go servers keep the last).
    @Test func duplicateModelKeyIsRefusedBeforeTheScopeCheck() async throws {
        let scoped = IssuedKey(name: "scoped", now: 0, allowedModels: ["llama3.2"])
        try await withApp(keys: [scoped.record]) { client in
            for body in [
                #"{"model":"llama3.2","model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
                #"{"model":"llama3.2","mo\u0064el":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
            ] {
                try await client.execute(
                    uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer \(scoped.secret)"],
                    body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .badRequest)
                    let error = try Self.error(response)
                    #expect(error["param"] == "model")
                    #expect(error["code"] == "duplicate_key")
                }
            }
            try await client.execute(
                uri: "/api/chat", method: .post, headers: [.authorization: "Bearer \(scoped.secret)"],
                body: ByteBuffer(string: #"{"model":"llama3.2","messages":[],"model":"gpt-4o"}"#)
            ) { response in
                // Ollama's native routes answer errors in Ollama's shape: a message that names the key.
                #expect(response.status == .badRequest)
                let body = try JSONDecoder().decode(JSONValue.self, from: response.body)
                let message = try #require(body["error"]?.stringValue)
                #expect(message.contains("model") && message.contains("duplicate"))
            }
        }
    }

    /// Random query values, from a fixed seed: each answer is 200 or a 400 naming the parameter, and the app lives on.
    @Test func fuzzedUsageQueriesAnswer200Or400() async throws {
        var rng = InputRandom(state: 0x5EED_AD31)
        let values = [
            "1e30", "inf", "-inf", "nan", "-0", "1e308", "1e999", String(repeating: "9", count: 30), "99999999999999999999d", "24h",
            "7d", "0", "2026-01-01", "1h30m", "%00", "%FF", "-5s", "0x10", "",
        ]
        var uris: [String] = []
        for _ in 0..<200 {
            let name = ["since", "until", "limit"].randomElement(using: &rng)!
            var value = values.randomElement(using: &rng)!
            if rng.next() % 3 == 0 { value += ["s", "d", "ms", "h", "x"].randomElement(using: &rng)! }
            let path = rng.next() % 2 == 0 ? "/admin/usage" : "/admin/usage/recent"
            uris.append("\(path)?\(name)=\(value)")
        }
        try await withApp { [uris] client in
            for uri in uris {
                let name = String(uri.split(separator: "?")[1].prefix { $0 != "=" })
                try await client.execute(uri: uri, method: .get, headers: Self.admin) { response in
                    if response.status == .badRequest {
                        let error = try Self.error(response)
                        #expect(error["param"] == .string(name), "\(uri.prefix(60))")
                    } else {
                        #expect(response.status == .ok, "\(uri.prefix(60))")
                    }
                }
            }
        }
    }
}

/// SplitMix64, so the fuzzed queries are the same on every run and platform.
struct InputRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
