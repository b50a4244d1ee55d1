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

/// The cache in front of the upstreams: hits before decoding, keys, and replay in the client's own protocol.
extension Gateway {
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

    /// The cache key of a body; nil when it is not JSON. A miss found before decoding keeps its key for the
    /// exchange, which needs the same one unless an alias rewrote the body.
    func cacheKey(family: String, body: ByteBuffer, servers: [Int], context: SluiceRequestContext) -> CacheKey? {
        if let known = context.trace.decisions.withLock({ $0.cacheKey }), known.family == family, known.upstreams == servers,
            known.body == body
        {
            return known.key
        }
        let scope = cacheScope == .key ? context.trace.snapshot.keyID : nil
        // Keyed by the set of upstreams that may answer, not the one picked: the pick varies per request,
        // the answer's source does not (a single upstream keeps its old key).
        let upstreamSet = servers.map { upstreams[$0].endpoint.name }.joined(separator: ",")
        guard let key = try? CacheKey.make(family: family, upstream: upstreamSet, body: body, scope: scope) else { return nil }
        context.trace.decisions.withLock { $0.cacheKey = (family, servers, body, key) }
        return key
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
