import HTTPTypes
import Hummingbird

/// One route the gateway serves, and what it is beyond its handler.
///
/// `path` is the router's pattern (`/v1/responses/{id}`), which is also what `context.endpointPath` holds once the
/// route matched, and the route's metrics label.
struct Surface: Sendable {
    /// Whose rules a route follows: API keys and limits (`api`), the master key (`admin`), or none (`open`).
    enum Area: Sendable {
        case api
        case admin
        case open
    }

    /// What answers an API route. Routes without one (admin, operations, dashboard) are registered by their owners;
    /// a test checks the router holds exactly the table's routes.
    enum Endpoint: Sendable {
        case chatCompletions, completions, embeddings, models, model
        case messages, countTokens
        case responses, storedResponse, deleteStoredResponse
        /// Ollama's native API, forwarded; `streams` when Ollama streams the route unless the body says otherwise.
        case native(streams: Bool)
    }

    let path: String
    let methods: [HTTPRequest.Method]
    let area: Area
    /// The error shape the route's clients parse, whatever refuses the request.
    let dialect: ErrorDialect
    let endpoint: Endpoint?

    init(_ path: String, _ methods: [HTTPRequest.Method], _ area: Area, _ dialect: ErrorDialect = .openAI, _ endpoint: Endpoint? = nil) {
        self.path = path
        self.methods = methods
        self.area = area
        self.dialect = dialect
        self.endpoint = endpoint
    }
}

/// Every route the gateway serves: the one table that registers the API routes and that access control, error
/// shapes, 404-or-405 and the metrics label read. A new client surface is one row and one ``Surface/Endpoint``.
enum Surfaces {
    static let all: [Surface] = [
        // OpenAI API
        Surface("/v1/chat/completions", [.post], .api, .openAI, .chatCompletions),
        Surface("/v1/completions", [.post], .api, .openAI, .completions),
        Surface("/v1/embeddings", [.post], .api, .openAI, .embeddings),
        Surface("/v1/models", [.get], .api, .openAI, .models),
        Surface("/v1/models/{id}", [.get], .api, .openAI, .model),
        Surface("/v1/responses", [.post], .api, .openAI, .responses),
        Surface("/v1/responses/{id}", [.get], .api, .openAI, .storedResponse),
        Surface("/v1/responses/{id}", [.delete], .api, .openAI, .deleteStoredResponse),
        // Anthropic Messages API
        Surface("/v1/messages", [.post], .api, .anthropic, .messages),
        Surface("/v1/messages/count_tokens", [.post], .api, .anthropic, .countTokens),
        // Ollama's native API
        Surface("/api/chat", [.post], .api, .ollama, .native(streams: true)),
        Surface("/api/generate", [.post], .api, .ollama, .native(streams: true)),
        Surface("/api/embed", [.post], .api, .ollama, .native(streams: false)),
        Surface("/api/embeddings", [.post], .api, .ollama, .native(streams: false)),
        Surface("/api/show", [.post], .api, .ollama, .native(streams: false)),
        Surface("/api/tags", [.get], .api, .ollama, .native(streams: false)),
        Surface("/api/version", [.get], .api, .ollama, .native(streams: false)),
        Surface("/api/ps", [.get], .api, .ollama, .native(streams: false)),
        // Administration
        Surface("/admin/keys", [.get, .post], .admin),
        Surface("/admin/keys/{id}", [.delete], .admin),
        Surface("/admin/teams", [.get, .post], .admin),
        Surface("/admin/usage", [.get], .admin),
        Surface("/admin/usage/recent", [.get], .admin),
        Surface("/admin/config", [.get], .admin),
        // Operations
        Surface("/healthz", [.get], .open),
        Surface("/readyz", [.get], .open),
        Surface("/metrics", [.get], .open),
        // Dashboard (its API calls go to /admin with the session cookie)
        Surface("/dashboard", [.get], .open),
        Surface("/dashboard/app.css", [.get], .open),
        Surface("/dashboard/app.js", [.get], .open),
        Surface("/dashboard/login", [.post], .open),
        Surface("/dashboard/logout", [.post], .open),
    ]

    /// Rows by path; a path with several rows (one per method) has the same area and dialect in each.
    private static let byPath: [String: Surface] = Dictionary(all.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })

    /// The row of a route the router matched (its `endpointPath`).
    static func surface(matched endpointPath: String?) -> Surface? {
        endpointPath.flatMap { byPath[$0] }
    }

    /// The methods the table has for a request's path, parameters matching any non-empty segment; empty when no
    /// route has the path. A request with another method gets 405 and these in `Allow`, not 404.
    static func methods(ofPath path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        return all.filter { surface in
            let pattern = surface.path.split(separator: "/", omittingEmptySubsequences: false)
            return pattern.count == segments.count
                && zip(pattern, segments).allSatisfy { $0 == $1 || ($0.hasPrefix("{") && $0.hasSuffix("}") && !$1.isEmpty) }
        }.flatMap(\.methods)
    }

    static func hasPath(_ path: String) -> Bool { !methods(ofPath: path).isEmpty }

    /// The area of a request: its route's, or for a path no route matched, the area its first segment names, so an
    /// unknown `/v1/…` path is still refused without a key rather than telling a stranger which routes exist.
    ///
    /// The segment is compared without regard to case, so a router that ever matched case-insensitively could not
    /// open a gap between what is routed and what is guarded.
    static func area(matched endpointPath: String?, path: String) -> Surface.Area {
        if let surface = surface(matched: endpointPath) { return surface.area }
        let first = path.utf8.dropFirst().prefix { $0 != UInt8(ascii: "/") }
        switch first.count {
        case 2 where equalsIgnoringCase(first, "v1"): return .api
        case 3 where equalsIgnoringCase(first, "api"): return .api
        case 5 where equalsIgnoringCase(first, "admin"): return .admin
        default: return .open
        }
    }

    /// The error shape of a request: its route's, else by its path's API (`/v1/messages…` Anthropic, `/api/…`
    /// Ollama, the rest OpenAI).
    static func dialect(matched endpointPath: String?, path: String) -> ErrorDialect {
        if let surface = surface(matched: endpointPath) { return surface.dialect }
        if path.hasPrefix("/v1/messages") { return .anthropic }
        if path.hasPrefix("/api/") { return .ollama }
        return .openAI
    }

    private static func equalsIgnoringCase(_ bytes: Substring.UTF8View.SubSequence, _ lowercase: StaticString) -> Bool {
        var index = 0
        let target = lowercase.utf8Start
        for byte in bytes {
            let folded = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
            if folded != target[index] { return false }
            index += 1
        }
        return true
    }
}
