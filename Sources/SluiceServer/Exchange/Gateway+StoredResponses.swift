import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import NIOFoundationCompat
import SluiceCore
import SluiceStore
import SluiceUpstream

/// Responses API conversations kept in the gateway's store (`store`, `previous_response_id`, `GET` and `DELETE
/// /v1/responses/{id}`), so any instance sharing the store can continue one, and only the key that made it.
extension Gateway {
    /// The request body with a stored conversation put in front of its input: the earlier turns' input items,
    /// then their output items, then this request's input. `instructions` are this request's alone, as OpenAI
    /// does. Throws 404 for an id that is unknown, expired or another key's, without saying which.
    func continuing(_ body: ByteBuffer, previous id: String, context: SluiceRequestContext) async throws -> (body: ByteBuffer, input: [JSONValue]) {
        guard case .object(var members) = try JSONDecoder().decode(JSONValue.self, from: body) else {
            throw APIError.invalidJSON("the request body must be a JSON object.")
        }
        guard let store = responseStore,
            let stored = try await withStore({ try await store.response(id: id, keyID: context.identity.keyID, now: now()) })
        else {
            throw APIError(
                status: 404, type: "invalid_request_error", code: "previous_response_not_found",
                message: "Previous response with id '\(id)' not found.", param: "previous_response_id")
        }
        let earlier = (Self.jsonArray(stored.inputItems) ?? []) + (Self.jsonArray(stored.outputItems) ?? [])
        let input = earlier + Self.inputItems(members["input"])
        members["input"] = .array(input)
        members["previous_response_id"] = nil
        return (try WireJSON.encoder().encodeAsByteBuffer(JSONValue.object(members), allocator: ByteBufferAllocator()), input)
    }

    /// Keeps an answered response for `previous_response_id`; a store that fails costs the conversation, never the
    /// answer, so it is logged and counted, not thrown.
    func keep(_ responseBody: ByteBuffer, input: [JSONValue], model: String, context: SluiceRequestContext) async {
        guard let store = responseStore,
            let response = try? JSONDecoder().decode(JSONValue.self, from: responseBody), let id = response["id"]?.stringValue
        else { return }
        let created = now()
        let (seconds, attoseconds) = responseRetention.components
        let stored = StoredResponse(
            id: id, keyID: context.identity.keyID, createdAt: created,
            expiresAt: created + Double(seconds) + Double(attoseconds) / 1e18, model: model,
            inputItems: Self.jsonText(.array(input)), outputItems: Self.jsonText(response["output"] ?? .array([])),
            response: String(buffer: responseBody))
        do {
            try await store.saveResponse(stored)
        } catch {
            context.logger.warning("could not store the response for previous_response_id", metadata: ["error": "\(error)"])
        }
    }

    /// `GET /v1/responses/{id}`.
    func storedResponse(id: String, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/responses/{id}" }
        if let store = responseStore,
            let stored = try await withStore({ try await store.response(id: id, keyID: context.identity.keyID, now: now()) })
        {
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: stored.response)))
        }
        throw Self.responseNotFound(id)
    }

    /// `DELETE /v1/responses/{id}`.
    func deleteStoredResponse(id: String, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/responses/{id}" }
        if let store = responseStore, try await withStore({ try await store.deleteResponse(id: id, keyID: context.identity.keyID) }) {
            let body = JSONValue.object(["id": .string(id), "object": "response", "deleted": true])
            return try JSONResponse(body).response(status: .ok)
        }
        throw Self.responseNotFound(id)
    }

    static func responseNotFound(_ id: String) -> APIError {
        APIError(status: 404, type: "invalid_request_error", code: "not_found", message: "Response with id '\(id)' not found.")
    }

    /// A store failure is the gateway's, not the client's: 503 with a retry hint.
    func withStore<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.storeUnavailable()
        }
    }

    /// `input` as a list of items: a string is one user message.
    static func inputItems(_ input: JSONValue?) -> [JSONValue] {
        switch input {
        case .string(let text): [.object(["type": "message", "role": "user", "content": .string(text)])]
        case .array(let items): items
        default: []
        }
    }

    static func jsonArray(_ text: String) -> [JSONValue]? {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))?.arrayValue
    }

    static func jsonText(_ value: JSONValue) -> String {
        (try? WireJSON.encoder().encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }
}
