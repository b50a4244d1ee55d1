import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import ServiceLifecycle
import SluiceCore
import SluiceStore
import Synchronization

/// Soft budget alerts: once a key's or team's spend in its period reaches its `budget-alert` share, the alert is
/// logged, counted in `sluice_budget_alerts_total` and, when `budget-webhook` is set, POSTed as JSON, once per
/// period across every instance (the store records who sent it first).
///
/// ``KeyDirectorySync`` notices crossings with each spend refresh; this service sends them, so no poll and no
/// request waits on a webhook.
public final class BudgetAlerts: Service, Sendable {
    /// The JSON the webhook receives.
    struct Event: Codable, Sendable, Equatable {
        var type = "budget_alert"
        /// `key` or `team`.
        var owner: String
        var id: String
        var name: String
        var budgetUSD: Double
        var spentUSD: Double
        var threshold: Double
        var period: String
        /// Unix seconds (UTC) when the period began; 0 for `total`.
        var periodStart: Double

        enum CodingKeys: String, CodingKey {
            case type, owner, id, name, threshold, period
            case budgetUSD = "budget_usd"
            case spentUSD = "spent_usd"
            case periodStart = "period_start"
        }
    }

    let store: any GatewayStore
    let webhook: String?
    let logger: Logger
    let metrics: GatewayMetrics
    let now: @Sendable () -> Double
    private let noticed = Mutex<Set<String>>([])
    let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    init(store: any GatewayStore, webhook: String?, logger: Logger, metrics: GatewayMetrics, now: @escaping @Sendable () -> Double) {
        self.store = store
        self.webhook = webhook
        self.logger = logger
        self.metrics = metrics
        self.now = now
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
    }

    /// Queues the alert of a budget past its threshold, unless this instance queued it for this period already.
    func notice(_ budget: KeyDirectory.Budget, spent: Double, periodStart: Double) {
        let marker = "\(budget.subject)@\(periodStart)"
        guard noticed.withLock({ $0.insert(marker).inserted }) else { return }
        continuation.yield(
            Event(
                owner: budget.isTeam ? "team" : "key", id: budget.isTeam ? String(budget.subject.dropFirst(5)) : budget.subject,
                name: budget.name, budgetUSD: budget.limitUSD, spentUSD: spent, threshold: budget.alert ?? 1,
                period: budget.period.rawValue, periodStart: periodStart))
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            for await event in self.events {
                await self.send(event)
            }
        }
    }

    func send(_ event: Event) async {
        let subject = event.owner == "team" ? "team:" + event.id : event.id
        do {
            guard try await store.claimBudgetAlert(subject: subject, periodStart: event.periodStart, at: now()) else { return }
        } catch {
            // Unclaimed: let a later refresh notice it again.
            noticed.withLock { _ = $0.remove("\(subject)@\(event.periodStart)") }
            logger.debug("could not record a budget alert", metadata: ["error": "\(error)"])
            return
        }
        metrics.budgetAlert(owner: event.owner)
        logger.warning(
            "budget alert: spend reached its threshold",
            metadata: [
                "owner": .string(event.owner), "id": .string(event.id), "name": .string(event.name),
                "spent_usd": .stringConvertible(event.spentUSD), "budget_usd": .stringConvertible(event.budgetUSD),
                "period": .string(event.period),
            ])
        guard let webhook else { return }
        do {
            var request = HTTPClientRequest(url: webhook)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(event)))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 64 * 1024)
            if response.status.code >= 300 {
                logger.warning("budget webhook answered with an error", metadata: ["status": "\(response.status.code)"])
            }
        } catch {
            logger.warning("budget webhook failed", metadata: ["error": "\(error)"])
        }
    }
}
