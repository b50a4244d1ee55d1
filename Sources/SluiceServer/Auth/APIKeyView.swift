import SluiceCore

/// A key as the admin API and `sluice keys list --json` show it: never the secret or its hash.
public struct APIKeyView: Codable, Sendable {
    public var id: String
    public var name: String
    public var prefix: String
    public var createdAt: Double
    public var lastUsedAt: Double?
    public var expiresAt: Double?
    public var models: [String]
    public var rpm: Int?
    public var tpm: Int?
    public var budgetUSD: Double?
    public var budgetPeriod: String
    public var budgetAlert: Double?
    public var teamID: String?
    /// What the key has spent in all (the figure its budget is checked against); absent in a create's answer.
    public var spentUSD: Double?
    public var revoked: Bool
    /// May overflow to hosted upstreams.
    public var allowOverflow: Bool?
    /// `interactive` or `batch`.
    public var priority: String?
    /// Only in the answer to the request that created the key.
    public var key: String?

    enum CodingKeys: String, CodingKey {
        case id, name, prefix
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
        case expiresAt = "expires_at"
        case models, rpm, tpm
        case budgetUSD = "budget_usd"
        case spentUSD = "spent_usd"
        case budgetPeriod = "budget_period"
        case budgetAlert = "budget_alert"
        case teamID = "team_id"
        case revoked, key
        case allowOverflow = "allow_overflow"
        case priority
    }

    public init(_ record: APIKeyRecord, secret: String? = nil, spentUSD: Double? = nil) {
        self.spentUSD = spentUSD
        id = record.id
        name = record.name
        prefix = record.prefix
        createdAt = record.createdAt
        lastUsedAt = record.lastUsedAt
        expiresAt = record.expiresAt
        models = record.allowedModels
        rpm = record.rpm
        tpm = record.tpm
        budgetUSD = record.budgetUSD
        budgetPeriod = record.budgetPeriod.rawValue
        budgetAlert = record.budgetAlert
        teamID = record.teamID
        revoked = record.revoked
        allowOverflow = record.allowOverflow
        priority = record.priority.rawValue
        key = secret
    }
}

