/// `GET /v1/models` response.
public struct ModelList: Codable, Sendable, Equatable {
    public var object: String = "list"
    public var data: [Model]

    public init(data: [Model]) { self.data = data }
}

/// One model as OpenAI describes it.
public struct Model: Codable, Sendable, Equatable {
    public var id: String
    public var object: String = "model"
    public var created: Int
    public var ownedBy: String

    public init(id: String, created: Int, ownedBy: String) {
        self.id = id
        self.created = created
        self.ownedBy = ownedBy
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created
        case ownedBy = "owned_by"
    }
}
