import Foundation
import SluiceCore

/// The `api_keys` columns both stores select, and the JSON text form of `allowed_models`.
enum KeyColumns {
    static let list =
        "id, name, hash, prefix, created_at, last_used_at, expires_at, allowed_models, rpm, tpm, budget_usd, revoked, budget_period, budget_alert, team_id"

    /// The `teams` columns both stores select.
    static let teamList = "id, name, created_at, allowed_models, rpm, tpm, budget_usd, budget_period, budget_alert"

    static func period(_ text: String?) -> BudgetPeriod {
        text.flatMap(BudgetPeriod.init(rawValue:)) ?? .total
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
