/// A stored API key: everything but the secret, of which only the SHA-256 hash is kept.
public struct APIKeyRecord: Sendable, Equatable, Codable {
    /// Short public identifier (e.g. `key_3f9a…`), safe to show and log.
    public var id: String
    public var name: String
    /// Lowercase hex SHA-256 of the full secret.
    public var hash: String
    /// The first characters of the secret (`sk-sluice-AbCd`), to tell keys apart in listings.
    public var prefix: String
    /// Unix seconds.
    public var createdAt: Double
    public var lastUsedAt: Double?
    public var expiresAt: Double?
    /// Models the key may use; empty means all.
    public var allowedModels: [String]
    /// Requests per minute; nil means no per-key limit.
    public var rpm: Int?
    /// Tokens per minute; nil means no per-key limit.
    public var tpm: Int?
    /// Spending cap in USD; nil means none.
    public var budgetUSD: Double?
    /// When the budget starts again (`total`: never).
    public var budgetPeriod: BudgetPeriod
    /// Fraction of the budget (0.8 for `80%`) at which a soft alert fires once per period.
    public var budgetAlert: Double?
    /// The team whose budget and limits also apply; nil for none.
    public var teamID: String?
    public var revoked: Bool
    /// Whether its requests may go to a hosted `overflow` upstream when no local one can take them in time.
    public var allowOverflow = false
    /// Its requests' class when upstreams are busy: `interactive` ones are served first, `batch` ones get a share.
    public var priority = PriorityClass.interactive

    public init(
        id: String, name: String, hash: String, prefix: String, createdAt: Double, lastUsedAt: Double? = nil,
        expiresAt: Double? = nil, allowedModels: [String] = [], rpm: Int? = nil, tpm: Int? = nil, budgetUSD: Double? = nil,
        revoked: Bool = false, budgetPeriod: BudgetPeriod = .total, budgetAlert: Double? = nil, teamID: String? = nil
    ) {
        self.id = id
        self.name = name
        self.hash = hash
        self.prefix = prefix
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.expiresAt = expiresAt
        self.allowedModels = allowedModels
        self.rpm = rpm
        self.tpm = tpm
        self.budgetUSD = budgetUSD
        self.revoked = revoked
        self.budgetPeriod = budgetPeriod
        self.budgetAlert = budgetAlert
        self.teamID = teamID
    }
}
