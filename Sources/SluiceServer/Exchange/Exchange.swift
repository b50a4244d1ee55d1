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

/// The exchange every generating call goes through: route decision, cache front, upstream call with retries,
/// relay, and the record the trace leaves for accounting.
extension Gateway {
    /// The one path every generating call takes: cache lookup, coalescing, upstream call, relay, cache fill.
    func serve(
        _ call: Call, requestedModel: String, request: Request, context: SluiceRequestContext,
        _ fetch: (any UpstreamProvider, ResponseIdentity) async throws -> UpstreamReply
    ) async throws -> Response {
        let servers = try self.servers(
            for: call.model, requested: requestedModel, context: context, stream: call.streaming, kinds: call.kinds, route: call.route)
        let identity = newIdentity(prefix: call.idPrefix)
        var ticket: CacheTicket?
        if let cache, call.cacheable, let policy = CachePolicy(request.headers[.cacheControl]), policy.reads || policy.writes {
            guard let key = cacheKey(family: call.cacheFamily, body: call.body, servers: servers, context: context) else {
                throw APIError.invalidJSON("the request body is not valid JSON.")
            }
            // A follower waits for the leader, then finds its answer in the cache; if the leader failed,
            // the follower tries to lead in turn, a bounded number of times.
            coalescing: for _ in 0..<3 {
                if policy.reads, let answer = cache.lookup(key) {
                    return replay(answer, call: call, identity: identity, context: context)
                }
                switch try await cache.claim(key, maxWait: coalesceWait) {
                case .lead:
                    ticket = CacheTicket(cache: cache, key: key, writes: policy.writes)
                    break coalescing
                case .released:
                    continue
                case .waitedTooLong:
                    // The leader stalls: this request is served on its own call, and leaves the key to the leader.
                    context.logger.info("identical request in flight is slow; calling upstream directly")
                    break coalescing
                }
            }
        }
        do {
            let buffered = bufferBudget.map { AnswerBufferLease(budget: $0) }
            let (reply, upstream, lease) = try await AnswerBufferLease.$current.withValue(buffered) {
                try await fetchWithRetries(
                    call, servers: servers, plan: scheduler.plan(model: call.model, body: call.body, headers: request.headers, servers: servers),
                    context: context
                ) { try await fetch($0, identity) }
            }
            var response = relay(reply, call: call, upstream: upstream, lease: lease, ticket: ticket, context: context)
            if cache != nil { response.headers[.xCache] = "MISS" }
            // A large answer's bytes stay charged until they are written, so slow readers cannot pile them up; up to
            // 64 KiB, about what a loopback socket's send buffer takes at once, is released as the response leaves.
            if let buffered { response.body = response.body.onCompletion(heldBytes: 64 * 1024) { buffered.release() } }
            return response
        } catch {
            ticket?.finish(nil)
            throw error
        }
    }

    func collectBody(_ request: Request) async throws -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
        var request = request
        do {
            return try await request.collectBody(upTo: maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
    }

    /// Sampled answers differ from call to call; with `cache-deterministic-only` they are not cached.
    func deterministicEnough(temperature: Double?, seed: Int?) -> Bool {
        !cacheDeterministicOnly || seed != nil || temperature == 0
    }

    /// Checks the key may use `model` and returns the indices of the upstreams serving it; taken once per request
    /// and model, however many steps ask.
    ///
    /// `requested` is the name the client sent; a key allowed either it or the alias's target may use it.
    func servers(
        for model: String, requested: String, context: SluiceRequestContext, stream: Bool, kinds: Set<UpstreamKind>? = nil,
        route: String = ""
    ) throws -> [Int] {
        context.trace.update {
            $0.model = model
            $0.stream = stream
        }
        let servers: [Int]
        if let route = context.trace.decisions.withLock({ $0.route }), route.model == model, route.requested == requested {
            servers = route.servers
        } else {
            if case .key(let record) = context.identity, !record.allowedModels.isEmpty,
                !record.allowedModels.contains(where: { Self.sameModel($0, model) || Self.sameModel($0, requested) })
            {
                throw APIError.modelNotAllowed(requested)
            }
            servers = pool.servers(of: model)
            guard !servers.isEmpty else { throw APIError.modelNotFound(requested) }
            context.trace.decisions.withLock { $0.route = (model, requested, servers) }
        }
        guard let kinds else { return servers }
        // Only upstreams that speak the route: Ollama's native API goes to Ollama servers, never to an OpenAI one
        // that would answer 404 for half the calls.
        let speaking = servers.filter { kinds.contains(upstreams[$0].endpoint.kind) }
        guard !speaking.isEmpty else {
            let names = kinds.map(\.rawValue).sorted().joined(separator: " or ")
            throw APIError(
                status: 400, type: "invalid_request_error", code: "unsupported_by_upstream",
                message: "No upstream serving model '\(requested)' speaks \(route); it needs an \(names) upstream.", param: "model")
        }
        return speaking
    }

    /// Rewrites an aliased model name, in the decoded request and in the body forwarded as is.
    /// The model an alias names, if `model` is one (`llama3.2` and `llama3.2:latest` alike).
    func aliasTarget(_ model: String) -> String? {
        if let target = aliases[model] ?? aliases.first(where: { Self.sameModel($0.key, model) })?.value { return target }
        // Claude Code and the OpenAI SDKs send dated snapshots (`claude-haiku-4-5-20251001`, `gpt-4o-2024-08-06`):
        // an alias for the undated name covers them.
        guard let undated = Self.undatedName(model) else { return nil }
        return aliases[undated]
    }

    /// `name` without a trailing snapshot date (`-20251001`, `-2024-08-06`); nil when it has none.
    static func undatedName(_ name: String) -> String? {
        for (suffixLength, pattern) in [(9, "-dddddddd"), (11, "-dddd-dd-dd")] where name.utf8.count > suffixLength {
            let suffix = name.utf8.suffix(suffixLength)
            let matches = zip(suffix, pattern.utf8).allSatisfy { byte, shape in
                shape == UInt8(ascii: "d") ? (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) : byte == shape
            }
            if matches { return String(name.utf8.dropLast(suffixLength)) }
        }
        return nil
    }

    func applyAlias(to model: inout String, body: inout ByteBuffer) throws {
        guard let target = aliasTarget(model) else { return }
        model = target
        // The OpenAI and native pass-throughs send these bytes upstream, so the name must change there too.
        guard case .object(var members)? = try? JSONDecoder().decode(JSONValue.self, from: body) else {
            throw APIError.invalidJSON("the request body is not valid JSON.")
        }
        members["model"] = .string(target)
        body = try WireJSON.encoder().encodeAsByteBuffer(JSONValue.object(members), allocator: ByteBufferAllocator())
    }
}
