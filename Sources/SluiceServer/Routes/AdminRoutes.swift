import Foundation
import Hummingbird
import Logging
import NIOCore
import SluiceCore
import SluiceStore

/// `/admin/keys`, `/admin/usage`, `/admin/config`: the JSON admin API (master key only, enforced by
/// ``AccessMiddleware``).
struct AdminRoutes {
    let directory: KeyDirectory
    let store: (any GatewayStore)?
    let configuration: GatewayConfiguration
    /// Reloads this instance's keys at once after a change here; nil without a store.
    let keySync: KeyDirectorySync?
    let now: @Sendable () -> Double


    /// The body of `POST /admin/keys`.
    struct CreateKey: Decodable, HasIntegerFields {
        static let integerFields = ["rpm", "tpm"]

        var name: String
        var rpm: Int?
        var tpm: Int?
        var budgetUSD: Double?
        var models: [String]?
        /// A date or a duration from now (`30d`).
        var expires: String?
        var allowOverflow: Bool?
        var priority: PriorityClass?
        var budgetPeriod: BudgetPeriod?
        /// `80%` or `0.8`.
        var budgetAlert: String?
        /// The team's name.
        var team: String?

        enum CodingKeys: String, CodingKey {
            case name, rpm, tpm
            case budgetUSD = "budget_usd"
            case models, expires, team
            case allowOverflow = "allow_overflow"
            case priority
            case budgetPeriod = "budget_period"
            case budgetAlert = "budget_alert"
        }
    }

    /// The body of `POST /admin/teams`.
    struct CreateTeam: Decodable, HasIntegerFields {
        static let integerFields = ["rpm", "tpm"]

        var name: String
        var rpm: Int?
        var tpm: Int?
        var budgetUSD: Double?
        var budgetPeriod: BudgetPeriod?
        var budgetAlert: String?
        var models: [String]?

        enum CodingKeys: String, CodingKey {
            case name, rpm, tpm, models
            case budgetUSD = "budget_usd"
            case budgetPeriod = "budget_period"
            case budgetAlert = "budget_alert"
        }
    }

    struct TeamList: Codable {
        var data: [TeamView]
    }

    struct KeyList: Codable {
        var data: [APIKeyView]
    }

    struct RecordList: Codable {
        var data: [UsageRecord]
    }

