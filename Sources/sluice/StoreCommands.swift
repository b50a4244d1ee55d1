import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceServer
import SluiceStore

/// `sluice keys`: create, list and revoke API keys in the store.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API keys (stored as hashes; a new key is shown once).",
        subcommands: [CreateKey.self, ListKeys.self, RevokeKey.self])
}

extension BudgetPeriod: ExpressibleByArgument {}

/// `sluice teams`: teams whose keys share a budget, rate limits and models.
struct Teams: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage teams: keys made with `keys create --team NAME` pass both their own limits and their team's.",
        subcommands: [CreateTeam.self, ListTeams.self])
}

struct CreateTeam: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a team.")

    @Argument(help: "The team's name (letters, digits, '-', '_', '.').") var name: String
    @Option(help: "Spending cap in USD for all the team's keys together.") var budget: Double?
    @Option(help: "When the budget starts again, at midnight UTC: daily, weekly (Mondays), monthly or total (never; the default).")
    var budgetPeriod: BudgetPeriod = .total
    @Option(help: "Soft alert at this share of the budget, e.g. 80%.") var budgetAlert: String?
    @Option(help: "Requests per minute for all the team's keys together.") var rpm: Int?
    @Option(help: "Tokens per minute for all the team's keys together.") var tpm: Int?
    @Option(help: "Comma list of models the team's keys may use (default: all).") var models: String?
    @OptionGroup var options: ConfigOptions

    var terms: TeamTerms {
        TeamTerms(
            name: name, rpm: rpm, tpm: tpm, budgetUSD: budget, budgetPeriod: budgetPeriod, budgetAlert: budgetAlert,
            models: models.map(ValueParsing.list) ?? [])
    }

    func validate() throws {
        do throws(APIError) {
            _ = try terms.issue(now: Date().timeIntervalSince1970)
        } catch {
            throw ValidationError(cliMessage(error, flags: CreateKey.flags))
        }
    }

    func run() async throws {
        let team: TeamRecord
        do throws(APIError) {
            team = try terms.issue(now: Date().timeIntervalSince1970)
        } catch {
            throw ValidationError(cliMessage(error, flags: CreateKey.flags))
        }
        try await withMigratedStore(options) { store in
            try await store.insertTeam(team)
            try await awaitRunningGateways(store)
        }
        print("created team \(team.id) (\(team.name))")
    }
}

struct ListTeams: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List teams and what each has spent.")

    @Flag(help: "Print JSON instead of a table.") var json = false
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let views = try await withMigratedStore(options) { store in try await TeamView.all(store: store) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(views), as: UTF8.self))
            return
        }
        let header = ["id", "name", "keys", "models", "rpm", "tpm", "budget", "period", "alert", "spent"]
        let rows = views.map { team -> [String] in
            let models: String = team.models.isEmpty ? "all" : team.models.joined(separator: ",")
            let budget: String = team.budgetUSD.map { String(format: "$%.2f", $0) } ?? "-"
            let alert: String = team.budgetAlert.map { "\(Int(($0 * 100).rounded()))%" } ?? "-"
            let limits: [String] = [team.rpm.map(String.init) ?? "-", team.tpm.map(String.init) ?? "-"]
            return [team.id, team.name, String(team.keys), models] + limits
                + [budget, team.budgetPeriod, alert, String(format: "$%.4f", team.spentUSD)]
        }
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
        for row in [header] + rows {
            print(row.enumerated().map { c, text in text + String(repeating: " ", count: widths[c] - text.count) }.joined(separator: "  "))
        }
    }
}

/// Opens the configured store, migrates it, and runs `body` with it; store failures exit 1 with a clean message.
func withMigratedStore<T: Sendable>(_ options: ConfigOptions, _ body: @Sendable (any GatewayStore) async throws -> T) async throws -> T {
    let config = try options.load()
    var logger = Logger(label: "sluice")
    logger.logLevel = .warning
    do {
        return try await withGatewayStore(url: config.database, logger: logger) { store in
            try await store.migrate()
            return try await body(store)
        }
    } catch let error as StoreError {
        throw ValidationError("database: \(error.description)")
    }
}

