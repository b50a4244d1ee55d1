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

/// Handles API requests: decode and validate, answer from the cache or an upstream, relay the answer.
public struct Gateway: Sendable {
    let upstreams: [any UpstreamProvider]
    let metrics: GatewayMetrics
    let maxBodyBytes: Int
    let cache: ResponseCache?
    let cacheScope: GatewayConfiguration.CacheScope
    let cacheDeterministicOnly: Bool
    /// Model names clients may use for another model, e.g. `gpt-4o-mini` → `llama3.2`.
    let aliases: [String: String]
    /// Breakers and in-flight counts that route each attempt.
    let pool: UpstreamPool
    /// Bounds the bytes of non-streamed answers held at once; nil leaves them unbounded (tests, benchmarks).
    let bufferBudget: AnswerBufferBudget?
    /// How long a request coalesced behind an identical one waits for it before calling on its own.
    let coalesceWait: Duration
    /// Ends streams that would outlive the shutdown grace; nil lets them run until cancelled.
    let drain: ShutdownDrain?
    /// Where Responses API answers are kept for `previous_response_id`; nil when there is no store.
    let responseStore: (any GatewayStore)?
    /// How long a kept response can be continued.
    let responseRetention: Duration
    /// Conversation affinity and model residency: where each attempt would best go.
    let scheduler: Scheduler
    let now: @Sendable () -> Double

    public init(
        upstreams: [any UpstreamProvider], metrics: GatewayMetrics, maxBodyBytes: Int, cache: ResponseCache? = nil,
        cacheScope: GatewayConfiguration.CacheScope = .global, cacheDeterministicOnly: Bool = false,
        aliases: [String: String] = [:], limits: UpstreamLimits = .unlimited, now: @escaping @Sendable () -> Double
    ) {
        self.init(
            pool: UpstreamPool(upstreams: upstreams, metrics: metrics, limits: limits, now: now), maxBodyBytes: maxBodyBytes, cache: cache,
            cacheScope: cacheScope, cacheDeterministicOnly: cacheDeterministicOnly, aliases: aliases, now: now)
    }

    /// A gateway routing through `pool`, which the application shares with the background prober.
    init(
        pool: UpstreamPool, maxBodyBytes: Int, cache: ResponseCache?, cacheScope: GatewayConfiguration.CacheScope,
        cacheDeterministicOnly: Bool, aliases: [String: String], bufferBudget: AnswerBufferBudget? = nil,
        coalesceWait: Duration = .seconds(30), drain: ShutdownDrain? = nil, responseStore: (any GatewayStore)? = nil,
        responseRetention: Duration = .seconds(30 * 86_400), scheduler: Scheduler? = nil, now: @escaping @Sendable () -> Double
    ) {
        let upstreams = pool.upstreams
        let metrics = pool.metrics
        precondition(!upstreams.isEmpty, "a gateway needs at least one upstream")
        self.upstreams = upstreams
        self.metrics = metrics
        self.maxBodyBytes = maxBodyBytes
        self.cache = cache
        self.cacheScope = cacheScope
        self.cacheDeterministicOnly = cacheDeterministicOnly
        self.aliases = aliases
        self.pool = pool
        self.bufferBudget = bufferBudget
        self.coalesceWait = coalesceWait
        self.drain = drain
        self.responseStore = responseStore
        self.responseRetention = responseRetention
        self.scheduler = scheduler ?? Scheduler(pool: pool, residency: nil, now: now)
        self.now = now
    }

    /// What one API call is, as the shared serving path needs it.
    struct Call {
        var route: String
        /// Which answers a cache entry for this call may be shared with.
        var cacheFamily: String
        /// How the answer is collected for and replayed from the cache; nil keeps raw bytes (embeddings).
        var format: AnswerFormat?
        var body: ByteBuffer
        var model: String
        var streaming: Bool
        var includeUsage: Bool
        /// False when the request asks for something a cache must not answer (n > 1, sampling without a seed).
        var cacheable: Bool
        var idPrefix: String
        /// The canonical surface that answers this call (Anthropic Messages, Responses); nil for the chat-era routes.
        var surface: GenerationSurface? = nil
        /// Keeps the finished answer (stored Responses); a stream calls it before the client sees the answer's end.
        var keepAnswer: (@Sendable (Generation.Answer) async -> Void)? = nil
        /// Keeps a Response object relayed as it came (a Responses pass-through), so the gateway knows its owner.
        var keepResponse: (@Sendable (ByteBuffer) async -> Void)? = nil
        /// The upstream kinds that can serve this route; nil: every kind.
        var kinds: Set<UpstreamKind>? = nil
    }

