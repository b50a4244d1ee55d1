import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOFoundationCompat
import SluiceCore
import SluiceUpstream
import Testing
@testable import SluiceServer

@Suite struct RouteTests {
    static let chatBody = ByteBuffer(string: #"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#)
    static let streamBody = ByteBuffer(string: #"{"model":"llama3.2","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#)

    func app(
        _ upstream: FakeUpstream = FakeUpstream(.answer("hello there")),
        recorder: CollectingRecorder = CollectingRecorder(),
        metrics: GatewayMetrics = GatewayMetrics(),
        keys: [APIKeyRecord] = [],
        configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        var configuration = GatewayConfiguration()
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return try buildApplication(
            configuration: configuration, logger: logger,
            dependencies: .init(upstreams: [upstream], recorder: recorder, store: .none, keys: keys, metrics: metrics, now: { 1_700_000_000 }))
    }

    static func errorBody(_ response: TestResponse) throws -> JSONValue {
        #expect(response.headers[.contentType] == "application/json")
        let value = try JSONDecoder().decode(JSONValue.self, from: response.body)
        return try #require(value["error"])
    }

    @Test func chatCompletionAnswers() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.chatBody) { response in
                #expect(response.status == .ok)
                let body = try JSONDecoder().decode(ChatCompletionResponse.self, from: response.body)
                #expect(body.choices[0].message.content == .text("hello there"))
                #expect(body.usage?.totalTokens == 3)
                #expect(response.headers[.requestID]?.isEmpty == false)
            }
        }
    }

    @Test func streamingChatEndsWithDone() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.streamBody) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/event-stream")
                let text = String(buffer: response.body)
                #expect(text.hasSuffix("data: [DONE]\n\n"))
                #expect(text.contains(#""usage":{"completion_tokens":2"#))
            }
        }
    }

    @Test func streamDyingMidwayEndsWithErrorEventAndNoDone() async throws {
        let upstream = FakeUpstream(.streamLines([#"{"model":"m","message":{"role":"assistant","content":"partial"},"done":false}"#]))
        let recorder = CollectingRecorder()
        try await app(upstream, recorder: recorder).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.streamBody) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("partial"))
                #expect(text.contains("event: error\ndata: "))
                #expect(!text.contains("[DONE]"))
            }
        }
        #expect(recorder.all.first?.errorCode == "upstream_error")
    }

    @Test func invalidJSONIs400WithRequestID() async throws {
        try await app().test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.requestID: "client-id-1"], body: ByteBuffer(string: "{oops")
            ) { response in
                #expect(response.status == .badRequest)
                #expect(response.headers[.requestID] == "client-id-1")
                let error = try Self.errorBody(response)
                #expect(error["code"] == "invalid_json")
            }
        }
    }

    @Test func insaneRequestIDIsReplaced() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get, headers: [.requestID: "bad id\twith junk"]) { response in
                let id = try #require(response.headers[.requestID])
                #expect(id != "bad id\twith junk")
                #expect(!id.isEmpty)
            }
        }
    }

    @Test func wrongTypeNamesTheField() async throws {
        try await app().test(.router) { client in
            let body = ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":"high"}"#)
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: body) { response in
                #expect(response.status == .badRequest)
                let error = try Self.errorBody(response)
                #expect(error["param"] == "top_p")
            }
        }
    }

    @Test func bodyOverTheLimitIs413() async throws {
        try await app(configure: { $0.maxBodyBytes = 64 }).test(.router) { client in
            let body = ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":""# + String(repeating: "x", count: 200) + #""}]}"#)
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: body) { response in
                #expect(response.status == .contentTooLarge)
                let error = try Self.errorBody(response)
                #expect(error["code"] == "request_too_large")
            }
        }
    }

    @Test func unknownRouteIs404AndWrongMethodIs405() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v2/nothing", method: .get) { response in
                #expect(response.status == .notFound)
                let error = try Self.errorBody(response)
                #expect(error["code"] == "not_found")
            }
            try await client.execute(uri: "/v1/chat/completions", method: .get) { response in
                #expect(response.status == .methodNotAllowed)
                let error = try Self.errorBody(response)
                #expect(error["code"] == "method_not_allowed")
            }
        }
    }

    @Test func upstreamErrorsKeepTheirStatusAndLeakNothing() async throws {
        try await app(FakeUpstream(.fail(.upstreamTimeout()))).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.chatBody) { response in
                #expect(response.status == .gatewayTimeout)
                let text = String(buffer: response.body)
                #expect(!text.contains("fake.invalid"))
                let error = try Self.errorBody(response)
                #expect(error["code"] == "upstream_timeout")
            }
        }
    }

    /// Made-up paths, matched or refused, never become label values: each would be a series kept for the process's life.
    @Test func madeUpPathsShareOneMetricLabel() async throws {
        let metrics = GatewayMetrics()
        let key = IssuedKey(name: "k", now: 0)
        try await app(metrics: metrics, keys: [key.record]).test(.router) { client in
            for (uri, method) in [("/v1/nope-1", HTTPRequest.Method.get), ("/v1/nope-2", .get), ("/api/zzz-3", .post), ("/elsewhere-4", .get)] {
                try await client.execute(uri: uri, method: method) { response in
                    #expect(response.status == .unauthorized || response.status == .notFound)
                }
                try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(key.secret)"]) { response in
                    #expect(response.status == .notFound)
                }
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer \(key.secret)"]) { _ in }
        }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(!text.contains("nope") && !text.contains("zzz") && !text.contains("elsewhere"))
        #expect(text.contains(#"route="unmatched""#))
        #expect(text.contains(#"sluice_http_requests_total{route="/v1/models",method="GET",status="200"} 1"#))
    }

    @Test func modelsAndUnknownModel() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get) { response in
                let list = try JSONDecoder().decode(ModelList.self, from: response.body)
                #expect(list.data.map(\.id) == ["llama3.2:latest"])
            }
            try await client.execute(uri: "/v1/models/llama3.2", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/models/gpt-9", method: .get) { response in
                #expect(response.status == .notFound)
                let error = try Self.errorBody(response)
                #expect(error["code"] == "model_not_found")
            }
        }
    }

    /// A load balancer polling `/readyz` must not turn into upstream traffic: concurrent and repeated calls within
    /// the results' age share one probe round.
    @Test func readinessAnswersFromTheLastProbe() async throws {
        var upstream = FakeUpstream(.answer("x"))
        let probes = FakeCounter()
        upstream.probeCount = probes
        // A long interval, so results never age during the test: at most the prober's first round and one
        // `/readyz` round (when it asked before the prober answered) may probe.
        try await app(upstream, configure: { $0.probeInterval = .seconds(3600) }).test(.router) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<100 {
                    group.addTask {
                        try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .ok) }
                    }
                }
                try await group.waitForAll()
            }
            for _ in 0..<100 {
                try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .ok) }
            }
        }
        #expect((1...2).contains(probes.count))
    }

    /// A native request goes only to an upstream that speaks Ollama's API, never to an OpenAI one beside it.
    @Test func nativeRequestsAreRoutedByDialect() async throws {
        var local = FakeUpstream(.answer("x"))
        let localCalls = FakeCounter()
        local.nativeCount = localCalls
        var hosted = FakeUpstream(.answer("x"))
        hosted.endpoint = UpstreamEndpoint(name: "hosted", baseURL: "http://hosted.invalid", kind: .openai)
        let hostedCalls = FakeCounter()
        hosted.nativeCount = hostedCalls
        var configuration = GatewayConfiguration()
        configuration.cacheTTL = .zero
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try buildApplication(
            configuration: configuration, logger: logger,
            dependencies: .init(upstreams: [local, hosted], recorder: CollectingRecorder(), store: .none, now: { 1_700_000_000 }))
        try await app.test(.router) { client in
            for i in 0..<20 {
                let body = ByteBuffer(string: #"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"\#(i)"}]}"#)
                try await client.execute(uri: "/api/chat", method: .post, body: body) { #expect($0.status == .ok) }
            }
        }
        #expect(localCalls.count == 20)
        #expect(hostedCalls.count == 0)
    }

    @Test func readinessFollowsTheProbe() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
        try await app(FakeUpstream(.answer("x"), probeError: .upstreamUnavailable())).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = try JSONDecoder().decode(JSONValue.self, from: response.body)
                #expect(body["upstreams"]?.arrayValue?.first?["error"] == "upstream_unavailable")
            }
        }
    }

    @Test func metricsCountRequests() async throws {
        let metrics = GatewayMetrics()
        try await app(metrics: metrics).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.chatBody) { _ in }
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.chatBody) { _ in }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(#"sluice_http_requests_total{route="/v1/chat/completions",method="POST",status="200"} 2"#))
                // The second is answered from the cache: the upstream was asked once.
                #expect(text.contains(#"sluice_upstream_duration_seconds_count{upstream="fake"} 1"#))
                #expect(text.contains("sluice_streams_in_flight"))
                #expect(text.contains(#"sluice_tokens_total{model="llama3.2",kind="completion"} 4"#))
            }
        }
    }

    @Test func everyAPIRequestIsRecordedOnce() async throws {
        let recorder = CollectingRecorder()
        try await app(recorder: recorder).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [.requestID: "rec-1"], body: Self.chatBody) { _ in }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [.requestID: "rec-2"], body: ByteBuffer(string: "{")) { _ in }
            try await client.execute(uri: "/healthz", method: .get) { _ in }
        }
        let records = recorder.all
        #expect(records.map(\.requestID) == ["rec-1", "rec-2"])
        #expect(records[0].status == 200)
        #expect(records[0].model == "llama3.2")
        #expect(records[0].promptTokens == 1)
        #expect(records[0].completionTokens == 2)
        #expect(records[1].status == 400)
        #expect(records[1].errorCode == "invalid_json")
    }
}