struct CreateKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a key and print it once, when every running gateway accepts it.")

    @Option(help: "A name to recognise the key by.") var name: String
    @Option(help: "Requests per minute allowed.") var rpm: Int?
    @Option(help: "Tokens per minute allowed.") var tpm: Int?
    @Option(help: "Spending cap in USD.") var budget: Double?
    @Option(help: "Comma list of models the key may use (default: all).") var models: String?
    @Option(help: "Expiry: a date (2026-12-31) or a duration from now (30d).") var expires: String?
    @Flag(name: .customLong("allow-overflow"), help: "Let the key's requests overflow to hosted upstreams when local ones are busy.")
    var allowOverflow = false
    @Option(help: "interactive (default) or batch: batch requests wait behind interactive ones and get a share of each upstream.")
    var priority: PriorityClass = .interactive
    @Option(help: "When the budget starts again, at midnight UTC: daily, weekly (Mondays), monthly or total (never; the default).")
    var budgetPeriod: BudgetPeriod = .total
    @Option(help: "Soft alert at this share of the budget, e.g. 80%: logged, counted and sent to budget-webhook once per period.")
    var budgetAlert: String?
    @Option(help: "The team (from `sluice teams create`) whose budget and limits also apply.") var team: String?
    @OptionGroup var options: ConfigOptions

    func terms(teamID: String? = nil) -> KeyTerms {
        var terms = KeyTerms(
            name: name, rpm: rpm, tpm: tpm, budgetUSD: budget, models: models.map(ValueParsing.list) ?? [], expires: expires,
            budgetPeriod: budgetPeriod, budgetAlert: budgetAlert, teamID: teamID)
        terms.allowOverflow = allowOverflow
        terms.priority = priority
        return terms
    }

    /// The admin API's rules, with its field names turned into this command's flags.
    func validate() throws {
        do throws(APIError) {
            try terms().check(now: Date().timeIntervalSince1970)
        } catch {
            throw ValidationError(cliMessage(error, flags: Self.flags))
        }
    }

    static let flags = ["budget_usd": "budget", "budget_alert": "budget-alert", "budget_period": "budget-period"]

    func run() async throws {
        let team = self.team
        let terms = self.terms()
        let issued = try await withMigratedStore(options) { store in
            var terms = terms
            if let team {
                guard let found = try await store.listTeams().first(where: { $0.name == team }) else {
                    throw ValidationError("--team: no team named \(team) (create it with `sluice teams create`)")
                }
                terms.teamID = found.id
            }
            let issued: IssuedKey
            do throws(APIError) {
                issued = try terms.issue(now: Date().timeIntervalSince1970)
            } catch {
                throw ValidationError(cliMessage(error, flags: Self.flags))
            }
            try await store.insertKey(issued.record)
            try await awaitRunningGateways(store)
            return issued
        }
        print(issued.secret)
        FileHandle.standardError.write(
            Data("created key \(issued.record.id) (\(issued.record.name)); the secret above is shown only once\n".utf8))
    }
}

/// An API error's sentence as a command-line message: `Invalid value for 'rpm': …` becomes `--rpm: …`.
func cliMessage(_ error: APIError, flags: [String: String] = [:]) -> String {
    guard let param = error.param, let colon = error.message.range(of: "': ") else { return error.message }
    return "--\(flags[param] ?? param): \(error.message[colon.upperBound...])"
}

