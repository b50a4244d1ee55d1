import Foundation
import NIOCore
import NIOFoundationCompat

/// Strict decoding of request bodies into wire types, with errors that name the offending field.
public enum RequestDecoding {
    /// Decodes `T` from a JSON body, mapping every decoding failure to a 400 `APIError`.
    public static func decode<T: Decodable>(_ type: T.Type, from body: ByteBuffer) throws(APIError) -> T {
        guard body.readableBytes > 0 else { throw .invalidJSON("the request body is empty.") }
        guard firstNonSpaceByte(body) == UInt8(ascii: "{") else {
            // Decoding would also fail, but a non-object body deserves its own sentence.
            if (try? JSONSerialization.jsonObject(with: Data(buffer: body), options: [.fragmentsAllowed])) != nil {
                throw .invalidJSON("the request body must be a JSON object.")
            }
            throw .invalidJSON("the request body is not valid JSON.")
        }
        do {
            return try JSONDecoder().decode(T.self, from: body)
        } catch let error as DecodingError {
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
                let field = nonIntegerField(in: body, of: T.self)
            {
                // Foundation reports a fractional number in an Int field as corrupt data without a path.
                throw .invalidType(field, expected: "integer")
            }
            throw apiError(for: error)
        } catch {
            throw .invalidJSON("the request body is not valid JSON.")
        }
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
        switch type {
        case is String.Type: "string"
        case is Bool.Type: "boolean"
        case is Int.Type, is Int64.Type, is Int32.Type: "integer"
        case is Double.Type, is Float.Type: "number"
        case is any Collection.Type: "array"
        default: "object"
        }
    }

    /// The first top-level integer field of `T` that holds a non-integral number, if the body is otherwise valid JSON.
    static func nonIntegerField<T>(in body: ByteBuffer, of type: T.Type) -> String? {
        guard let fields = (type as? any HasIntegerFields.Type)?.integerFields,
            let value = try? JSONDecoder().decode(JSONValue.self, from: body)
        else { return nil }
        return fields.first { field in
            if case .double = value[field] { return true }
            return false
        }
    }

    private static func firstNonSpaceByte(_ body: ByteBuffer) -> UInt8? {
        body.readableBytesView.first { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }
    }
}

/// A request type whose integer fields are named, so a fractional number in one can be reported by name.
public protocol HasIntegerFields {
    static var integerFields: [String] { get }
}

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

    static func checkModel(_ model: String) throws(APIError) {
        if model.isEmpty { throw .invalidValue("model", "must not be empty.") }
        if model.utf8.count > 256 { throw .invalidValue("model", "is too long.") }
    }
}

extension ChatCompletionRequest: ValidatedRequest, HasIntegerFields {
    public static let integerFields = ["max_tokens", "max_completion_tokens", "n", "seed"]
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
        if let format = responseFormat, !["text", "json_object", "json_schema"].contains(format.type) {
            throw .invalidValue("response_format.type", "must be one of text, json_object, json_schema.")
        }
        for (i, tool) in (tools ?? []).enumerated() {
            if tool.type != "function" { throw .invalidValue("tools[\(i)].type", "only 'function' tools are supported.") }
            if tool.function.name.isEmpty { throw .invalidValue("tools[\(i)].function.name", "must not be empty.") }
        }
    }
}

extension CompletionRequest: ValidatedRequest, HasIntegerFields {
    public static let integerFields = ["max_tokens", "n", "seed"]
    public func validate() throws(APIError) {
        try SamplingChecks.checkModel(model)
        try SamplingChecks.check(
            temperature: temperature, topP: topP, maxTokens: maxTokens, maxTokensField: "max_tokens", n: n,
            presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, stop: stop)
    }
}

extension EmbeddingsRequest: ValidatedRequest, HasIntegerFields {
    public static let integerFields = ["dimensions"]
    public func validate() throws(APIError) {
        try SamplingChecks.checkModel(model)
        if input.values.isEmpty { throw .invalidValue("input", "must not be empty.") }
        if let d = dimensions, d < 1 { throw .invalidValue("dimensions", "must be at least 1.") }
        if let f = encodingFormat, f != "float", f != "base64" {
            throw .invalidValue("encoding_format", "must be 'float' or 'base64'.")
        }
    }
}
