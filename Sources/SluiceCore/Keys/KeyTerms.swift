/// What a new key is asked for, and the one set of rules the admin API and `sluice keys create` both apply to it.
///
/// Every number is checked against a ceiling, not only a floor: limits turn into token buckets whose capacity is
/// converted back to `Int` for headers, so `rpm: 9223372036854775807` would otherwise trap on the key's first use.
public struct KeyTerms: Sendable, Equatable {
    public var name: String
    public var rpm: Int?
    public var tpm: Int?
    public var budgetUSD: Double?
    public var models: [String]
    /// A date (`2026-12-31`) or a duration from now (`30d`).
    public var expires: String?
    /// Whether the key may overflow to hosted upstreams.
    public var allowOverflow = false
    public var priority = PriorityClass.interactive

    /// Requests or tokens per minute no deployment comes near.
    public static let maxPerMinute = 1_000_000_000
    public static let maxBudgetUSD = 1_000_000_000.0

    public init(name: String, rpm: Int? = nil, tpm: Int? = nil, budgetUSD: Double? = nil, models: [String] = [], expires: String? = nil) {
        self.name = name
        self.rpm = rpm
        self.tpm = tpm
        self.budgetUSD = budgetUSD
        self.models = models
        self.expires = expires
    }

    /// Checks the terms; the error's `param` is the admin API's field name.
    public func check(now: Double) throws(APIError) {
        _ = try expiry(now: now)
    }

    /// A new key with these terms, or a 400 naming the first field out of range.
    public func issue(now: Double) throws(APIError) -> IssuedKey {
        let expiresAt = try expiry(now: now)
        var issued = IssuedKey(
            name: trimmedName, now: now, expiresAt: expiresAt, allowedModels: models, rpm: rpm, tpm: tpm, budgetUSD: budgetUSD)
        issued.record.allowOverflow = allowOverflow
        issued.record.priority = priority
        return issued
    }

    var trimmedName: String { name.trimmingSpaces() }

    /// Validates every field and returns the expiry moment, if any.
    func expiry(now: Double) throws(APIError) -> Double? {
        guard (1...100).contains(trimmedName.count) else { throw .invalidValue("name", "must be 1 to 100 characters.") }
        for (field, value) in [("rpm", rpm), ("tpm", tpm)] {
            if let value, !(1...Self.maxPerMinute).contains(value) {
                throw .invalidValue(field, "must be an integer from 1 to \(Self.maxPerMinute).")
            }
        }
        if let budget = budgetUSD, !(budget.isFinite && (0...Self.maxBudgetUSD).contains(budget)) {
            throw .invalidValue("budget_usd", "must be a number from 0 to \(Int(Self.maxBudgetUSD)).")
        }
        if models.contains(where: \.isEmpty) { throw .invalidValue("models", "model names must not be empty.") }
        guard let expires else { return nil }
        guard let moment = TimeArgument.future(expires, now: now) else {
            throw .invalidValue("expires", "must be a date like 2026-12-31 or a duration like 30d, at most 100 years.")
        }
        return moment
    }
}
