/// A model an Ollama server holds in memory, as its `/api/ps` lists it.
public struct LoadedModel: Sendable, Equatable, Codable {
    public var name: String
    /// Bytes of the model in GPU memory.
    public var sizeVRAM: Int?
    /// The context window it was loaded with (Ollama 0.6 and later report it).
    public var contextLength: Int?

    public init(name: String, sizeVRAM: Int? = nil, contextLength: Int? = nil) {
        self.name = name
        self.sizeVRAM = sizeVRAM
        self.contextLength = contextLength
    }

    enum CodingKeys: String, CodingKey {
        case name
        case sizeVRAM = "size_vram"
        case contextLength = "context_length"
    }

    /// The models of an `/api/ps` answer (`{"models": [{"name", "size_vram", "context_length", …}]}`); nil when it
    /// is not one.
    public static func list(fromPS body: JSONValue) -> [LoadedModel]? {
        guard let models = body["models"]?.arrayValue else { return nil }
        return models.compactMap { entry in
            guard let name = entry["name"]?.stringValue ?? entry["model"]?.stringValue else { return nil }
            return LoadedModel(name: name, sizeVRAM: entry["size_vram"]?.intValue, contextLength: entry["context_length"]?.intValue)
        }
    }
}
