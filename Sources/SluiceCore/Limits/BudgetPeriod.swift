import Foundation

/// How often a budget starts again, at midnight UTC: every day, every Monday, on the first of every month, or
/// never (`total`, everything ever spent).
public enum BudgetPeriod: String, Sendable, Codable, CaseIterable {
    case daily, weekly, monthly, total

    /// The start of the period containing `time` (Unix seconds); 0 for `total`.
    public func start(containing time: Double) -> Double {
        interval(containing: time)?.start.timeIntervalSince1970 ?? 0
    }

    /// When the period containing `time` ends and the next begins; nil for `total`.
    public func end(containing time: Double) -> Double? {
        interval(containing: time)?.end.timeIntervalSince1970
    }

    /// The UTC calendar interval containing `time`, weeks starting on Monday; nil for `total`.
    private func interval(containing time: Double) -> DateInterval? {
        let component: Calendar.Component
        switch self {
        case .daily: component = .day
        case .weekly: component = .weekOfYear
        case .monthly: component = .month
        case .total: return nil
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        calendar.firstWeekday = 2
        return calendar.dateInterval(of: component, for: Date(timeIntervalSince1970: time))
    }
}

/// A call's worst-case cost, held against its key's (and team's) budget from before it is sent until its usage
/// record settles it.
public struct BudgetReservation: Sendable, Equatable {
    public var requestID: String
    public var keyID: String
    public var amountUSD: Double
    /// When a reservation whose instance died stops counting.
    public var expiresAt: Double

    public init(requestID: String, keyID: String, amountUSD: Double, expiresAt: Double) {
        self.requestID = requestID
        self.keyID = keyID
        self.amountUSD = amountUSD
        self.expiresAt = expiresAt
    }
}