struct ListKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List keys (never their secrets) and what each has spent.")

    @Flag(help: "Print JSON instead of a table.") var json = false
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let (keys, spent, teams) = try await withMigratedStore(options) { store in
            let keys = try await store.listKeys()
            let teams = Dictionary(try await store.listTeams().map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
            return (keys, try await store.spend(keyIDs: keys.map(\.id)), teams)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(keys.map { APIKeyView($0, spentUSD: spent[$0.id] ?? 0) }), as: UTF8.self))
            return
        }
        let now = Date().timeIntervalSince1970
        let header = ["id", "name", "prefix", "created", "last used", "expires", "models", "rpm", "tpm", "budget", "period", "spent", "team", "status"]
        let teamNames = teams
        func day(_ t: Double?) -> String { t.map { Timestamp.rfc3339($0).prefix(16).replacingOccurrences(of: "T", with: " ") } ?? "-" }
        let rows = keys.map { key in
            [
                key.id, key.name, key.prefix + "…", day(key.createdAt), day(key.lastUsedAt), day(key.expiresAt),
                key.allowedModels.isEmpty ? "all" : key.allowedModels.joined(separator: ","), key.rpm.map(String.init) ?? "-",
                key.tpm.map(String.init) ?? "-", key.budgetUSD.map { String(format: "$%.2f", $0) } ?? "-",
                key.budgetPeriod.rawValue, String(format: "$%.4f", spent[key.id] ?? 0),
                key.teamID.map { teamNames[$0] ?? $0 } ?? "-",
                key.revoked ? "revoked" : (key.expiresAt.map { $0 <= now } == true ? "expired" : "active"),
            ]
        }
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
        for row in [header] + rows {
            print(row.enumerated().map { c, text in text + String(repeating: " ", count: widths[c] - text.count) }.joined(separator: "  "))
        }
    }
}

struct RevokeKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke a key; returns once every running gateway refuses it.")

    @Argument(help: "The key's id (from `sluice keys list`).") var id: String
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let id = self.id
        let revoked = try await withMigratedStore(options) { store in
            guard try await store.revokeKey(id: id) else { return false }
            try await awaitRunningGateways(store)
            return true
        }
        guard revoked else { throw ValidationError("no key with id \(id)") }
        print("revoked \(id)")
    }
}

/// `sluice usage`: the usage, cost and savings report.
struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Usage, cost and savings report from the store.")

    @Option(help: "Start: a duration back from now (24h, 7d) or a date.") var since = "24h"
    @Option(help: "End: a duration back from now or a date (default: now).") var until: String?
    @Option(help: "Group by key, team, model, day or route.") var by: String?
    @Option(help: "Only this key id.") var key: String?
    @Option(help: "Only this model.") var model: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var options: ConfigOptions

    func validate() throws {
        let now = Date().timeIntervalSince1970
        if TimeArgument.past(since, now: now) == nil {
            throw ValidationError("--since must be a duration like 24h (at most 100 years) or a date")
        }
        if let until, TimeArgument.past(until, now: now) == nil {
            throw ValidationError("--until must be a duration (at most 100 years) or a date")
        }
        if let by, UsageGrouping(rawValue: by) == nil { throw ValidationError("--by must be key, team, model, day or route") }
    }

    func run() async throws {
        let now = Date().timeIntervalSince1970
        let query = UsageQuery(
            since: TimeArgument.past(since, now: now)!, until: until.flatMap { TimeArgument.past($0, now: now) }, keyID: key,
            model: model)
        let grouping = by.flatMap(UsageGrouping.init(rawValue:))
        let report = try await withMigratedStore(options) { store in
            try await UsageReport.make(store: store, query: query, grouping: grouping)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.table())
        }
    }
}

/// Returns once every gateway running on this store serves its current keys, so that the command's change takes
/// effect on the next request anywhere; says so on stderr when some instance has not confirmed in time, or has
/// gone silent and may still hold the old keys.
func awaitRunningGateways(_ store: any GatewayStore) async throws {
    let outcome = try await KeyPropagation.awaitInstances(store: store)
    if outcome.lagging > 0 {
        FileHandle.standardError.write(
            Data("warning: \(outcome.lagging) running gateway instance(s) have not confirmed the key change yet\n".utf8))
    }
    if outcome.silent > 0 {
        FileHandle.standardError.write(
            Data(("warning: \(outcome.silent) gateway instance(s) have not reported for over \(Int(KeyPropagation.liveWindow)) s "
                + "(stopped without shutting down, or cut off from the store); if still running, they serve the old keys "
                + "until they reach the store again\n").utf8))
    }
}

extension PriorityClass: ExpressibleByArgument {}
