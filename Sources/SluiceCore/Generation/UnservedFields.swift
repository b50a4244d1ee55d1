import Foundation
import NIOCore
import NIOFoundationCompat

/// The fields of a request that the canonical model does not carry, for an upstream the request is translated for.
///
/// Nothing a client sends is dropped in silence. A field that only says how to serve the request (a prompt-cache
/// routing key, a service tier, a verbosity hint) is `advisory`: the call is answered without it and the answer's
/// `X-Sluice-Ignored` header names it. Any other field would change the answer, so it is `refused`: a 400 names it.
/// An upstream that speaks the client's dialect gets the body as sent and serves both kinds itself.
public struct UnservedFields: Sendable, Equatable {
    /// Sorted field names, nested ones dotted (`reasoning.summary`).
    public var advisory: [String]
    public var refused: [String]

    public init(_ names: some Sequence<String>, advisory known: Set<String>) {
        let sorted = names.sorted()
        self.advisory = sorted.filter(known.contains)
        self.refused = sorted.filter { !known.contains($0) }
    }

    /// The 400 for the first refused field, naming it; nil when every field is advisory.
    public func refusal(model: String) -> APIError? {
        refused.first.map {
            APIError.invalidValue($0, "is not supported by the upstream serving model '\(model)'; only an upstream that speaks this API takes it.")
        }
    }

    /// The `X-Sluice-Ignored` value: the advisory fields, comma-separated; nil when there are none.
    public var ignoredHeader: String? { advisory.isEmpty ? nil : advisory.joined(separator: ", ") }
}

extension ChatCompletionRequest {
    /// Chat fields that steer serving rather than the answer; OpenAI's own servers read them, others have no such knob.
    public static let advisoryFields: Set<String> = [
        "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "prediction", "verbosity",
    ]

    /// The top-level members of a chat body that ``ChatCompletionRequest`` does not decode, as translation would
    /// lose them. Reads only the member names.
    public static func unservedFields(in body: ByteBuffer) -> UnservedFields {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let names = (try? JSONDecoder().decode(MemberNames.self, from: body).names) ?? []
        return UnservedFields(names.filter { !known.contains($0) }, advisory: advisoryFields)
    }
}

extension AnthropicMessages {
    /// Messages fields that steer serving rather than the answer (Claude Code sends `context_management` with its
    /// context-editing beta); an upstream the request is translated for serves the call without them.
    public static let advisoryFields: Set<String> = ["service_tier", "context_management"]

    /// The fields of a decoded Messages request the canonical model does not carry.
    public static func unservedFields(_ request: Generation.Request) -> UnservedFields {
        UnservedFields(request.extensions.keys, advisory: advisoryFields)
    }
}

/// The member names of a JSON object, without decoding their values into anything.
private struct MemberNames: Decodable {
    var names: [String]

    init(from decoder: any Decoder) throws {
        names = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
