import Foundation

/// `POST /v1/embeddings` request.
public struct EmbeddingsRequest: Codable, Sendable, Equatable {
    public var model: String
    public var input: EmbeddingInput
    public var encodingFormat: String?
    public var dimensions: Int?
    public var user: String?

    public init(model: String, input: EmbeddingInput) {
        self.model = model
        self.input = input
    }

    enum CodingKeys: String, CodingKey {
        case model, input, dimensions, user
        case encodingFormat = "encoding_format"
    }
}

/// Embedding input: one string or several.
public enum EmbeddingInput: Codable, Sendable, Equatable, JSONTypeNamed {
    public static let jsonTypeName = "string or array of strings"

    case one(String)
    case many([String])

    public var values: [String] {
        switch self {
        case .one(let s): [s]
        case .many(let a): a
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .one(s)
        } else {
            self = .many(try c.decodeLastAlternative([String].self, of: Self.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .one(let s): try c.encode(s)
        case .many(let a): try c.encode(a)
        }
    }
}

/// `POST /v1/embeddings` response.
public struct EmbeddingsResponse: Codable, Sendable, Equatable {
    public var object: String = "list"
    public var data: [Embedding]
    public var model: String
    public var usage: EmbeddingUsage

    /// One input's vector.
    public struct Embedding: Codable, Sendable, Equatable {
        public var object: String = "embedding"
        public var index: Int
        public var embedding: Vector

        public init(index: Int, embedding: Vector) {
            self.index = index
            self.embedding = embedding
        }
    }

    /// A vector as floats, or as base64 of little-endian float32 (`encoding_format: base64`).
    public enum Vector: Codable, Sendable, Equatable {
        case floats([Double])
        case base64(String)

        public init(_ values: [Double], encodingFormat: String?) {
            if encodingFormat == "base64" {
                var bytes = [UInt8]()
                bytes.reserveCapacity(values.count * 4)
                for v in values {
                    let bits = Float(v).bitPattern.littleEndian
                    withUnsafeBytes(of: bits) { bytes.append(contentsOf: $0) }
                }
                self = .base64(Data(bytes).base64EncodedString())
            } else {
                self = .floats(values)
            }
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                self = .base64(s)
            } else {
                self = .floats(try c.decode([Double].self))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .floats(let f): try c.encode(f)
            case .base64(let s): try c.encode(s)
            }
        }
    }

    /// Token counts of an embeddings call (no completion tokens).
    public struct EmbeddingUsage: Codable, Sendable, Equatable {
        public var promptTokens: Int
        public var totalTokens: Int

        public init(promptTokens: Int) {
            self.promptTokens = promptTokens
            self.totalTokens = promptTokens
        }

        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens"
            case totalTokens = "total_tokens"
        }
    }

    public init(data: [Embedding], model: String, usage: EmbeddingUsage) {
        self.data = data
        self.model = model
        self.usage = usage
    }
}
