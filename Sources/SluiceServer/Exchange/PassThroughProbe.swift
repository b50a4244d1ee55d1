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

/// What a pass-through needs of an OpenAI request: the fields routing, limits and the cache read.
///
/// When every upstream that could serve the model speaks OpenAI's API, the body goes there byte for byte, so
/// typed validation of the rest would only refuse valid requests Sluice's types do not model (token-id embeddings
/// input, `custom` tools): the upstream validates what it serves.
struct PassThroughProbe: Decodable, HasItemLimits {
    /// The embeddings cap holds on the pass-through too: the scan refuses a 200,000-input body before any decoder
    /// builds it.
    static let itemLimits = EmbeddingsRequest.itemLimits

    var model: String
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?
    var temperature: Double?
    var seed: Int?

    enum CodingKeys: String, CodingKey {
        case model, stream, n, temperature, seed
        case streamOptions = "stream_options"
    }

    /// A chat request carrying only these fields, for the pass-through lane.
    var chatRequest: ChatCompletionRequest {
        var chat = ChatCompletionRequest(model: model, messages: [], stream: stream)
        chat.streamOptions = streamOptions
        chat.n = n
        chat.temperature = temperature
        chat.seed = seed
        return chat
    }
}

/// The few fields of a request body the gateway reads itself when the bytes pass through to an upstream of the
/// client's own dialect.
protocol PassThroughProbing: Decodable {
    var model: String { get }
    var stream: Bool? { get }
    /// The probe read by the byte scanner when every field has its common shape; nil sends the body to `JSONDecoder`.
    static func scanned(_ body: ByteBuffer) -> Self?
}

/// Reading a probe's fields from ``JSONScalar``s; any shape but the plain one gives up, so the decoder and its
/// field-named errors decide.
enum ProbeField {
    static func bool(_ value: JSONScalar?, into field: inout Bool?) -> Bool {
        switch value {
        case nil, .null?: return true
        case .bool(let flag)?: field = flag; return true
        default: return false
        }
    }

    static func int(_ value: JSONScalar?, into field: inout Int?) -> Bool {
        switch value {
        case nil, .null?: return true
        case .int(let int)?: field = int; return true
        default: return false
        }
    }

    static func double(_ value: JSONScalar?, into field: inout Double?) -> Bool {
        switch value {
        case nil, .null?: return true
        case .int(let int)?: field = Double(int); return true
        case .number(let number)?: field = number; return true
        default: return false
        }
    }
}

extension PassThroughProbe {
    static func scanned(_ body: ByteBuffer) -> PassThroughProbe? {
        guard let values = CanonicalJSON.topLevelScalars(["model", "stream", "stream_options", "n", "temperature", "seed"], in: body),
            case .string(let model)? = values[0]
        else { return nil }
        var probe = PassThroughProbe(model: model)
        switch values[2] {
        case nil, .null?: break
        case .other(let range)?:
            guard let options = try? JSONDecoder().decode(StreamOptions.self, from: body.getSlice(at: body.readerIndex + range.lowerBound, length: range.count)!)
            else { return nil }
            probe.streamOptions = options
        default: return nil
        }
        guard ProbeField.bool(values[1], into: &probe.stream), ProbeField.int(values[3], into: &probe.n),
            ProbeField.double(values[4], into: &probe.temperature), ProbeField.int(values[5], into: &probe.seed)
        else { return nil }
        return probe
    }
}

extension AnthropicPassThroughProbe {
    static func scanned(_ body: ByteBuffer) -> AnthropicPassThroughProbe? {
        guard let values = CanonicalJSON.topLevelScalars(["model", "stream", "temperature"], in: body), case .string(let model)? = values[0]
        else { return nil }
        var probe = AnthropicPassThroughProbe(model: model)
        guard ProbeField.bool(values[1], into: &probe.stream), ProbeField.double(values[2], into: &probe.temperature) else { return nil }
        return probe
    }
}

extension PassThroughProbe: PassThroughProbing {}
extension AnthropicPassThroughProbe: PassThroughProbing {}

extension Gateway {
    /// The probe of a body bound only for upstreams of `kind`, or nil when an upstream that translates might serve
    /// it (then the typed, field-named validation applies).
    func passThroughProbe<Probe: PassThroughProbing>(_ type: Probe.Type, kind: UpstreamKind, _ body: ByteBuffer, context: SluiceRequestContext) throws -> Probe? {
        guard upstreams.contains(where: { $0.endpoint.kind == kind }) else { return nil }
        // Still checked: JSON syntax, duplicate keys, number ranges, and the fields the gateway itself reads.
        let probe = try RequestDecoding.decode(Probe.self, from: body, scanned: Probe.scanned)
        if probe.model.isEmpty { throw APIError.invalidValue("model", "must not be empty.") }
        let model = aliasTarget(probe.model) ?? probe.model
        guard let servers = try? servers(for: model, requested: probe.model, context: context, stream: probe.stream ?? false),
            servers.allSatisfy({ upstreams[$0].endpoint.kind == kind })
        else { return nil }
        return probe
    }

    /// The probe of an OpenAI body bound only for OpenAI-compatible upstreams.
    func passThroughProbe(_ body: ByteBuffer, context: SluiceRequestContext) throws -> PassThroughProbe? {
        try passThroughProbe(PassThroughProbe.self, kind: .openai, body, context: context)
    }

    /// A typed embeddings request; token-id input, which no translating upstream takes, gets a 400 that says so.
    static func decodeEmbeddings(_ body: ByteBuffer) throws -> EmbeddingsRequest {
        let result = Result { () throws(APIError) -> EmbeddingsRequest in try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: body) }
        if case .failure(let error) = result, error.param?.hasPrefix("input") == true, hasTokenInput(body) {
            throw APIError.invalidValue("input", "token arrays are not supported by Ollama upstreams; send the text.")
        }
        return try result.get()
    }

    /// Whether `input` is token ids (`[1, 2]` or `[[1, 2], [3]]`), which only OpenAI-compatible servers take.
    static func hasTokenInput(_ body: ByteBuffer) -> Bool {
        guard case .array(let items)? = (try? JSONDecoder().decode(JSONValue.self, from: body))?["input"], let first = items.first else {
            return false
        }
        switch first {
        case .int: return true
        case .array(let inner): return inner.allSatisfy { if case .int = $0 { true } else { false } }
        default: return false
        }
    }
}

/// What a pass-through needs of an Anthropic Messages request when every upstream that could serve it is an
/// Anthropic one: the body goes there byte for byte, so block types Sluice's canonical model does not carry
/// (`document`, `search_result`, server tool results) reach the API that understands them instead of a 400.
struct AnthropicPassThroughProbe: Decodable {
    var model: String
    var stream: Bool?
    var temperature: Double?

    /// The request as the gateway's exchange reads it: model, delivery and what the cache policy looks at.
    var generationRequest: Generation.Request {
        var request = Generation.Request(model: model, messages: [], origin: .anthropicMessages)
        request.stream = stream ?? false
        request.sampling.temperature = temperature
        return request
    }
}

extension Gateway {
    /// The probe of a Messages body bound only for Anthropic upstreams.
    func anthropicPassThroughProbe(_ body: ByteBuffer, context: SluiceRequestContext) throws -> AnthropicPassThroughProbe? {
        try passThroughProbe(AnthropicPassThroughProbe.self, kind: .anthropic, body, context: context)
    }
}
