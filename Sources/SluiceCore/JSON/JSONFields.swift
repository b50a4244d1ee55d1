import Foundation
import NIOCore
import NIOFoundationCompat

/// Reads members out of one JSON object, every failure a 400 `APIError` naming the member by its full path
/// (`messages[2].content[0].source.data`).
///
/// Dialect decoders walk bodies with this rather than `Codable` because they must see which members they did not
/// read (to carry or refuse them) and must accept members whose type depends on a sibling (`type`).
struct JSONFields {
    let members: [String: JSONValue]
    /// The object's own path; "" for the body.
    let path: String

    init(_ value: JSONValue, path: String) throws(APIError) {
        guard case .object(let members) = value else {
            if path.isEmpty { throw .invalidJSON("the request body must be a JSON object.") }
            throw .invalidType(path, expected: "object")
        }
        self.members = members
        self.path = path
    }

    /// Parses a request body that must be a JSON object.
    static func body(_ buffer: ByteBuffer) throws(APIError) -> JSONFields {
        guard buffer.readableBytes > 0 else { throw .invalidJSON("the request body is empty.") }
        // The same strict reading as every other route: a key given twice (which an upstream that keeps the last
        // copy would serve differently from what was checked), NUL, bad UTF-8, numbers out of range, depth.
        try RequestDecoding.check(buffer)
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: buffer)
        } catch {
            throw .invalidJSON("the request body is not valid JSON.")
        }
        return try JSONFields(value, path: "")
    }

    func name(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// The member, nil when absent or null.
    subscript(key: String) -> JSONValue? {
        guard let value = members[key], value != .null else { return nil }
        return value
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let value = self[key] else { return nil }
        guard case .string(let s) = value else { throw .invalidType(name(key), expected: "string") }
        return s
    }

    func requiredString(_ key: String) throws(APIError) -> String {
        guard let s = try string(key) else { throw .missingField(name(key)) }
        return s
    }

    func int(_ key: String) throws(APIError) -> Int? {
        switch self[key] {
        case nil: return nil
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: throw .invalidType(name(key), expected: "integer")
        }
    }

    func double(_ key: String) throws(APIError) -> Double? {
        guard let value = self[key] else { return nil }
        guard let d = value.doubleValue else { throw .invalidType(name(key), expected: "number") }
        return d
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard case .bool(let b) = value else { throw .invalidType(name(key), expected: "boolean") }
        return b
    }

    func array(_ key: String) throws(APIError) -> [JSONValue]? {
        guard let value = self[key] else { return nil }
        guard case .array(let a) = value else { throw .invalidType(name(key), expected: "array") }
        return a
    }

    func requiredArray(_ key: String) throws(APIError) -> [JSONValue] {
        guard let a = try array(key) else { throw .missingField(name(key)) }
        return a
    }

    func object(_ key: String) throws(APIError) -> JSONFields? {
        guard let value = self[key] else { return nil }
        return try JSONFields(value, path: name(key))
    }

    func stringArray(_ key: String) throws(APIError) -> [String]? {
        guard let items = try array(key) else { return nil }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else { throw .invalidType("\(name(key))[\(i)]", expected: "string") }
            out.append(s)
        }
        return out
    }

    /// The members not in `known`, keyed by their path relative to `prefix` ("" keeps bare keys).
    func unknown(_ known: Set<String>, prefix: String = "") -> Generation.Extensions {
        var out: Generation.Extensions = [:]
        for (key, value) in members where !known.contains(key) {
            out[prefix.isEmpty ? key : prefix + "." + key] = value
        }
        return out
    }

    /// Path of element `i` of array member `key`.
    func element(_ key: String, _ i: Int) -> String { "\(name(key))[\(i)]" }
}

extension JSONValue {
    /// Compact JSON text with sorted keys, as `WireJSON` writes it.
    var jsonText: String {
        var buffer = ByteBuffer()
        buffer.writeJSONValue(self)
        return String(buffer: buffer)
    }

    /// Parses JSON text; nil when it is not valid JSON.
    init?(jsonText: String) {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(jsonText.utf8)) else { return nil }
        self = value
    }
}
