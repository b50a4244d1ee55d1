import SluiceCore
import SluiceStore

/// A team as `/admin/teams` and `sluice teams list --json` show it, with what its keys have spent together.
public struct TeamView: Codable, Sendable {
    public var id: String
    public var name: String
    public var createdAt: Double
    public var models: [String]
    public var rpm: Int?
    public var tpm: Int?
    public var budgetUSD: Double?
    public var budgetPeriod: String
    public var budgetAlert: Double?
    /// The sum of its keys' spend (revoked keys included).
    public var spentUSD: Double
    /// How many keys belong to it.
    public var keys: Int

    enum CodingKeys: String, CodingKey {
        case id, name
        case createdAt = "created_at"
        case models, rpm, tpm
        case budgetUSD = "budget_usd"
        case budgetPeriod = "budget_period"
        case budgetAlert = "budget_alert"
        case spentUSD = "spent_usd"
        case keys
    }

    public init(_ team: TeamRecord, spentUSD: Double, keys: Int) {
        id = team.id
        name = team.name
        createdAt = team.createdAt
        models = team.allowedModels
        rpm = team.rpm
        tpm = team.tpm
        budgetUSD = team.budgetUSD
        budgetPeriod = team.budgetPeriod.rawValue
        budgetAlert = team.budgetAlert
        self.spentUSD = spentUSD
        self.keys = keys
    }

    /// Every team with its spend, read from the store.
    public static func all(store: any GatewayStore) async throws -> [TeamView] {
        let teams = try await store.listTeams()
        let keys = try await store.listKeys().filter { $0.teamID != nil }
        let spent = try await store.spend(keyIDs: keys.map(\.id))
        return teams.map { team in
            let members = keys.filter { $0.teamID == team.id }
            return TeamView(team, spentUSD: members.reduce(0) { $0 + (spent[$1.id] ?? 0) }, keys: members.count)
        }
    }
}