    // MARK: OpenAI API

    func chatCompletions(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/chat/completions" }
        var body = try await collectBody(request)
        if let hit = earlyCacheHit(body, route: "/v1/chat/completions", family: "chat", format: .openAIChat, idPrefix: "chatcmpl", request: request, context: context) {
            return hit
        }
        let scheduled = try schedule(&body, shape: .openAIChat, context: context)
        var chat = try passThroughProbe(body, context: context)?.chatRequest
            ?? RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: body)
        let requested = scheduled.requested ?? chat.model
        try applyAlias(to: &chat.model, body: &body)
        let call = Call(
            route: "/v1/chat/completions", cacheFamily: "chat", format: .openAIChat, body: body, model: chat.model,
            streaming: chat.isStreaming, includeUsage: chat.includeUsage,
            cacheable: (chat.n ?? 1) == 1 && deterministicEnough(temperature: chat.temperature, seed: chat.seed), idPrefix: "chatcmpl")
        return try await serve(call, requestedModel: requested, request: request, context: context) { [chat, body] upstream, identity in
            try await upstream.chatCompletions(chat, rawBody: body, identity: identity, logger: context.logger)
        }
    }

    func completions(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/completions" }
        var body = try await collectBody(request)
        if let hit = earlyCacheHit(body, route: "/v1/completions", family: "completion", format: .openAICompletion, idPrefix: "cmpl", request: request, context: context) {
            return hit
        }
        let scheduled = try schedule(&body, shape: .openAICompletion, context: context)
        var completion = try RequestDecoding.decodeValidated(CompletionRequest.self, from: body)
        let requested = scheduled.requested ?? completion.model
        try applyAlias(to: &completion.model, body: &body)
        let call = Call(
            route: "/v1/completions", cacheFamily: "completion", format: .openAICompletion, body: body, model: completion.model,
            streaming: completion.isStreaming, includeUsage: completion.includeUsage,
            cacheable: (completion.n ?? 1) == 1 && completion.prompt.values.count == 1
                && deterministicEnough(temperature: completion.temperature, seed: completion.seed),
            idPrefix: "cmpl", kinds: [.ollama, .openai])
        return try await serve(call, requestedModel: requested, request: request, context: context) { [completion, body] upstream, identity in
            try await upstream.completions(completion, rawBody: body, identity: identity, logger: context.logger)
        }
    }

    func embeddings(_ request: Request, context: SluiceRequestContext) async throws -> Response {
        context.trace.update { $0.route = "/v1/embeddings" }
        var body = try await collectBody(request)
        var embeddings: EmbeddingsRequest
        if let probe = try passThroughProbe(body, context: context) {
            embeddings = EmbeddingsRequest(model: probe.model, input: .many([]))
        } else {
            embeddings = try Self.decodeEmbeddings(body)
        }
        let requested = embeddings.model
        try applyAlias(to: &embeddings.model, body: &body)
        let call = Call(
            route: "/v1/embeddings", cacheFamily: "embeddings", format: nil, body: body, model: embeddings.model,
            streaming: false, includeUsage: false, cacheable: true, idPrefix: "embd", kinds: [.ollama, .openai])
        return try await serve(call, requestedModel: requested, request: request, context: context) { [embeddings, body] upstream, _ in
            try await upstream.embeddings(embeddings, rawBody: body, logger: context.logger)
        }
    }

    func listModels(context: SluiceRequestContext) async throws -> ModelList {
        let created = Int(now())
        let models = try await mergedModels(from: upstreams, context: context, name: \.id) { upstream in
            try await upstream.models(created: created, logger: context.logger).data
        }
        return ModelList(data: virtualModelList(created: created, context: context, before: models))
    }

    /// `GET /api/tags` and `/api/ps` over every Ollama upstream, as `/v1/models` does over all upstreams: one list,
    /// each model once, limited to the models the key may use. Entries pass through as the upstreams wrote them.
    func nativeModelList(path: String, context: SluiceRequestContext) async throws -> Response {
        let ollamas = upstreams.filter { $0.endpoint.kind == .ollama }
        let models = try await mergedModels(from: ollamas, context: context, name: { $0["name"]?.stringValue ?? $0["model"]?.stringValue ?? "" }) {
            upstream in
            let reply = try await upstream.native(NativeRequest(method: .get, path: path, body: nil, streams: false), logger: context.logger)
            guard case .complete(let body, _) = reply, let list = try? JSONDecoder().decode(JSONValue.self, from: body)["models"]?.arrayValue
            else { throw APIError.upstreamFailed("The upstream sent a model list that could not be read.") }
            return list
        }
        return try JSONResponse(JSONValue.object(["models": .array(models)])).response(status: .ok)
    }

    /// Asks every upstream at once and merges the answers in upstream order, each model once; an upstream that fails
    /// is left out unless all fail. A key limited to some models sees only those.
    func mergedModels<Entry: Sendable>(
        from servers: [any UpstreamProvider], context: SluiceRequestContext, name: (Entry) -> String,
        _ fetch: @escaping @Sendable (any UpstreamProvider) async throws -> [Entry]
    ) async throws -> [Entry] {
        let answers = await withTaskGroup(of: (Int, Result<[Entry], any Error>).self) { group in
            for (index, upstream) in servers.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await measured(upstream, fetch)))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var answers = [Result<[Entry], any Error>?](repeating: nil, count: servers.count)
            for await (index, answer) in group { answers[index] = answer }
            return answers.compactMap { $0 }
        }
        var seen = Set<String>()
        var merged: [Entry] = []
        var lastError: (any Error)?
        for answer in answers {
            switch answer {
            case .success(let entries):
                merged += entries.filter { seen.insert(name($0)).inserted }
            case .failure(let error):
                lastError = error
            }
        }
        if let lastError, !answers.contains(where: { (try? $0.get()) != nil }) { throw lastError }
        if case .key(let record) = context.identity, !record.allowedModels.isEmpty {
            merged = merged.filter { entry in record.allowedModels.contains { Self.sameModel($0, name(entry)) } }
        }
        return merged
    }

    func model(id: String, context: SluiceRequestContext) async throws -> Model {
        let list = try await listModels(context: context)
        guard let model = list.data.first(where: { Self.sameModel($0.id, id) }) else { throw APIError.modelNotFound(id) }
        return model
    }

    /// `llama3.2` and `llama3.2:latest` name the same Ollama model.
    static func sameModel(_ a: String, _ b: String) -> Bool {
        UpstreamChooser.sameModel(a, b)
    }

    // MARK: Ollama native API

    /// Probe of the few fields of a native body the gateway needs; decoding it also runs the body check over the
    /// whole body, which is forwarded as is.
    private struct NativeProbe: Decodable, HasIntegerFields {
        static let integerFields = ["options.seed"]

        var model: String?
        var stream: Bool?
        var options: Options?

        struct Options: Decodable {
            var temperature: Double?
            var seed: Int?
        }
    }

    /// Native routes that list models, merged over every Ollama upstream.
    static let nativeModelLists: Set<String> = ["/api/tags", "/api/ps"]

    /// Native routes that answer with generated content, and how they are cached.
    static let nativeFormats: [String: AnswerFormat?] = ["/api/chat": .ollamaChat, "/api/generate": .ollamaGenerate, "/api/embed": nil]

    func native(_ request: Request, context: SluiceRequestContext, path: String, streamsByDefault: Bool) async throws -> Response {
        context.trace.update { $0.route = path }
        let method: HTTPMethodName = request.method == .post ? .post : .get
        guard request.method == .post else {
            if Self.nativeModelLists.contains(path), upstreams.contains(where: { $0.endpoint.kind == .ollama }) {
                return try await nativeModelList(path: path, context: context)
            }
            let upstream = upstreams.first { $0.endpoint.kind == .ollama } ?? upstreams[0]
            context.trace.update { $0.upstream = upstream.endpoint.name }
            let reply = try await measured(upstream) {
                try await $0.native(NativeRequest(method: method, path: path, body: nil, streams: false), logger: context.logger)
            }
            return relay(reply, call: nil, upstream: upstream, lease: nil, ticket: nil, context: context)
        }
        var body = try await collectBody(request)
        let scheduled = try path == "/api/embed" ? .unchanged : schedule(&body, shape: path == "/api/chat" ? .ollamaChat : .ollamaGenerate, context: context)
        let probe: NativeProbe = try RequestDecoding.decode(NativeProbe.self, from: body)
        let streams = streamsByDefault && (probe.stream ?? true)
        guard let requested = scheduled.requested ?? probe.model, !requested.isEmpty else { throw APIError.missingField("model") }
        var model = probe.model ?? requested
        try applyAlias(to: &model, body: &body)
        let format = Self.nativeFormats[path]
        let call = Call(
            route: path, cacheFamily: "native:" + path, format: format ?? nil, body: body, model: model, streaming: streams,
            includeUsage: false, cacheable: format != nil && deterministicEnough(temperature: probe.options?.temperature, seed: probe.options?.seed),
            idPrefix: "native", kinds: [.ollama])
        return try await serve(call, requestedModel: requested, request: request, context: context) { [body] upstream, _ in
            try await upstream.native(NativeRequest(method: method, path: path, body: body, streams: streams), logger: context.logger)
        }
    }

    // MARK: Serving

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
            // The answer's bytes stay charged until they are written.
            if let buffered { response.body = response.body.onCompletion { buffered.release() } }
            return response
        } catch {
            ticket?.finish(nil)
            throw error
        }
    }

    /// Answers a repeated request from the cache before decoding it, when its exact bytes have an entry.
    ///
    /// Decoding and validating the request is most of a cache hit's work, and redundant: an entry exists only
    /// for a request that was valid and answered, and ``CacheProbe`` checks the few fields the key leaves out.
    /// Aliased models, unusual delivery fields and anything the key directory or the routing would refuse
    /// return nil, and the request takes the full path, which counts the miss and gives any error.
    ///
    /// A body the body check would refuse (a duplicate key, a number out of range) never finds an entry: keys are
    /// the body's canonical bytes, which keep every member and spelling, and only checked bodies ever fill one.
    func earlyCacheHit(
        _ body: ByteBuffer, route: String, family: String, format: AnswerFormat, idPrefix: String, request: Request,
        context: SluiceRequestContext
    ) -> Response? {
        guard let cache, let policy = CachePolicy(request.headers[.cacheControl]), policy.reads,
            let probe = body.withUnsafeReadableBytes({ CacheProbe(json: $0) }),
            aliases.isEmpty || !aliases.keys.contains(where: { Self.sameModel($0, probe.model) }),
            let servers = try? servers(for: probe.model, requested: probe.model, context: context, stream: probe.stream)
        else { return nil }
        guard let key = cacheKey(family: family, body: body, servers: servers, context: context),
            let answer = cache.lookup(key, countsMiss: false)
        else { return nil }
        let call = Call(
            route: route, cacheFamily: family, format: format, body: body, model: probe.model, streaming: probe.stream,
            includeUsage: probe.includeUsage, cacheable: true, idPrefix: idPrefix)
        return replay(answer, call: call, identity: newIdentity(prefix: idPrefix), context: context)
    }

    /// The cache key of a body; nil when it is not JSON.
    func cacheKey(family: String, body: ByteBuffer, servers: [Int], context: SluiceRequestContext) -> CacheKey? {
        let scope = cacheScope == .key ? context.trace.snapshot.keyID : nil
        // Keyed by the set of upstreams that may answer, not the one picked: the pick varies per request,
        // the answer's source does not (a single upstream keeps its old key).
        let upstreamSet = servers.map { upstreams[$0].endpoint.name }.joined(separator: ",")
        return try? CacheKey.make(family: family, upstream: upstreamSet, body: body, scope: scope)
    }

    func replay(_ answer: CachedAnswer, call: Call, identity: ResponseIdentity, context: SluiceRequestContext) -> Response {
        context.trace.update {
            $0.cacheHit = true
            $0.usage = answer.usage
            $0.firstByteAt = .now
            $0.upstream = nil
        }
        switch answer {
        case .raw(let bytes):
            return Response(status: .ok, headers: [.contentType: "application/json", .xCache: "HIT"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        case .canonical(let answer):
            return replay(answer, call: call, context: context)
        case .generation(let generation):
            let format = call.format ?? .openAIChat
            let createdAt = Timestamp.rfc3339(now())
            if call.streaming {
                let frames = CacheReplay.frames(generation, format: format, model: call.model, identity: identity, createdAt: createdAt, includeUsage: call.includeUsage)
                let contentType = format == .ollamaChat || format == .ollamaGenerate ? "application/x-ndjson" : "text/event-stream"
                return Response(status: .ok, headers: [.contentType: contentType, .cacheControl: "no-cache", .xCache: "HIT"], body: .init(contentsOf: frames))
            }
            let body = CacheReplay.body(generation, format: format, model: call.model, identity: identity, createdAt: createdAt)
            return Response(status: .ok, headers: [.contentType: "application/json", .xCache: "HIT"], body: .init(byteBuffer: body))
        }
    }

    // MARK: Plumbing

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

    /// Checks the key may use `model` and returns the indices of the upstreams serving it.
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
        if case .key(let record) = context.identity, !record.allowedModels.isEmpty,
            !record.allowedModels.contains(where: { Self.sameModel($0, model) || Self.sameModel($0, requested) })
        {
            throw APIError.modelNotAllowed(requested)
        }
        let servers = pool.servers(of: model)
        guard !servers.isEmpty else { throw APIError.modelNotFound(requested) }
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
        aliases[model] ?? aliases.first(where: { Self.sameModel($0.key, model) })?.value
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

    // MARK: Relaying answers

    /// Turns an upstream reply into the client's response; a stream's `lease` is held until the stream is over.
    func relay(
        _ reply: UpstreamReply, call: Call?, upstream: any UpstreamProvider, lease: UpstreamLease?, ticket: CacheTicket?,
        context: SluiceRequestContext
    ) -> Response {
        switch reply {
        case .complete(let body, let usage):
            context.trace.update {
                $0.usage = usage
                $0.firstByteAt = .now
            }
            if let ticket, let call {
                if let format = call.format {
                    var collector = AnswerCollector(format: format, streaming: false)
                    collector.observe(body)
                    ticket.finish(collector.answer().map { .generation($0.withTemplate(format: format, model: call.model)) })
                } else {
                    ticket.finish(.raw(Array(body.readableBytesView)))
                }
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        case .generated(let body, let answer):
            context.trace.update {
                $0.usage = answer.usage.openAI
                $0.firstByteAt = .now
            }
            ticket?.finish(.canonical(answer))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        case .stream(let stream):
            let collector = ticket != nil ? call?.format.map { AnswerCollector(format: $0, streaming: true) } : nil
            return Response(
                status: .ok,
                headers: [.contentType: stream.translator.contentType, .cacheControl: "no-cache", .xAccelBuffering: "no"],
                body: .init {
                    [promptBytes = call?.body.readableBytes ?? 0, model = call?.model ?? "", keep = call?.keepAnswer, keepResponse = call?.keepResponse]
                    writer in
                    try await relayStream(
                        stream, upstream: upstream, lease: lease, collector: collector, ticket: ticket, model: model,
                        promptBytes: promptBytes, keep: keep, keepResponse: keepResponse,
                        context: context, writer: &writer)
                })
        }
    }

    /// Relays a stream chunk by chunk: each upstream chunk is translated and written before the next is read,
    /// so the client's pace is the upstream's pace (backpressure) and nothing is buffered whole.
    func relayStream(
        _ stream: UpstreamStream, upstream: any UpstreamProvider, lease: UpstreamLease?, collector: AnswerCollector?,
        ticket: CacheTicket?, model: String, promptBytes: Int, keep: (@Sendable (Generation.Answer) async -> Void)? = nil,
        keepResponse: (@Sendable (ByteBuffer) async -> Void)? = nil,
        context: SluiceRequestContext, writer: inout any ResponseBodyWriter
    ) async throws {
        var kept = keep == nil && keepResponse == nil
        metrics.streamsInFlight.increment()
        defer { metrics.streamsInFlight.decrement() }
        // The upstream is busy with this request until its stream ends, so the slot is held as long. Paths that
        // end it without a verdict (client gone, writer failed) leave it to this.
        defer { lease?.end(.neutral) }
        var collector = collector
        var answer: CachedAnswer?
        defer { ticket?.finish(answer) }
        var translator = stream.translator
        var output = ByteBuffer()
        var failure: APIError?
        var iterator = stream.body.makeAsyncIterator()
        var first = true
        // The drain's clock starts when shutdown does, not when the next chunk happens to arrive.
        try await withGracefulShutdownHandler {
            while true {
                if let drain, drain.streamsMustEnd() {
                    failure = .shuttingDown()
                    break
                }
                let chunk: ByteBuffer?
                do {
                    chunk = try await iterator.next()
                } catch {
                    failure = UpstreamFailure.apiError(for: error, logger: context.logger)
                    break
                }
                output.clear()
                do {
                    if let chunk {
                        try translator.translate(chunk, into: &output)
                    } else {
                        try translator.finish(into: &output)
                    }
                } catch {
                    // Translators throw only APIError; the closure around this loop does not carry the typed throw.
                    failure = error as? APIError ?? .upstreamFailed()
                }
                if !kept, let keep, let answer = translator.canonicalAnswer {
                    // The chunk that finishes the answer waits for it to be kept, so the client never holds an id that
                    // cannot be continued yet.
                    kept = true
                    await keep(answer)
                }
                if !kept, let keepResponse, let response = (translator as? ResponsesStreamPassthrough)?.finalResponse {
                    kept = true
                    await keepResponse(response)
                }
                if output.readableBytes > 0 {
                    if first {
                        first = false
                        context.trace.update { $0.firstByteAt = .now }
                    }
                    collector?.observe(output)
                    do {
                        try await writer.write(output)
                    } catch {
                        // The client went away. Dropping the iterator cancels the upstream request.
                        context.trace.update {
                            $0.clientDisconnected = true
                            $0.usage = translator.usage
                            $0.errorCode = "client_disconnected"
                        }
                        context.logger.info("client disconnected mid-stream; upstream request cancelled")
                        throw error
                    }
                }
                if failure != nil || chunk == nil { break }
            }
        } onGracefulShutdown: { [drain] in
            drain?.begin()
        }
        context.trace.update { $0.usage = translator.usage }
        if translator.usage == nil, let completion = translator.estimatedCompletionTokens {
            // No usage chunk (the client did not ask for one, or the stream ended early): account an estimate of
            // what was generated, flagged as such, rather than zero. About four bytes of request JSON per prompt token.
            context.trace.update {
                $0.usage = Usage(promptTokens: promptBytes / 4, completionTokens: completion)
                $0.tokensEstimated = true
            }
        }
        if let failure {
            context.trace.update {
                $0.streamFailed = true
                $0.errorCode = failure.code
            }
            if failure.code == APIError.shutdownCode {
                // Not the upstream's fault: its breaker and error counts stay as they were.
                lease?.end(.neutral)
                context.logger.notice("stream ended by shutdown before its answer was complete")
            } else {
                lease?.end(.failure)
                metrics.upstreamError(upstream: upstream.endpoint.name, code: failure.code)
                context.logger.error("upstream stream failed after it started", metadata: ["code": .string(failure.code)])
            }
            try await writer.write(translator.failureFrame(for: failure))
        } else {
            lease?.end(.success)
            if var collector, let generation = collector.answer() {
                answer = .generation(generation.withTemplate(format: collector.format, model: model))
            } else if ticket != nil, let canonical = translator.canonicalAnswer {
                answer = .canonical(canonical)
            }
        }
        try await writer.finish(nil)
    }
}

/// What a request's `Cache-Control` allows: `no-cache` skips reading, `no-store` skips reading and writing.
struct CachePolicy {
    var reads = true
    var writes = true

    init?(_ header: String?) {
        guard let header else { return }
        for directive in header.lowercased().split(separator: ",") {
            switch directive.trimmingCharacters(in: .whitespaces) {
            case "no-cache": reads = false
            case "no-store":
                reads = false
                writes = false
            default: break
            }
        }
    }
}

extension HTTPField.Name {
    static let xCache = Self("X-Cache")!
    static let xAccelBuffering = Self("X-Accel-Buffering")!
}

/// What a pass-through needs of an OpenAI request: the fields routing, limits and the cache read.
///
/// When every upstream that could serve the model speaks OpenAI's API, the body goes there byte for byte, so
/// typed validation of the rest would only refuse valid requests Sluice's types do not model (token-id embeddings
/// input, `custom` tools): the upstream validates what it serves.
struct PassThroughProbe: Decodable, HasItemLimits {
    /// The embeddings cap holds on the pass-through too: the scan refuses a 200,000-input body before any decoder
    /// builds it.
    static let itemLimits = EmbeddingsRequest.itemLimits

    var model: String
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?
    var temperature: Double?
    var seed: Int?

    enum CodingKeys: String, CodingKey {
        case model, stream, n, temperature, seed
        case streamOptions = "stream_options"
    }

    /// A chat request carrying only these fields, for the pass-through lane.
    var chatRequest: ChatCompletionRequest {
        var chat = ChatCompletionRequest(model: model, messages: [], stream: stream)
        chat.streamOptions = streamOptions
        chat.n = n
        chat.temperature = temperature
        chat.seed = seed
        return chat
    }
}

extension Gateway {
    /// The probe of a body bound only for OpenAI-compatible upstreams, or nil when an upstream that translates
    /// might serve it (then the typed, field-named validation applies).
    func passThroughProbe(_ body: ByteBuffer, context: SluiceRequestContext) throws -> PassThroughProbe? {
        guard upstreams.contains(where: { $0.endpoint.kind == .openai }) else { return nil }
        // Still checked: JSON syntax, duplicate keys, number ranges, and the fields the gateway itself reads.
        let probe = try RequestDecoding.decode(PassThroughProbe.self, from: body)
        if probe.model.isEmpty { throw APIError.invalidValue("model", "must not be empty.") }
        let model = aliasTarget(probe.model) ?? probe.model
        guard let servers = try? servers(for: model, requested: probe.model, context: context, stream: probe.stream ?? false),
            servers.allSatisfy({ upstreams[$0].endpoint.kind == .openai })
        else { return nil }
        return probe
    }

    /// A typed embeddings request; token-id input, which no translating upstream takes, gets a 400 that says so.
    static func decodeEmbeddings(_ body: ByteBuffer) throws -> EmbeddingsRequest {
        let result = Result { () throws(APIError) -> EmbeddingsRequest in try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: body) }
        if case .failure(let error) = result, error.param?.hasPrefix("input") == true, hasTokenInput(body) {
            throw APIError.invalidValue("input", "token arrays are not supported by Ollama upstreams; send the text.")
        }
        return try result.get()
    }

    /// Whether `input` is token ids (`[1, 2]` or `[[1, 2], [3]]`), which only OpenAI-compatible servers take.
    static func hasTokenInput(_ body: ByteBuffer) -> Bool {
        guard case .array(let items)? = (try? JSONDecoder().decode(JSONValue.self, from: body))?["input"], let first = items.first else {
            return false
        }
        switch first {
        case .int: return true
        case .array(let inner): return inner.allSatisfy { if case .int = $0 { true } else { false } }
        default: return false
        }
    }
}
