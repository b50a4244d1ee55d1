import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceStore

/// Keeps a ``KeyDirectory`` in step with the store and writes keys' last-used times back.
///
/// Polls the store's key revision (one tiny query) every `interval`; only a change reloads the key table, so a
/// key created or revoked by any instance or by `sluice keys` is seen here within one interval. After each poll it
/// reports the revision it serves under `instanceID`, which is what ``KeyPropagation`` waits for.
public struct KeyDirectorySync: Service {
    let directory: KeyDirectory
    let store: any GatewayStore
    let interval: Duration
    let logger: Logger
    let instanceID: String
    let now: @Sendable () -> Double
    /// Where budgets past their soft alert are reported; nil: no alerts.
    let alerts: BudgetAlerts?

    public init(
        directory: KeyDirectory, store: any GatewayStore, interval: Duration = .milliseconds(250), logger: Logger,
        instanceID: String = UUID().uuidString, alerts: BudgetAlerts? = nil,
        now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.alerts = alerts
        self.directory = directory
        self.store = store
        self.interval = interval
        self.logger = logger
        self.instanceID = instanceID
        self.now = now
    }

    /// Polls until graceful shutdown.
    public func run() async throws {
        // Graceful shutdown cancels the poll loop (and its sleep) at once.
        await cancelWhenGracefulShutdown { await self.poll() }
        // Last-used times noted since the last poll are worth one more write on the way out, and key changes need
        // not wait for an instance that is going away. A store that fails the first will fail the second too:
        // shutdown should not wait for it twice, and the instance's row goes stale on its own.
        do {
            try await store.touchKeys(directory.takeLastUsed())
            try await store.removeInstance(id: instanceID)
        } catch {
            logger.debug("could not say goodbye to the key store", metadata: ["error": "\(error)"])
        }
    }

    func poll() async {
        var failing = false
        while !Task.isCancelled {
            do {
                try await refresh()
                try await publishReservations()
                // Budgets need the store's totals, since other instances spend too: one read of the running totals
                // per poll keeps a budget's overshoot across instances to what they spend between polls and flushes.
                try await refreshSpend()
                if failing {
                    logger.info("key store reachable again")
                    failing = false
                }
            } catch {
                // Keep serving with the last good copy; say so once per outage, not every poll.
                // Before the start-up load the schema may still be migrating: not an outage worth a warning.
                if !failing, directory.isReady {
                    logger.warning("cannot read API keys from the store; using the last loaded keys", metadata: ["error": "\(error)"])
                    failing = true
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Publishes this instance's new budget reservations and deletes settled ones, so other instances count them.
    public func publishReservations() async throws {
        let now = self.now()
        directory.reservations.expire(now: now)
        let (reserved, settled) = directory.reservations.takeChanges()
        do {
            try await store.publishReservations(instanceID: instanceID, reserved: reserved, settled: settled, now: now)
        } catch {
            directory.reservations.restore(reserved: reserved, settled: settled)
            throw error
        }
    }

    /// Reloads what each budget's keys have spent in its current period: one query per distinct period start
    /// (the running totals for `total` budgets, the hourly rollups for the others), then reports budgets past
    /// their soft alert.
    public func refreshSpend() async throws {
        let now = self.now()
        let budgets = directory.budgets
        guard !budgets.isEmpty else {
            directory.mergeSpend([:])
            return
        }
        var keysBySince: [Double: Set<String>] = [:]
        for budget in budgets {
            keysBySince[budget.period.start(containing: now), default: []].formUnion(budget.keyIDs)
        }
        var spentBySince: [Double: [String: Double]] = [:]
        for (since, keyIDs) in keysBySince {
            let ids = keyIDs.sorted()
            spentBySince[since] = since == 0 ? try await store.spend(keyIDs: ids) : try await store.periodSpend(keyIDs: ids, since: since)
        }
        var totals: [String: KeyDirectory.Spend] = [:]
        for budget in budgets {
            let since = budget.period.start(containing: now)
            let spent = spentBySince[since] ?? [:]
            totals[budget.subject] = KeyDirectory.Spend(periodStart: since, amount: budget.keyIDs.reduce(0) { $0 + (spent[$1] ?? 0) })
        }
        directory.mergeSpend(totals)
        let budgetedKeys = Set(budgets.flatMap(\.keyIDs)).sorted()
        directory.mergeReservedElsewhere(try await store.reservedByOthers(keyIDs: budgetedKeys, instanceID: instanceID, now: now))
        guard let alerts else { return }
        for budget in budgets {
            guard let alert = budget.alert else { continue }
            let spent = directory.spent(subject: budget.subject, now: now)
            if spent >= alert * budget.limitUSD {
                alerts.notice(budget, spent: spent, periodStart: budget.period.start(containing: now))
            }
        }
    }

    /// One poll: reload keys when the revision moved, then write last-used times.
    public func refresh() async throws {
        let load = directory.beginLoad()
        let revision = try await store.keysRevision()
        if revision != directory.revision || !directory.isReady {
            let keys = try await store.listKeys()
            let teams = try await store.listTeams()
            directory.replace(with: keys, teams: teams, revision: revision, load: load)
            logger.debug("loaded API keys", metadata: ["count": "\(keys.count)", "revision": "\(revision)"])
        }
        // The revision read before the keys were listed: whatever this instance serves is at least that new.
        try await store.reportInstance(id: instanceID, keyRevision: revision, at: now())
        let used = directory.takeLastUsed()
        if !used.isEmpty {
            do {
                try await store.touchKeys(used)
            } catch {
                for (id, time) in used { directory.noteUse(keyID: id, at: time) }
                throw error
            }
        }
    }
}
