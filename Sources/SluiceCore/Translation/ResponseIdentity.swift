/// The id and creation time a translated response is stamped with; injected so translation stays pure.
public struct ResponseIdentity: Sendable, Equatable {
    public var id: String
    public var created: Int

    public init(id: String, created: Int) {
        self.id = id
        self.created = created
    }
}
