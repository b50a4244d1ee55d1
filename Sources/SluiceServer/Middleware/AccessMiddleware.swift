import HTTPTypes
import Hummingbird
import Logging
import SluiceCore

/// Authentication, budgets and rate limits for the API and admin routes.
///
/// Keys come as `Authorization: Bearer KEY` or `X-API-Key: KEY`, checked against the in-memory ``KeyDirectory``
/// (no database access per request). A failed check is logged with the request ID and client IP, never the
/// presented key, and counted in `sluice_auth_failures_total`. On the admin routes a dashboard session cookie
/// also counts as the master key, once the store confirms no instance signed it out.
public struct AccessMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext
    let directory: KeyDirectory
    let limiter: any RequestLimiter
    let authMode: GatewayConfiguration.AuthMode
    let metrics: GatewayMetrics
    let now: @Sendable () -> Double
    let sessions: DashboardSessions?
    /// Prices a budgeted call's worst case for its reservation (0 for models only local upstreams serve); nil: no
    /// reservations.
    let worstCase: (@Sendable (CallEstimate) -> Double)?
    /// How long a reservation counts at most: the longest a call can run, plus a margin.
    let reservationHold: Double
    let maxBodyBytes: Int

    public init(
        directory: KeyDirectory, limiter: any RequestLimiter, authMode: GatewayConfiguration.AuthMode, metrics: GatewayMetrics,
        sessions: DashboardSessions? = nil, worstCase: (@Sendable (CallEstimate) -> Double)? = nil, reservationHold: Double = 360,
        maxBodyBytes: Int = 4 << 20, now: @escaping @Sendable () -> Double
    ) {
        self.worstCase = worstCase
        self.reservationHold = reservationHold
        self.maxBodyBytes = maxBodyBytes
        self.directory = directory
        self.sessions = sessions
        self.limiter = limiter
        self.authMode = authMode
        self.metrics = metrics
        self.now = now
    }

    typealias Area = Surface.Area

    /// Bytes of an unmatched path kept in its usage record.
    static let maxRecordedPath = 128

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The route that matched decides; a request that matched none is judged by its normalised path, so a path the
        // router would resolve differently than a prefix test can never reach a handler unguarded.
        let area = Surfaces.area(matched: context.endpointPath, path: request.uri.path)
        guard area != .open else { return try await next(request, context) }
        if area == .api {
            // Rejected requests are accounted too, under the route that matched (`/v1/responses/{id}`, never the id
            // in it); a path no route matched is recorded as sent, cut short, so a stranger's made-up paths cannot
            // fill the usage table with long text. The handler replaces this with its canonical route.
            let route = context.endpointPath ?? String(request.uri.path.utf8.prefix(Self.maxRecordedPath)) ?? "unmatched"
            context.trace.update { $0.route = route }
        }
        let now = self.now()
        let identity =
            if area == .admin, Self.presentedKey(request.headers) == nil, let sessions {
                try await sessionIdentity(request, sessions: sessions, context: context)
            } else {
                try authenticate(request, context: context, area: area, now: now)
            }

        var key: APIKeyRecord?
        var team: TeamRecord?
        if case .key(let record) = identity {
            key = record
            team = record.teamID.flatMap(directory.team(id:))
            // Budget and rate refusals are this key's usage too.
            context.trace.update { $0.keyID = record.id }
            if let refusal = directory.budgetRefusal(key: record, team: team, now: now) { throw refusal }
        }
        let verdict = limiter.admit(clientIP: context.clientIP, key: key, team: team, now: now)
        if let refusedBy = verdict.refusedBy {
            metrics.rateLimited(limit: refusedBy)
            context.logger.info("rate limited", metadata: ["limit": .string(refusedBy), "key_id": .string(key?.id ?? "")])
            throw APIError.rateLimited(refusedBy, retryAfter: verdict.retryAfter, headers: verdict.headers)
        }

        var request = request
        if let key, let worstCase, key.budgetUSD != nil || team?.budgetUSD != nil, request.method == .post {
            try await reserve(&request, key: key, team: team, worstCase: worstCase, context: context, now: now)
        }

        var context = context
        context.identity = identity
        if let key {
            context.logger[metadataKey: "key_id"] = .string(key.id)
            directory.noteUse(keyID: key.id, at: now)
        }
        var response = try await next(request, context)
        for (name, value) in verdict.headers {
            if let name = HTTPField.Name(name) { response.headers[name] = value }
        }
        return response
    }

    /// Holds the call's worst-case cost against its budgets before it is sent, or refuses it with 403 when that
    /// does not fit; the call's usage record settles it. The body is read here once and handed on as read.
    func reserve(
        _ request: inout Request, key: APIKeyRecord, team: TeamRecord?, worstCase: @Sendable (CallEstimate) -> Double,
        context: Context, now: Double
    ) async throws {
        let body = try await request.collectBody(upTo: maxBodyBytes)
        guard let estimate = CallEstimate(body: body.readableBytesView) else { return }
        let amount = worstCase(estimate)
        guard amount > 0 else { return }
        let reservation = BudgetReservation(
            requestID: context.requestID, keyID: key.id, amountUSD: amount, expiresAt: now + reservationHold)
        guard directory.reserve(reservation, key: key, team: team, now: now) else {
            metrics.budgetReservationRefused()
            throw APIError.budgetExceeded(team: key.budgetUSD == nil)
        }
    }

    /// Who the request comes from, or the 401/403/503 that refuses it.
    func authenticate(_ request: Request, context: Context, area: Area, now: Double) throws -> ClientIdentity {
        let presented = Self.presentedKey(request.headers)
        if area == .admin {
            guard directory.hasMasterKey else {
                throw fail(APIError.adminOnly(), reason: "no_master_key", context: context)
            }
            guard let presented else { throw fail(.missingKey(), reason: "missing", context: context) }
            guard case .master = directory.lookup(presented) else {
                throw fail(.invalidKey(), reason: "invalid", context: context)
            }
            return .master
        }
        if authMode == .off { return .anonymous }
        // Fail closed: until the keys are loaded we cannot tell whether auth is required.
        guard directory.isReady else {
            throw APIError(status: 503, type: "server_error", code: "starting", message: "The gateway is starting; retry shortly.", retryAfter: 1)
        }
        let required = authMode == .required || directory.hasMasterKey || directory.hasKeys
        guard let presented else {
            if required { throw fail(.missingKey(), reason: "missing", context: context) }
            return .anonymous
        }
        switch directory.lookup(presented) {
        case .master:
            return .master
        case .key(let record):
            if let refusal = record.refusal(now: now) {
                throw fail(.invalidKey(refusal), reason: record.revoked ? "revoked" : "expired", context: context)
            }
            return .key(record)
        case .unknown:
            // Without required auth, SDKs that insist on sending some key (e.g. "ollama") still work.
            if required { throw fail(.invalidKey(), reason: "invalid", context: context) }
            return .anonymous
        }
    }

    /// The master identity of a live dashboard session cookie, or the 401/403/503 that refuses it.
    ///
    /// Apart from ``authenticate(_:context:area:now:)`` because whether another instance signed the session out
    /// is a question for the store, which an API request's key check must never wait on.
    func sessionIdentity(_ request: Request, sessions: DashboardSessions, context: Context) async throws -> ClientIdentity {
        guard directory.hasMasterKey else {
            throw fail(APIError.adminOnly(), reason: "no_master_key", context: context)
        }
        let token = request.cookies[DashboardSessions.cookieName]?.value
        guard try await sessions.isLive(token, logger: context.logger) else {
            throw fail(.missingKey(), reason: "missing", context: context)
        }
        try checkSessionRequest(request, context: context)
        return .master
    }

    /// Refuses a cookie-authenticated change unless it carries `X-Sluice-CSRF: 1`, which the dashboard's script
    /// always sends.
    ///
    /// SameSite=Strict already keeps the cookie off cross-site requests; this also covers same-site ones (another
    /// port or subdomain of the same site). A custom header was chosen over comparing `Origin` with `Host`
    /// because it stays right behind proxies that rewrite the host or terminate TLS, and a page from another
    /// origin can only add it after a CORS preflight, which ``CORSGate`` never grants for this header.
    func checkSessionRequest(_ request: Request, context: Context) throws {
        guard request.method != .get, request.method != .head else { return }
        guard request.headers[.sluiceCSRF] == "1" else {
            throw fail(
                APIError(status: 403, type: "invalid_request_error", code: "csrf_header_missing",
                    message: "Requests authenticated by the dashboard session must send X-Sluice-CSRF: 1."),
                reason: "csrf", context: context)
        }
    }

    func fail(_ error: APIError, reason: String, context: Context) -> APIError {
        metrics.authFailure(reason: reason)
        context.logger.warning(
            "authentication failed", metadata: ["reason": .string(reason), "client_ip": .string(context.clientIP ?? "")])
        return error
    }

    /// The key from `Authorization: Bearer` or `X-API-Key`, if either is present and non-empty.
    static func presentedKey(_ headers: HTTPFields) -> Substring? {
        if let authorization = headers[.authorization] {
            let value = authorization[...]
            if value.count > 7, value.prefix(7).lowercased() == "bearer " {
                let key = value.dropFirst(7).drop(while: { $0 == " " })
                if !key.isEmpty { return key }
            }
        }
        if let key = headers[.xAPIKey], !key.isEmpty { return key[...] }
        return nil
    }
}

extension HTTPField.Name {
    static let sluiceCSRF = Self("X-Sluice-CSRF")!
}
