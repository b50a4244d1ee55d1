import Foundation
import SluiceCore

/// The `api_keys` columns both stores select, and the JSON text form of `allowed_models`.
enum KeyColumns {
    static let list =
        "id, name, hash, prefix, created_at, last_used_at, expires_at, allowed_models, rpm, tpm, budget_usd, revoked, budget_period, budget_alert, team_id, allow_overflow, priority"

    /// The `teams` columns both stores select.
    static let teamList = "id, name, created_at, allowed_models, rpm, tpm, budget_usd, budget_period, budget_alert"

    static func period(_ text: String?) -> BudgetPeriod {
        text.flatMap(BudgetPeriod.init(rawValue:)) ?? .total
    }

    /// Sets a new key's scheduling terms, when they are not the defaults the columns start with: a statement of its
    /// own, so the insert stays the one every key without them uses.
    static func schedulingUpdate(_ key: APIKeyRecord, dialect: SQLDialect) -> SQLStatement? {
        guard key.allowOverflow || key.priority != .interactive else { return nil }
        var statement = SQLStatement(dialect, "UPDATE api_keys SET allow_overflow = ")
        statement.bind(key.allowOverflow)
        statement.append(", priority = ")
        statement.bind(key.priority.rawValue)
        statement.append(" WHERE id = ")
        statement.bind(key.id)
        return statement
    }

    static func encodeModels(_ models: [String]) throws -> String {
        String(decoding: try JSONEncoder().encode(models), as: UTF8.self)
    }

    static func decodeModels(_ text: String?) throws -> [String] {
        guard let text, !text.isEmpty else { return [] }
        do {
            return try JSONDecoder().decode([String].self, from: Data(text.utf8))
        } catch {
            throw StoreError("api_keys.allowed_models is not a JSON array of strings")
        }
    }
}
