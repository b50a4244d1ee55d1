import Foundation
import NIOCore
import NIOFoundationCompat

/// Strict decoding of request bodies into wire types, with errors that name the offending field.
public enum RequestDecoding {
    /// Decodes `T` from a JSON body, mapping every decoding failure to a 400 `APIError`.
    ///
    /// Every body is first checked by ``JSONBodyCheck``: duplicate keys, numbers no float holds, broken strings and
    /// over-long arrays are refused with the field named, before a decoder builds anything from them.
    /// - Parameter scanned: a reader of the common shape from the checked bytes (``CanonicalJSON/topLevelScalars(_:in:)``);
    ///   when it returns nil, `JSONDecoder` decodes, and its errors name the field.
    public static func decode<T: Decodable>(
        _ type: T.Type, from body: ByteBuffer, scanned: ((ByteBuffer) -> T?)? = nil
    ) throws(APIError) -> T {
        guard body.readableBytes > 0 else { throw .invalidJSON("the request body is empty.") }
        guard firstNonSpaceByte(body) == UInt8(ascii: "{") else {
            // Decoding would also fail, but a non-object body deserves its own sentence.
            if (try? JSONSerialization.jsonObject(with: Data(buffer: body), options: [.fragmentsAllowed])) != nil {
                throw .invalidJSON("the request body must be a JSON object.")
            }
            throw .invalidJSON("the request body is not valid JSON.")
        }
        try check(body, arrayCaps: (type as? any HasItemLimits.Type)?.itemLimits ?? [:])
        if let scanned, let value = scanned(body) { return value }
        do {
            return try JSONDecoder().decode(T.self, from: body)
        } catch let error as DecodingError {
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
                let fault = integerFault(in: body, of: T.self)
            {
                // Foundation reports a fractional or too large number in an Int field as corrupt data without a path.
                throw fault
            }
            throw apiError(for: error)
        } catch {
            throw .invalidJSON("the request body is not valid JSON.")
        }
    }

    /// Runs ``JSONBodyCheck`` over a body, as a 400 naming the field.
    public static func check(_ body: ByteBuffer, arrayCaps: [String: Int] = [:]) throws(APIError) {
        let fault = body.withUnsafeReadableBytes { bytes -> JSONBodyCheck.Fault? in
            do throws(JSONBodyCheck.Fault) {
                try JSONBodyCheck.check(bytes, arrayCaps: arrayCaps)
                return nil
            } catch {
                return error
            }
        }
        if let fault { throw fault.apiError }
    }

    /// The 400 error a `DecodingError` stands for.
    public static func apiError(for error: DecodingError) -> APIError {
        switch error {
        case .typeMismatch(let type, let context):
            if context.codingPath.isEmpty { return .invalidJSON("the request body must be a JSON object.") }
            return .invalidType(path(context.codingPath), expected: jsonTypeName(type))
        case .valueNotFound(let type, let context):
            if context.codingPath.isEmpty { return .invalidJSON("the request body must be a JSON object.") }
            return .invalidType(path(context.codingPath), expected: "\(jsonTypeName(type)), not null")
        case .keyNotFound(let key, let context):
            return .missingField(path(context.codingPath + [key]))
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return .invalidJSON("the request body is not valid JSON.") }
            return .invalidType(path(context.codingPath), expected: "a value of the documented type")
        @unknown default:
            return .invalidJSON("the request body could not be decoded.")
        }
    }

    /// `messages[0].content` style path of a coding path.
    static func path(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let index = key.intValue {
                out += "[\(index)]"
            } else {
                if !out.isEmpty { out += "." }
                out += key.stringValue
            }
        }
        return out
    }

    static func jsonTypeName(_ type: Any.Type) -> String {
        // Order matters: String and Dictionary are Collections too.
        switch type {
        case let named as any JSONTypeNamed.Type: named.jsonTypeName
        case is String.Type, is Substring.Type: "string"
        case is Bool.Type: "boolean"
        case is Int.Type, is Int64.Type, is Int32.Type: "integer"
        case is Double.Type, is Float.Type: "number"
        case is any JSONObjectType.Type: "object"
        case is any Collection.Type: "array"
        default: "object"
        }
    }

    /// The error for the first integer field of `T` (``HasIntegerFields``) holding a number that is no Int, if any.
    static func integerFault<T>(in body: ByteBuffer, of type: T.Type) -> APIError? {
        guard let fields = (type as? any HasIntegerFields.Type)?.integerFields,
            let value = try? JSONDecoder().decode(JSONValue.self, from: body)
        else { return nil }
        for field in fields {
            var member: JSONValue? = value
            for part in field.split(separator: ".") { member = member?[String(part)] }
            guard case .double(let number) = member else { continue }
            // A whole number read as a Double is one an Int cannot hold (`1e300`, 30 digits).
            if number == number.rounded(.towardZero) { return .invalidValue(field, "the number is out of range for an integer.") }
            return .invalidType(field, expected: "integer")
        }
        return nil
    }

    private static func firstNonSpaceByte(_ body: ByteBuffer) -> UInt8? {
        body.readableBytesView.first { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }
    }
}

