import Foundation
import NIOFoundationCompat
import HTTPTypes
import Hummingbird
import NIOCore
import SluiceCore

/// `/v1/*`: the OpenAI-compatible API, and Anthropic's Messages API beside it (`/v1/messages`).
struct OpenAIRoutes {
    let gateway: Gateway

    static let paths: Set<String> = [
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/messages", "/v1/messages/count_tokens",
        "/v1/responses",
    ]

    func addRoutes(to group: RouterGroup<SluiceRequestContext>) {
        group.post("chat/completions") { request, context in try await gateway.chatCompletions(request, context: context) }
        group.post("completions") { request, context in try await gateway.completions(request, context: context) }
        group.post("embeddings") { request, context in try await gateway.embeddings(request, context: context) }
        group.post("messages") { request, context in try await gateway.messages(request, context: context) }
        group.post("messages/count_tokens") { request, context in try await gateway.countTokens(request, context: context) }
        group.post("responses") { request, context in try await gateway.responses(request, context: context) }
        group.get("responses/{id}") { _, context in
            try await gateway.storedResponse(id: try context.parameters.require("id"), context: context)
        }
        group.delete("responses/{id}") { _, context in
            try await gateway.deleteStoredResponse(id: try context.parameters.require("id"), context: context)
        }
        group.get("models") { _, context in
            try await JSONResponse(gateway.listModels(context: context))
        }
        group.get("models/{id}") { _, context in
            let id = try context.parameters.require("id")
            return try await JSONResponse(gateway.model(id: id, context: context))
        }
    }
}

/// `/api/*`: Ollama's native API, proxied.
struct NativeRoutes {
    let gateway: Gateway

    /// Native paths, and whether each streams unless the body says `"stream": false`.
    static let postPaths: [(path: String, streams: Bool)] = [
        ("/api/chat", true), ("/api/generate", true), ("/api/embed", false), ("/api/embeddings", false), ("/api/show", false),
    ]
    static let getPaths = ["/api/tags", "/api/version", "/api/ps"]
    static var paths: Set<String> { Set(postPaths.map(\.path) + getPaths) }

    func addRoutes(to router: Router<SluiceRequestContext>) {
        for (path, streams) in Self.postPaths {
            router.post(RouterPath(path)) { request, context in
                try await gateway.native(request, context: context, path: path, streamsByDefault: streams)
            }
        }
        for path in Self.getPaths {
            router.get(RouterPath(path)) { request, context in
                try await gateway.native(request, context: context, path: path, streamsByDefault: false)
            }
        }
    }
}

/// A `Codable` value sent as `application/json` with compact, slash-preserving output.
struct JSONResponse<Value: Encodable & Sendable>: ResponseGenerator {
    let value: Value
    init(_ value: Value) { self.value = value }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        try response(status: .ok)
    }

    func response(status: HTTPResponse.Status) throws -> Response {
        let buffer = try WireJSON.encoder().encodeAsByteBuffer(value, allocator: ByteBufferAllocator())
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }
}
