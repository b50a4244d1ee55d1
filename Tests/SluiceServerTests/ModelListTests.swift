import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SluiceCore
import SluiceUpstream
import Testing

@testable import SluiceServer

/// Model lists span every upstream: `/v1/models` over all of them, `/api/tags` and `/api/ps` over the Ollama ones.
@Suite struct ModelListTests {
    static func tags(_ names: [String]) -> String {
        #"{"models":["# + names.map { #"{"name":"\#($0)","size":1,"details":{"family":"x"}}"# }.joined(separator: ",") + "]}"
    }

    static func upstream(_ name: String, tags: [String]? = nil, kind: UpstreamKind = .ollama) -> FakeUpstream {
        var upstream = FakeUpstream(tags == nil ? .fail(.upstreamUnavailable()) : .answer("hi"))
        upstream.endpoint = UpstreamEndpoint(name: name, baseURL: "http://\(name).invalid", kind: kind)
        if let tags { upstream.nativeAnswers = ["/api/tags": Self.tags(tags), "/api/ps": Self.tags(tags.prefix(1).map { $0 })] }
        return upstream
    }

    func app(_ upstreams: [FakeUpstream], keys: [APIKeyRecord] = []) throws -> some ApplicationProtocol {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var configuration = GatewayConfiguration()
        configuration.probeInterval = .zero
        return try buildApplication(
            configuration: configuration, logger: logger,
            dependencies: .init(upstreams: upstreams, recorder: CollectingRecorder(), store: .none, keys: keys, now: { 1_700_000_000 }))
    }

    func names(_ response: TestResponse) throws -> [String] {
        let list = try JSONDecoder().decode(JSONValue.self, from: response.body)
        return try #require(list["models"]?.arrayValue).compactMap { $0["name"]?.stringValue }
    }

    @Test func nativeTagsMergeEveryOllamaUpstreamInOrderEachModelOnce() async throws {
        let upstreams = [
            Self.upstream("a", tags: ["llama3.2:latest", "qwen2.5:0.5b"]),
            Self.upstream("down"),
            Self.upstream("b", tags: ["qwen2.5:0.5b", "phi3:mini"]),
        ]
        try await app(upstreams).test(.router) { client in
            try await client.execute(uri: "/api/tags", method: .get) { response in
                #expect(response.status == .ok)
                #expect(try names(response) == ["llama3.2:latest", "qwen2.5:0.5b", "phi3:mini"])
                // Entries pass through whole: the Ollama client reads their details.
                let first = try JSONDecoder().decode(JSONValue.self, from: response.body)["models"]?.arrayValue?.first
                #expect(first?["details"]?["family"]?.stringValue == "x")
            }
            try await client.execute(uri: "/api/ps", method: .get) { response in
                let listed = try names(response)
                #expect(listed == ["llama3.2:latest", "qwen2.5:0.5b"])
            }
        }
    }

    @Test func aKeyLimitedToSomeModelsListsOnlyThose() async throws {
        let scoped = IssuedKey(name: "scoped", now: 0, allowedModels: ["qwen2.5:0.5b", "phi3:mini"])
        let upstreams = [Self.upstream("a", tags: ["llama3.2:latest", "qwen2.5:0.5b"]), Self.upstream("b", tags: ["phi3:mini"])]
        try await app(upstreams, keys: [scoped.record]).test(.router) { client in
            try await client.execute(uri: "/api/tags", method: .get, headers: [.authorization: "Bearer \(scoped.secret)"]) { response in
                let listed = try names(response)
                #expect(listed == ["qwen2.5:0.5b", "phi3:mini"])
            }
        }
    }

    @Test func whenEveryUpstreamFailsTheErrorComesThrough() async throws {
        try await app([Self.upstream("down"), Self.upstream("also-down")]).test(.router) { client in
            try await client.execute(uri: "/api/tags", method: .get) { response in
                #expect(response.status == .badGateway)
            }
        }
    }

    @Test func versionStillComesFromOneUpstream() async throws {
        try await app([Self.upstream("a", tags: [])]).test(.router) { client in
            try await client.execute(uri: "/api/version", method: .get) { response in
                #expect(String(buffer: response.body) == #"{"version":"fake"}"#)
            }
        }
    }
}