/// A request type whose integer fields are named (`options.seed` for a nested one), so a fractional or too large
/// number in one can be reported by name.
public protocol HasIntegerFields {
    static var integerFields: [String] { get }
}

/// A request type with top-level arrays capped in length, counted before they are decoded.
public protocol HasItemLimits {
    static var itemLimits: [String: Int] { get }
}

/// A wire type that is one of several JSON shapes (`"text"` or a list of parts), named so in type errors.
public protocol JSONTypeNamed {
    static var jsonTypeName: String { get }
}

/// Marks dictionaries, so type errors say "object" rather than "array" (a Dictionary is also a Collection).
protocol JSONObjectType {}
extension Dictionary: JSONObjectType {}

/// A decoded request that can check its values beyond their types.
public protocol ValidatedRequest: Decodable, Sendable {
    /// Throws a 400 naming the first field whose value is out of range.
    func validate() throws(APIError)
}

extension RequestDecoding {
    /// Decodes and validates a request.
    public static func decodeValidated<T: ValidatedRequest>(_ type: T.Type, from body: ByteBuffer) throws(APIError) -> T {
        let value = try decode(type, from: body)
        try value.validate()
        return value
    }
}

/// Range checks shared by the sampling parameters of chat and completion requests.
enum SamplingChecks {
    static func check(
        temperature: Double?, topP: Double?, maxTokens: Int?, maxTokensField: String, n: Int?,
        presencePenalty: Double?, frequencyPenalty: Double?, stop: StopSequences?
    ) throws(APIError) {
        if let t = temperature, !(0...2).contains(t) {
            throw .invalidValue("temperature", "must be between 0 and 2.")
        }
        if let p = topP, !(0...1).contains(p) {
            throw .invalidValue("top_p", "must be between 0 and 1.")
        }
        if let m = maxTokens, m < 1 {
            throw .invalidValue(maxTokensField, "must be at least 1.")
        }
        if let n, !(1...128).contains(n) {
            throw .invalidValue("n", "must be between 1 and 128.")
        }
        if let p = presencePenalty, !(-2...2).contains(p) {
            throw .invalidValue("presence_penalty", "must be between -2 and 2.")
        }
        if let f = frequencyPenalty, !(-2...2).contains(f) {
            throw .invalidValue("frequency_penalty", "must be between -2 and 2.")
        }
        if let stop, stop.values.count > 4 {
            throw .invalidValue("stop", "at most 4 stop sequences are allowed.")
        }
    }

    /// `logit_bias`: token ids (as strings) to biases from -100 to 100, as OpenAI takes them.
    static func checkLogitBias(_ bias: [String: Double]?) throws(APIError) {
        guard let bias else { return }
        for (token, value) in bias {
            guard !token.isEmpty, token.utf8.count <= 10, token.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
                throw .invalidValue("logit_bias", "keys must be token ids (integers), not '\(token.prefix(40))'.")
            }
            guard (-100...100).contains(value) else {
                throw .invalidValue("logit_bias", "biases must be between -100 and 100.")
            }
        }
    }

    static func checkModel(_ model: String) throws(APIError) {
        if model.isEmpty { throw .invalidValue("model", "must not be empty.") }
        if model.utf8.count > 256 { throw .invalidValue("model", "is too long.") }
    }
}

