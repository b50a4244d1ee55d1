import Foundation
import SluiceCore
import Synchronization

/// Worst-case costs of the calls in flight on this instance, held against their keys' and teams' budgets.
///
/// A budgeted call reserves its worst case (prompt estimate plus `max_tokens`, priced) before it is sent, under
/// the same lock as the budget check, so concurrent calls on an almost-spent budget cannot all pass it; its usage
/// record settles it (by request id: settling twice, or an id never reserved, does nothing). ``KeyDirectorySync``
/// publishes them to the store with each poll, so other instances count them too, and a reservation of an
/// instance that died stops counting at its expiry.
public final class BudgetReservations: Sendable {
    /// `max_tokens` assumed for a call that sets none.
    public static let defaultMaxTokens = 4_096

    struct State {
        var held: [String: [BudgetReservation]] = [:]
        var byKey: [String: Double] = [:]
        var unpublished: [BudgetReservation] = []
        var settled: [String] = []
    }

    private let state = Mutex(State())

    public init() {}

    /// Reserves `reservation` if, for every budget it counts against, what is held here for its keys plus this
    /// amount fits in what the budget has left (`available`: limit less spent and less what others reserved).
    func tryReserve(_ reservation: BudgetReservation, budgets: [(keyIDs: [String], available: Double)]) -> Bool {
        state.withLock { state in
            for budget in budgets {
                let held = budget.keyIDs.reduce(0) { $0 + (state.byKey[$1] ?? 0) }
                if held + reservation.amountUSD > budget.available { return false }
            }
            state.held[reservation.requestID, default: []].append(reservation)
            state.byKey[reservation.keyID, default: 0] += reservation.amountUSD
            state.unpublished.append(reservation)
            return true
        }
    }

    /// Releases the reservation of a finished call; its real cost is counted as spend instead.
    public func settle(requestID: String) {
        state.withLock { state in
            guard var list = state.held[requestID], !list.isEmpty else { return }
            let reservation = list.removeFirst()
            state.held[requestID] = list.isEmpty ? nil : list
            state.byKey[reservation.keyID, default: 0] -= reservation.amountUSD
            if state.byKey[reservation.keyID, default: 0] <= 1e-12 { state.byKey[reservation.keyID] = nil }
            if let index = state.unpublished.firstIndex(of: reservation) {
                // Never published: nothing to delete in the store either.
                state.unpublished.remove(at: index)
            } else {
                state.settled.append(requestID)
            }
        }
    }

    /// Forgets reservations past their expiry whose call never settled (it cannot outlive the upstream timeout).
    func expire(now: Double) {
        let stale = state.withLock { state in
            state.held.values.flatMap { $0 }.filter { $0.expiresAt < now }.map(\.requestID)
        }
        for requestID in stale { settle(requestID: requestID) }
    }

    /// What is held here for one key.
    public func reserved(keyID: String) -> Double {
        state.withLock { $0.byKey[keyID] ?? 0 }
    }

    /// Reservations to publish and settlements to delete since the last call.
    func takeChanges() -> (reserved: [BudgetReservation], settled: [String]) {
        state.withLock { state in
            defer {
                state.unpublished = []
                state.settled = []
            }
            return (state.unpublished, state.settled)
        }
    }

    /// Puts back changes whose publication failed, to try again.
    func restore(reserved: [BudgetReservation], settled: [String]) {
        state.withLock { state in
            let stillHeld = reserved.filter { reservation in state.held[reservation.requestID]?.contains(reservation) == true }
            state.unpublished = stillHeld + state.unpublished
            state.settled = settled + state.settled
        }
    }
}

/// What a call is asked to produce, read from its JSON body: the model, the most tokens it may generate and a
/// cautious estimate of its prompt (a token per 3 bytes of body).
public struct CallEstimate: Sendable, Equatable {
    public var model: String
    public var promptTokens: Int
    public var maxTokens: Int

    /// Nil when the body is no JSON object naming a model.
    public init?(body: some Collection<UInt8>) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let model = object["model"] as? String
        else { return nil }
        self.model = model
        promptTokens = body.count / 3 + 1
        let options = object["options"] as? [String: Any]
        let limit = [object["max_completion_tokens"], object["max_tokens"], object["max_output_tokens"], options?["num_predict"]]
            .lazy.compactMap { ($0 as? NSNumber)?.intValue }.first { $0 > 0 }
        maxTokens = limit ?? BudgetReservations.defaultMaxTokens
    }
}

/// A call's worst case in USD, priced as its usage record will be: nothing when every upstream serving the model is
/// local (those calls cost nothing), else the prompt estimate and `max_tokens` at the model's price.
func worstCaseCost(pool: UpstreamPool, calculator: CostCalculator, localUpstreams: Set<String>) -> @Sendable (CallEstimate) -> Double {
    { estimate in
        let servers = pool.servers(of: estimate.model)
        let hosted = servers.filter { !localUpstreams.contains(pool.upstreams[$0].endpoint.name) }
        guard !hosted.isEmpty else { return 0 }
        let record = UsageRecord(
            id: "", time: 0, requestID: "", keyID: nil, clientIP: nil, route: "", model: estimate.model,
            upstream: pool.upstreams[hosted[0]].endpoint.name, status: 200, errorCode: nil, stream: false, cacheHit: false,
            promptTokens: estimate.promptTokens, completionTokens: estimate.maxTokens, tokensEstimated: true, latencyMs: 0,
            timeToFirstTokenMs: nil, costUSD: 0, savedUSD: 0)
        return calculator.outcome(for: record, isLocalUpstream: false).costUSD
    }
}

extension GatewayConfiguration {
    /// How long a budget reservation counts at most: the longest a call can wait (to coalesce, for an upstream
    /// slot) and run, plus 10 s. A reservation of an instance that died stops counting after this.
    var reservationHold: Double {
        (cacheCoalesceWait + upstreamQueueTimeout + upstreamTimeout).milliseconds / 1000 + 10
    }
}
