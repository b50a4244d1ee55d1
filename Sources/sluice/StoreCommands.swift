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
    @OptionGroup var options: ConfigOptions

    var terms: KeyTerms {
        var terms = KeyTerms(name: name, rpm: rpm, tpm: tpm, budgetUSD: budget, models: models.map(ValueParsing.list) ?? [], expires: expires)
        terms.allowOverflow = allowOverflow
        terms.priority = priority
        return terms
    }

    /// The admin API's rules, with its field names turned into this command's flags.
    func validate() throws {
        do throws(APIError) {
            try terms.check(now: Date().timeIntervalSince1970)
        } catch {
            throw ValidationError(cliMessage(error, flags: ["budget_usd": "budget"]))
        }
    }

    func run() async throws {
        let issued: IssuedKey
        do throws(APIError) {
            issued = try terms.issue(now: Date().timeIntervalSince1970)
        } catch {
            throw ValidationError(cliMessage(error, flags: ["budget_usd": "budget"]))
        }
        try await withMigratedStore(options) { store in
            try await store.insertKey(issued.record)
            try await awaitRunningGateways(store)
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
        let (keys, spent) = try await withMigratedStore(options) { store in
            let keys = try await store.listKeys()
            return (keys, try await store.spend(keyIDs: keys.map(\.id)))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(keys.map { APIKeyView($0, spentUSD: spent[$0.id] ?? 0) }), as: UTF8.self))
            return
        }
        let now = Date().timeIntervalSince1970
        let header = ["id", "name", "prefix", "created", "last used", "expires", "models", "rpm", "tpm", "budget", "spent", "status"]
        func day(_ t: Double?) -> String { t.map { Timestamp.rfc3339($0).prefix(16).replacingOccurrences(of: "T", with: " ") } ?? "-" }
        let rows = keys.map { key in
            [
                key.id, key.name, key.prefix + "…", day(key.createdAt), day(key.lastUsedAt), day(key.expiresAt),
                key.allowedModels.isEmpty ? "all" : key.allowedModels.joined(separator: ","), key.rpm.map(String.init) ?? "-",
                key.tpm.map(String.init) ?? "-", key.budgetUSD.map { String(format: "$%.2f", $0) } ?? "-",
                String(format: "$%.4f", spent[key.id] ?? 0),
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
    @Option(help: "Group by key, model, day or route.") var by: String?
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
        if let by, UsageGrouping(rawValue: by) == nil { throw ValidationError("--by must be key, model, day or route") }
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
