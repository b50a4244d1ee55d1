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
    public var budgetPeriod: BudgetPeriod
    /// `80%` or `0.8`: the share of the budget at which a soft alert fires.
    public var budgetAlert: String?
    /// The id of the key's team (callers resolve the name a user gives).
    public var teamID: String?

    /// Requests or tokens per minute no deployment comes near.
    public static let maxPerMinute = 1_000_000_000
    public static let maxBudgetUSD = 1_000_000_000.0

    public init(
        name: String, rpm: Int? = nil, tpm: Int? = nil, budgetUSD: Double? = nil, models: [String] = [], expires: String? = nil,
        budgetPeriod: BudgetPeriod = .total, budgetAlert: String? = nil, teamID: String? = nil
    ) {
        self.budgetPeriod = budgetPeriod
        self.budgetAlert = budgetAlert
        self.teamID = teamID
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
            name: trimmedName, now: now, expiresAt: expiresAt, allowedModels: models, rpm: rpm, tpm: tpm, budgetUSD: budgetUSD,
            budgetPeriod: budgetPeriod, budgetAlert: try BudgetAlert.parse(budgetAlert), teamID: teamID)
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
        _ = try BudgetAlert.parse(budgetAlert)
        guard let expires else { return nil }
        guard let moment = TimeArgument.future(expires, now: now) else {
            throw .invalidValue("expires", "must be a date like 2026-12-31 or a duration like 30d, at most 100 years.")
        }
        return moment
    }
}

/// What a new team is asked for: the one set of rules `sluice teams create` and `POST /admin/teams` apply.
public struct TeamTerms: Sendable, Equatable {
    public var name: String
    public var rpm: Int?
    public var tpm: Int?
    public var budgetUSD: Double?
    public var budgetPeriod: BudgetPeriod
    public var budgetAlert: String?
    public var models: [String]

    public init(
        name: String, rpm: Int? = nil, tpm: Int? = nil, budgetUSD: Double? = nil, budgetPeriod: BudgetPeriod = .total,
        budgetAlert: String? = nil, models: [String] = []
    ) {
        self.name = name
        self.rpm = rpm
        self.tpm = tpm
        self.budgetUSD = budgetUSD
        self.budgetPeriod = budgetPeriod
        self.budgetAlert = budgetAlert
        self.models = models
    }

    /// A new team with these terms, or a 400 naming the first field out of range.
    public func issue(now: Double) throws(APIError) -> TeamRecord {
        // The key rules check name, limits, budget and models alike.
        _ = try KeyTerms(name: name, rpm: rpm, tpm: tpm, budgetUSD: budgetUSD, models: models, budgetAlert: budgetAlert).expiry(now: now)
        let name = name.trimmingSpaces()
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw .invalidValue("name", "may hold only letters, digits, '-', '_' and '.'.")
        }
        return TeamRecord(
            id: APIKeySecret.generateID(prefix: "team_"), name: name, createdAt: now, allowedModels: models, rpm: rpm, tpm: tpm,
            budgetUSD: budgetUSD, budgetPeriod: budgetPeriod, budgetAlert: try BudgetAlert.parse(budgetAlert))
    }
}

/// The soft budget alert as given: `80%` or a fraction `0.8`, above 0 and at most 100%.
public enum BudgetAlert {
    public static func parse(_ text: String?) throws(APIError) -> Double? {
        guard let text else { return nil }
        let trimmed = text.trimmingSpaces()
        let value: Double? =
            trimmed.hasSuffix("%") ? Double(trimmed.dropLast()).map { $0 / 100 } : Double(trimmed)
        guard let value, value.isFinite, value > 0, value <= 1 else {
            throw .invalidValue("budget_alert", "must be a share of the budget like 80% (above 0, at most 100%).")
        }
        return value
    }
}
