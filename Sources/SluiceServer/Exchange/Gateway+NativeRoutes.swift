import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import ServiceLifecycle
import SluiceCore
import SluiceStore
import SluiceUpstream

/// Ollama's native API (`/api/*`), forwarded as it came.
extension Gateway {
    /// Probe of the few fields of a native body the gateway needs; decoding it also runs the body check over the
    /// whole body, which is forwarded as is.
    private struct NativeProbe: Decodable, HasIntegerFields {
        static let integerFields = ["options.seed"]

        var model: String?
        var stream: Bool?
        var options: Options?

        struct Options: Decodable {
            var temperature: Double?
            var seed: Int?
        }
    }

    /// Native routes that list models, merged over every Ollama upstream.
    static let nativeModelLists: Set<String> = ["/api/tags", "/api/ps"]

    /// Native routes that answer with generated content, and how they are cached.
    static let nativeFormats: [String: AnswerFormat?] = ["/api/chat": .ollamaChat, "/api/generate": .ollamaGenerate, "/api/embed": nil]

    func native(_ request: Request, context: SluiceRequestContext, path: String, streamsByDefault: Bool) async throws -> Response {
        context.trace.update { $0.route = path }
        let method: HTTPMethodName = request.method == .post ? .post : .get
        guard request.method == .post else {
            if Self.nativeModelLists.contains(path), upstreams.contains(where: { $0.endpoint.kind == .ollama }) {
                return try await nativeModelList(path: path, context: context)
            }
            let upstream = upstreams.first { $0.endpoint.kind == .ollama } ?? upstreams[0]
            context.trace.update { $0.upstream = upstream.endpoint.name }
            let reply = try await measured(upstream) {
                try await $0.native(NativeRequest(method: method, path: path, body: nil, streams: false), logger: context.logger)
            }
            return relay(reply, call: nil, upstream: upstream, lease: nil, ticket: nil, context: context)
        }
        var body = try await collectBody(request)
        let scheduled = try path == "/api/embed" ? .unchanged : schedule(&body, shape: path == "/api/chat" ? .ollamaChat : .ollamaGenerate, context: context)
        let probe: NativeProbe = try RequestDecoding.decode(NativeProbe.self, from: body)
        let streams = streamsByDefault && (probe.stream ?? true)
        guard let requested = scheduled.requested ?? probe.model, !requested.isEmpty else { throw APIError.missingField("model") }
        var model = probe.model ?? requested
        try applyAlias(to: &model, body: &body)
        let format = Self.nativeFormats[path]
        let call = Call(
            route: path, cacheFamily: "native:" + path, format: format ?? nil, body: body, model: model, streaming: streams,
            includeUsage: false, cacheable: format != nil && deterministicEnough(temperature: probe.options?.temperature, seed: probe.options?.seed),
            idPrefix: "native", kinds: [.ollama])
        return try await serve(call, requestedModel: requested, request: request, context: context) { [body] upstream, _ in
            try await upstream.native(NativeRequest(method: method, path: path, body: body, streams: streams), logger: context.logger)
        }
    }
}