    func addRoutes(to group: RouterGroup<SluiceRequestContext>) {
        group.get("keys") { _, _ in
            let store = try requireStore()
            let keys = try await store.listKeys()
            let spent = try await store.spend(keyIDs: keys.map(\.id))
            return try JSONResponse(KeyList(data: keys.map { APIKeyView($0, spentUSD: spent[$0.id] ?? 0) })).response(status: .ok)
        }
        group.post("keys") { request, context in
            var request = request
            let body = try await request.collectBody(upTo: 64 * 1024)
            let create = try RequestDecoding.decode(CreateKey.self, from: body)
            var teamID: String?
            if let team = create.team {
                guard let found = try await requireStore().listTeams().first(where: { $0.name == team }) else {
                    throw APIError.invalidValue("team", "no team named '\(team)'.")
                }
                teamID = found.id
            }
            let issued = try issue(create, teamID: teamID)
            try await requireStore().insertKey(issued.record)
            context.logger.notice("API key created", metadata: ["key_id": .string(issued.record.id)])
            try await keysChanged(logger: context.logger)
            return try JSONResponse(APIKeyView(issued.record, secret: issued.secret)).response(status: .created)
        }
        group.delete("keys/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard try await requireStore().revokeKey(id: id) else {
                throw APIError(status: 404, type: "invalid_request_error", code: "key_not_found", message: "No API key with id '\(id)'.")
            }
            context.logger.notice("API key revoked", metadata: ["key_id": .string(id)])
            try await keysChanged(logger: context.logger)
            return Response(status: .noContent)
        }
        group.get("teams") { _, _ in
            try JSONResponse(TeamList(data: try await TeamView.all(store: requireStore()))).response(status: .ok)
        }
        group.post("teams") { request, context in
            var request = request
            let body = try await request.collectBody(upTo: 64 * 1024)
            let create = try RequestDecoding.decode(CreateTeam.self, from: body)
            let team = try TeamTerms(
                name: create.name, rpm: create.rpm, tpm: create.tpm, budgetUSD: create.budgetUSD,
                budgetPeriod: create.budgetPeriod ?? .total, budgetAlert: create.budgetAlert, models: create.models ?? []
            ).issue(now: now())
            let store = try requireStore()
            guard try await !store.listTeams().contains(where: { $0.name == team.name }) else {
                throw APIError(status: 409, type: "invalid_request_error", code: "team_exists", message: "A team named '\(team.name)' exists already.")
            }
            try await store.insertTeam(team)
            context.logger.notice("team created", metadata: ["team_id": .string(team.id)])
            try await keysChanged(logger: context.logger)
            return try JSONResponse(TeamView(team, spentUSD: 0, keys: 0)).response(status: .created)
        }
        group.get("usage") { request, _ in
            let (query, grouping) = try usageQuery(request.uri.queryParameters)
            let report = try await UsageReport.make(store: requireStore(), query: query, grouping: grouping)
            return try JSONResponse(report).response(status: .ok)
        }
        group.get("usage/recent") { request, _ in
            let parameters = request.uri.queryParameters
            let (query, _) = try usageQuery(parameters)
            var limit = 100
            if let text = parameters["limit"] {
                // A number that is no Int (`1e30`, 30 digits) is refused like one out of range, not read as the default.
                guard let value = Int(text), (1...1000).contains(value) else {
                    throw APIError.invalidValue("limit", "must be an integer from 1 to 1000.")
                }
                limit = value
            }
            let records = try await requireStore().recentUsage(query, limit: limit)
            return try JSONResponse(RecordList(data: records)).response(status: .ok)
        }
        group.get("config") { _, _ in
            try JSONResponse(JSONValue.object(configuration.redactedSummary)).response(status: .ok)
        }
    }

    /// Answers a key change only once every running instance serves it (DESIGN.md: a revoked key is refused on the
    /// next request in every instance), this one first.
    func keysChanged(logger: Logger) async throws {
        guard let store, let keySync else { return }
        try await keySync.refresh()
        let outcome = try await KeyPropagation.awaitInstances(store: store, now: now)
        if outcome.lagging > 0 {
            logger.warning("key change not yet confirmed by every running instance", metadata: ["lagging": "\(outcome.lagging)"])
        }
        if outcome.silent > 0 {
            logger.warning(
                "gateway instances silent for over \(Int(KeyPropagation.liveWindow)) s may still serve the old keys",
                metadata: ["silent": "\(outcome.silent)"])
        }
    }

    func requireStore() throws -> any GatewayStore {
        guard let store else {
            throw APIError(status: 503, type: "server_error", code: "no_store", message: "This gateway runs without a store.")
        }
        return store
    }

    func issue(_ create: CreateKey, teamID: String?) throws -> IssuedKey {
        var terms = KeyTerms(
            name: create.name, rpm: create.rpm, tpm: create.tpm, budgetUSD: create.budgetUSD, models: create.models ?? [],
            expires: create.expires, budgetPeriod: create.budgetPeriod ?? .total, budgetAlert: create.budgetAlert, teamID: teamID)
        terms.allowOverflow = create.allowOverflow ?? false
        terms.priority = create.priority ?? .interactive
        return try terms.issue(now: now())
    }

    /// `since` (default 24h), `until`, `key`, `model` and `by` from the query string.
    func usageQuery(_ parameters: Parameters) throws -> (UsageQuery, UsageGrouping?) {
        let now = self.now()
        let sinceText = parameters["since"].map(String.init) ?? "24h"
        guard let since = TimeArgument.past(sinceText, now: now) else {
            throw APIError.invalidValue("since", "must be a duration like 24h or 7d (at most 100 years), or a date like 2026-11-01.")
        }
        var until: Double?
        if let text = parameters["until"] {
            guard let value = TimeArgument.past(String(text), now: now) else {
                throw APIError.invalidValue("until", "must be a duration like 1h (at most 100 years) or a date.")
            }
            until = value
        }
        var grouping: UsageGrouping?
        if let by = parameters["by"] {
            guard let value = UsageGrouping(rawValue: String(by)) else { throw APIError.invalidValue("by", "must be key, team, model, day or route.") }
            grouping = value
        }
        let query = UsageQuery(
            since: since, until: until, keyID: parameters["key"].map(String.init), model: parameters["model"].map(String.init))
        return (query, grouping)
    }
}
