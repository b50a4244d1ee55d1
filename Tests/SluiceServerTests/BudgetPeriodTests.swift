import Foundation
import Logging
import SluiceCore
import SluiceStore
import Synchronization
import Testing

@testable import SluiceServer

/// Budgets with periods, over an injected clock: a monthly budget starts again at midnight UTC on the first.
@Suite("Budget periods")
struct BudgetPeriodTests {
    /// 2026-11-30T23:00:00Z.
    static let lateNovember: Double = 1_796_079_600

    final class Clock: Sendable {
        let time: Mutex<Double>
        init(_ time: Double) { self.time = Mutex(time) }
        func set(_ value: Double) { time.withLock { $0 = value } }
        var now: @Sendable () -> Double { { self.time.withLock { $0 } } }
    }

    @Test func periodsStartAtMidnightUTC() {
        let time = Self.lateNovember + 1_800  // Monday 2026-11-30T23:30:00Z
        #expect(BudgetPeriod.daily.start(containing: time) == Self.lateNovember - 82_800)
        #expect(BudgetPeriod.weekly.start(containing: time) == Self.lateNovember - 82_800)  // a Monday
        #expect(BudgetPeriod.monthly.start(containing: time) == 1_793_491_200)  // 2026-11-01
        #expect(BudgetPeriod.monthly.end(containing: time) == Self.lateNovember + 3_600)
        #expect(BudgetPeriod.total.start(containing: time) == 0)
        #expect(BudgetPeriod.weekly.start(containing: time + 86_400 * 3) == Self.lateNovember - 82_800)
    }

    @Test func aMonthlyBudgetStartsAgainOnTheFirstAndAlertsOncePerPeriod() async throws {
        var logger = Logger(label: "budget-test")
        logger.logLevel = .critical
        let store = SQLiteStore(path: ":memory:", logger: logger)
        try await store.migrate()
        let clock = Clock(Self.lateNovember)
        var key = APIKeyRecord(
            id: "key_m", name: "monthly", hash: String(repeating: "a", count: 64), prefix: "sk-sluice-a", createdAt: 0, budgetUSD: 2,
            budgetPeriod: .monthly, budgetAlert: 0.5)
        try await store.insertKey(key)
        let directory = KeyDirectory(masterKey: nil, loaded: false)
        let alerts = BudgetAlerts(store: store, webhook: nil, logger: logger, metrics: GatewayMetrics(), now: clock.now)
        let sync = KeyDirectorySync(directory: directory, store: store, logger: logger, alerts: alerts, now: clock.now)
        try await sync.refresh()
        key.budgetPeriod = .monthly

        func record(_ id: String, at time: Double, cost: Double) -> UsageRecord {
            UsageRecord(
                id: id, time: time, requestID: id, keyID: "key_m", clientIP: nil, route: "/v1/chat/completions", model: "m",
                upstream: "u", status: 200, errorCode: nil, stream: false, cacheHit: false, promptTokens: 1, completionTokens: 1,
                tokensEstimated: false, latencyMs: 1, timeToFirstTokenMs: nil, costUSD: cost, savedUSD: 0)
        }
        func refused() -> Bool { directory.budgetRefusal(key: key, team: nil, now: clock.now()) != nil }

        try await store.insertUsage([record("a", at: Self.lateNovember - 86_400 * 10, cost: 1.5)])
        try await sync.refreshSpend()
        #expect(!refused())
        var iterator = alerts.events.makeAsyncIterator()
        let alert = await iterator.next()
        #expect(alert?.spentUSD == 1.5)
        #expect(alert?.periodStart == 1_793_491_200)
        try await store.insertUsage([record("b", at: Self.lateNovember + 600, cost: 1)])
        try await sync.refreshSpend()
        #expect(refused())

        // One second into December: the budget is whole again, before and after the next refresh.
        clock.set(Self.lateNovember + 3_601)
        #expect(!refused())
        try await sync.refreshSpend()
        #expect(!refused())
        try await store.insertUsage([record("c", at: Self.lateNovember + 3_700, cost: 1.25)])
        try await sync.refreshSpend()
        #expect(!refused())
        // December's alert is December's own; November's was sent once.
        let december = await iterator.next()
        #expect(december?.periodStart == Self.lateNovember + 3_600)
        #expect(december?.spentUSD == 1.25)
        try await store.insertUsage([record("d", at: Self.lateNovember + 3_800, cost: 1)])
        try await sync.refreshSpend()
        #expect(refused())
        try await store.close()
    }
}

@Suite("Budget reservations")
struct BudgetReservationTests {
    @Test func concurrentCallsReserveNoMoreThanTheBudgetAndSettleOnce() {
        let key = APIKeyRecord(id: "k", name: "k", hash: String(repeating: "b", count: 64), prefix: "p", createdAt: 0, budgetUSD: 3)
        let directory = KeyDirectory(masterKey: nil, keys: [key], loaded: true)
        let admitted = (0..<20).filter { i in
            directory.reserve(BudgetReservation(requestID: "r\(i)", keyID: "k", amountUSD: 1, expiresAt: 100), key: key, team: nil, now: 0)
        }
        #expect(admitted.count == 3)
        // Settled twice: released once. The real cost replaces the worst case.
        directory.addSpend(keyID: "k", cost: 0.5, now: 1)
        directory.reservations.settle(requestID: "r0")
        directory.reservations.settle(requestID: "r0")
        #expect(directory.reservations.reserved(keyID: "k") == 2)
        #expect(!directory.reserve(BudgetReservation(requestID: "x", keyID: "k", amountUSD: 0.6, expiresAt: 100), key: key, team: nil, now: 1))
        #expect(directory.reserve(BudgetReservation(requestID: "y", keyID: "k", amountUSD: 0.5, expiresAt: 100), key: key, team: nil, now: 1))
        // A reservation whose call never settled stops counting at its expiry.
        directory.reservations.expire(now: 101)
        #expect(directory.reservations.reserved(keyID: "k") == 0)
    }

    @Test func theEstimateReadsTheModelAndTheTokenLimit() {
        let body = Array(#"{"model":"gpt-4o","max_tokens":50,"messages":[]}"#.utf8)
        #expect(CallEstimate(body: body) == nil ? false : CallEstimate(body: body)!.maxTokens == 50)
        #expect(CallEstimate(body: Array(#"{"model":"m","options":{"num_predict":7}}"#.utf8))?.maxTokens == 7)
        #expect(CallEstimate(body: Array(#"{"model":"m"}"#.utf8))?.maxTokens == BudgetReservations.defaultMaxTokens)
        #expect(CallEstimate(body: Array("not json".utf8)) == nil)
    }
}
