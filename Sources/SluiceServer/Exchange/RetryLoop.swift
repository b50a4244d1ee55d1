import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import ServiceLifecycle
import SluiceCore
import SluiceStore
import SluiceUpstream

/// Upstream calls with retries on another upstream, before any byte reaches the client.
extension Gateway {
    /// Error codes meaning the upstream itself failed (unreachable, 5xx, timeout): worth another upstream.
    static let retryableCodes: Set<String> = ["upstream_unavailable", "upstream_error", "upstream_timeout"]

    /// Calls the upstreams serving the call's model until one answers, at most `min(servers, 3)` attempts.
    ///
    /// Only failures of `fetch` itself are retried, i.e. before any byte reached the client: once a reply is
    /// returned (a stream included) it is the client's. Client errors (4xx) are final.
    ///
    /// The returned lease holds the upstream's slot: a complete reply's is already ended, a stream's ends with
    /// the stream. When every upstream is full the call waits for a slot, or fails with `upstream_overloaded`.
    func fetchWithRetries(
        _ call: Call, servers: [Int], plan: SchedulingPlan = .none, context: SluiceRequestContext,
        _ fetch: (any UpstreamProvider) async throws -> UpstreamReply
    ) async throws -> (UpstreamReply, any UpstreamProvider, UpstreamLease) {
        let attempts = min(servers.count, 3)
        var tried = Set<Int>()
        // Upstreams of other kinds count as tried from the start, so the pool never picks one.
        let unfit = call.kinds == nil ? [] : Set(upstreams.indices).subtracting(servers)
        var lastError: (any Error)?
        while tried.count < attempts {
            if !tried.isEmpty {
                // Jittered pause so retries of many requests do not land on the next upstream in lockstep; taken
                // before the slot, so a pausing request holds none.
                try await Task.sleep(for: .milliseconds(Int.random(in: 10...50)))
            }
            guard
                let index = try await pool.acquire(
                    model: call.model, excluding: tried.union(unfit), failOpen: tried.isEmpty, preferring: tried.isEmpty ? plan.preferred : nil,
                    mayOverflow: scheduler.mayOverflow(context.identity), priority: scheduler.priority(context.identity))
            else { break }
            let lease = UpstreamLease(pool: pool, index: index, priority: scheduler.priority(context.identity))
            tried.insert(index)
            let upstream = upstreams[index]
            context.trace.update { $0.upstream = upstream.endpoint.name }
            do {
                let reply = try await measured(upstream, fetch)
                switch reply {
                case .complete, .generated: lease.end(.success)
                case .stream: break
                }
                scheduler.served(plan, model: call.model, by: index, trace: context.trace)
                return (reply, upstream, lease)
            } catch let error as APIError where Self.retryableCodes.contains(error.code) {
                lease.end(.failure)
                lastError = error
                if tried.count < attempts {
                    context.logger.warning(
                        "upstream failed before answering; retrying on another",
                        metadata: ["upstream": .string(upstream.endpoint.name), "code": .string(error.code)])
                }
            } catch {
                // A 4xx is the request's fault, a cancellation the client's: neither says the upstream is unwell.
                lease.end(.neutral)
                throw error
            }
        }
        throw lastError ?? APIError.noUpstream()
    }

    /// Runs an upstream call, timing it and counting its server-side failures.
    func measured<T>(_ upstream: any UpstreamProvider, _ body: (any UpstreamProvider) async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        do {
            let result = try await body(upstream)
            metrics.upstreamLatency(upstream: upstream.endpoint.name, nanoseconds: (ContinuousClock.now - start).nanoseconds)
            return result
        } catch let error as APIError {
            if error.status >= 500 { metrics.upstreamError(upstream: upstream.endpoint.name, code: error.code) }
            throw error
        }
    }

    func newIdentity(prefix: String) -> ResponseIdentity {
        ResponseIdentity(id: ResponseIdentity.randomID(prefix: prefix), created: Int(now()))
    }
}
