/// A team: keys that share a budget, rate limits and an allowed-model list on top of their own.
///
/// A key's request must pass both its own limits and its team's; the team's spend is the sum of its keys'.
public struct TeamRecord: Sendable, Equatable, Codable {
    /// Short public identifier (`team_…`).
    public var id: String
    /// Unique; what `keys create --team NAME` refers to.
    public var name: String
    public var createdAt: Double
    /// Models the team's keys may use; empty means all.
    public var allowedModels: [String]
    public var rpm: Int?
    public var tpm: Int?
    public var budgetUSD: Double?
    public var budgetPeriod: BudgetPeriod
    /// Fraction of the budget (0.8 for `80%`) at which a soft alert fires once per period.
    public var budgetAlert: Double?

    public init(
        id: String, name: String, createdAt: Double, allowedModels: [String] = [], rpm: Int? = nil, tpm: Int? = nil,
        budgetUSD: Double? = nil, budgetPeriod: BudgetPeriod = .total, budgetAlert: Double? = nil
    ) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.allowedModels = allowedModels
        self.rpm = rpm
        self.tpm = tpm
        self.budgetUSD = budgetUSD
        self.budgetPeriod = budgetPeriod
        self.budgetAlert = budgetAlert
    }
}

/// The models a key of this team may use: those both lists allow (an empty list allows all), or nil when they
/// allow nothing in common.
public func effectiveModels(key: [String], team: [String]) -> [String]? {
    if team.isEmpty { return key }
    if key.isEmpty { return team }
    let common = key.filter(team.contains)
    return common.isEmpty ? nil : common
}