extension ChatCompletionRequest: ValidatedRequest, HasIntegerFields {
    public static let integerFields = ["max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs", "top_k"]
    static let partTypes: Set<String> = ["text", "image_url", "input_audio", "file", "refusal"]
    static let toolChoiceExpected = "'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": …}}"
    static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool", "function"]

    public func validate() throws(APIError) {
        try SamplingChecks.checkModel(model)
        if messages.isEmpty { throw .invalidValue("messages", "must contain at least one message.") }
        for (i, message) in messages.enumerated() where !Self.roles.contains(message.role) {
            throw .invalidValue("messages[\(i)].role", "'\(message.role)' is not one of system, developer, user, assistant, tool.")
        }
        if maxTokens != nil, maxCompletionTokens == nil {
            try SamplingChecks.check(
                temperature: temperature, topP: topP, maxTokens: maxTokens, maxTokensField: "max_tokens", n: n,
                presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, stop: stop)
        } else {
            try SamplingChecks.check(
                temperature: temperature, topP: topP, maxTokens: maxCompletionTokens, maxTokensField: "max_completion_tokens",
                n: n, presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, stop: stop)
        }
        if let topK, topK < 1 { throw .invalidValue("top_k", "must be at least 1.") }
        if let effort = reasoningEffort, !["none", "minimal", "low", "medium", "high"].contains(effort) {
            throw .invalidValue("reasoning_effort", "must be one of none, minimal, low, medium, high.")
        }
        if let format = responseFormat, !["text", "json_object", "json_schema"].contains(format.type) {
            throw .invalidValue("response_format.type", "must be one of text, json_object, json_schema.")
        }
        if let format = responseFormat, format.type == "json_schema", format.jsonSchema?.objectValue == nil {
            throw .invalidValue("response_format.json_schema", "must be an object holding the schema.")
        }
        for (i, message) in messages.enumerated() {
            guard case .parts(let parts)? = message.content else { continue }
            for (j, part) in parts.enumerated() {
                let field = "messages[\(i)].content[\(j)]"
                guard Self.partTypes.contains(part.type) else {
                    throw .invalidValue(field + ".type", "must be one of text, image_url, input_audio, file, refusal.")
                }
                if part.type == "text", part.text == nil { throw .missingField(field + ".text") }
                if part.type == "image_url", part.imageURL == nil { throw .missingField(field + ".image_url") }
            }
        }
        for (i, tool) in (tools ?? []).enumerated() {
            if tool.type != "function" { throw .invalidValue("tools[\(i)].type", "only 'function' tools are supported.") }
            if tool.function.name.isEmpty { throw .invalidValue("tools[\(i)].function.name", "must not be empty.") }
            if let parameters = tool.function.parameters, parameters.objectValue == nil {
                throw .invalidType("tools[\(i)].function.parameters", expected: "object (a JSON Schema)")
            }
        }
        try checkToolChoice()
        try SamplingChecks.checkLogitBias(logitBias)
        if let top = topLogprobs {
            guard (0...20).contains(top) else { throw .invalidValue("top_logprobs", "must be between 0 and 20.") }
            guard logprobs == true else { throw .invalidValue("top_logprobs", "must be used with 'logprobs': true.") }
        }
    }

    /// `tool_choice`: a mode, or the function the model must call.
    func checkToolChoice() throws(APIError) {
        switch toolChoice {
        case nil: return
        case .string(let mode)?:
            guard ["none", "auto", "required"].contains(mode) else {
                throw .invalidValue("tool_choice", "must be \(Self.toolChoiceExpected).")
            }
        case .object(let members)?:
            guard members["type"] == "function", case .string(let name)? = members["function"]?["name"], !name.isEmpty else {
                throw .invalidValue("tool_choice", "must be \(Self.toolChoiceExpected).")
            }
        default:
            throw .invalidType("tool_choice", expected: Self.toolChoiceExpected)
        }
    }
}

extension CompletionRequest: ValidatedRequest, HasIntegerFields {
    public static let integerFields = ["max_tokens", "n", "seed", "logprobs", "best_of"]
    public func validate() throws(APIError) {
        try SamplingChecks.checkModel(model)
        try SamplingChecks.check(
            temperature: temperature, topP: topP, maxTokens: maxTokens, maxTokensField: "max_tokens", n: n,
            presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, stop: stop)
        try SamplingChecks.checkLogitBias(logitBias)
        if let logprobs, !(0...5).contains(logprobs) { throw .invalidValue("logprobs", "must be between 0 and 5.") }
        if let bestOf {
            guard (1...20).contains(bestOf) else { throw .invalidValue("best_of", "must be between 1 and 20.") }
            guard bestOf >= (n ?? 1) else { throw .invalidValue("best_of", "must be at least n.") }
        }
    }
}

extension EmbeddingsRequest: ValidatedRequest, HasIntegerFields, HasItemLimits {
    public static let integerFields = ["dimensions"]
    /// OpenAI's limit; the body check counts the items, so a longer list is refused before it is decoded.
    public static let maxInputs = 2_048
    public static let itemLimits = ["input": maxInputs]

    public func validate() throws(APIError) {
        try SamplingChecks.checkModel(model)
        let values = input.values
        if values.isEmpty { throw .invalidValue("input", "must not be empty.") }
        if values.count > Self.maxInputs { throw .invalidValue("input", "at most \(Self.maxInputs) items are allowed.") }
        if let empty = values.firstIndex(where: \.isEmpty) {
            // Named `input` either way: the parameter is what clients look up; the index is in the sentence.
            throw .invalidValue("input", input == .one("") ? "must not be an empty string." : "item \(empty) is an empty string.")
        }
        if let d = dimensions, d < 1 { throw .invalidValue("dimensions", "must be at least 1.") }
        if let f = encodingFormat, f != "float", f != "base64" {
            throw .invalidValue("encoding_format", "must be 'float' or 'base64'.")
        }
    }
}

extension SingleValueDecodingContainer {
    /// Decodes the last alternative of a union type, blaming the union, not the alternative, when the value is
    /// neither: `content: 5` is "expected string or array of content parts", not "expected array".
    func decodeLastAlternative<T: Decodable>(_ type: T.Type, of union: any JSONTypeNamed.Type) throws -> T {
        do {
            return try decode(type)
        } catch DecodingError.typeMismatch(_, let context) where context.codingPath.count == codingPath.count {
            throw DecodingError.typeMismatch(union, context)
        }
    }
}
