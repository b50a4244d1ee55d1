import Foundation
import NIOFoundationCompat
import HTTPTypes
import Hummingbird
import NIOCore
import SluiceCore

/// The API routes of ``Surfaces``: the OpenAI API, Anthropic's Messages API and Ollama's native API, each row
/// registered for its methods and answered by its endpoint.
struct APIRoutes {
    let gateway: Gateway

    func addRoutes(to router: Router<SluiceRequestContext>) {
        for surface in Surfaces.all {
            guard let endpoint = surface.endpoint else { continue }
            for method in surface.methods {
                router.on(RouterPath(surface.path), method: method) { [gateway] request, context in
                    try await gateway.answer(endpoint, path: surface.path, request: request, context: context)
                }
            }
        }
    }
}

extension Gateway {
    /// Answers one API route.
    func answer(_ endpoint: Surface.Endpoint, path: String, request: Request, context: SluiceRequestContext) async throws -> Response {
        switch endpoint {
        case .chatCompletions: return try await chatCompletions(request, context: context)
        case .completions: return try await completions(request, context: context)
        case .embeddings: return try await embeddings(request, context: context)
        case .models: return try await JSONResponse(listModels(context: context)).response(status: .ok)
        case .model: return try await JSONResponse(model(id: context.parameters.require("id"), context: context)).response(status: .ok)
        case .messages: return try await messages(request, context: context)
        case .countTokens: return try await countTokens(request, context: context)
        case .responses: return try await responses(request, context: context)
        case .storedResponse: return try await storedResponse(id: context.parameters.require("id"), context: context)
        case .deleteStoredResponse: return try await deleteStoredResponse(id: context.parameters.require("id"), context: context)
        case .native(let streams): return try await native(request, context: context, path: path, streamsByDefault: streams)
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
