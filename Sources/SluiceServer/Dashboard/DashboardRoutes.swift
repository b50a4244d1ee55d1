import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `/dashboard`: the login form, the single-page dashboard and its assets, and the session cookie.
///
/// These routes are outside ``AccessMiddleware``'s areas: the login page must be reachable without a key. The
/// dashboard's data comes from the `/admin` JSON API, which accepts the session cookie set here.
struct DashboardRoutes {
    let directory: KeyDirectory
    let sessions: DashboardSessions
    let metrics: GatewayMetrics
    /// Marks the cookie `Secure` when this process serves HTTPS itself; behind a TLS-terminating proxy the
    /// gateway cannot tell, and a `Secure` cookie over plain HTTP would never come back.
    let secureCookie: Bool
    /// Login attempts per client IP: the form must not become a faster way to guess the master key.
    let loginAttempts: RateLimiter
    let now: @Sendable () -> Double


    struct LoginForm: Decodable {
        var key: String?
    }

    func addRoutes(to router: Router<SluiceRequestContext>) {
        router.get("dashboard") { request, context in
            if try await isAuthenticated(request, logger: context.logger) { return html(DashboardAssets.appPage) }
            return html(DashboardAssets.loginPage(message: directory.hasMasterKey ? nil : .noMasterKey))
        }
        router.get("dashboard/app.css") { _, _ in
            asset(DashboardAssets.css, contentType: "text/css; charset=utf-8")
        }
        router.get("dashboard/app.js") { _, _ in
            asset(DashboardAssets.javascript, contentType: "text/javascript; charset=utf-8")
        }
        router.post("dashboard/login") { request, context in
            if loginAttempts.admit(clientIP: context.clientIP ?? "unknown", key: nil, now: now()).refusedBy != nil {
                metrics.rateLimited(limit: "requests per minute for this client address")
                return html(DashboardAssets.loginPage(message: .wrongKey), status: .tooManyRequests)
            }
            var request = request
            let body = try await request.collectBody(upTo: 16 * 1024)
            let form = try? URLEncodedFormDecoder().decode(LoginForm.self, from: String(buffer: body))
            guard directory.hasMasterKey else {
                return html(DashboardAssets.loginPage(message: .noMasterKey), status: .unauthorized)
            }
            guard let key = form?.key, !key.isEmpty, case .master = directory.lookup(key) else {
                // Counted and logged like a failed API key, without the presented value.
                let reason = (form?.key ?? "").isEmpty ? "missing" : "invalid"
                metrics.authFailure(reason: reason)
                context.logger.warning(
                    "dashboard login failed", metadata: ["reason": .string(reason), "client_ip": .string(context.clientIP ?? "")])
                return html(DashboardAssets.loginPage(message: .wrongKey), status: .unauthorized)
            }
            // The key matched the master key, so there is one to sign sessions with.
            guard let token = sessions.create() else {
                return html(DashboardAssets.loginPage(message: .wrongKey), status: .unauthorized)
            }
            context.logger.notice("dashboard login", metadata: ["client_ip": .string(context.clientIP ?? "")])
            var response = Response(status: .seeOther, headers: [.location: "/dashboard"])
            response.setCookie(sessionCookie(value: token, maxAge: DashboardSessions.lifetime))
            return response
        }
        router.post("dashboard/logout") { request, context in
            do {
                try await sessions.signOut(request.cookies[DashboardSessions.cookieName]?.value)
            } catch {
                // Ended here and the cookie is dropped below; the user is signed out of this browser either way.
                context.logger.error(
                    "dashboard sign-out not recorded in the store: other instances accept the session until it expires",
                    metadata: ["error": "\(error)"])
            }
            var response = Response(status: .seeOther, headers: [.location: "/dashboard"])
            response.setCookie(sessionCookie(value: "", maxAge: 0))
            return response
        }
    }

    /// A live session cookie, or the master key in a header (scripts, and the contract's "key in header").
    func isAuthenticated(_ request: Request, logger: Logger) async throws -> Bool {
        if try await sessions.isLive(request.cookies[DashboardSessions.cookieName]?.value, logger: logger) { return true }
        guard let presented = AccessMiddleware.presentedKey(request.headers), case .master = directory.lookup(presented) else {
            return false
        }
        return true
    }

    func sessionCookie(value: String, maxAge: Int) -> Cookie {
        // Strict: the browser sends it on no cross-site request at all, not even top-level navigations.
        Cookie(name: DashboardSessions.cookieName, value: value, maxAge: maxAge, path: "/", secure: secureCookie, httpOnly: true, sameSite: .strict)
    }

    func html(_ page: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    func asset(_ text: String, contentType: String) -> Response {
        // no-store as well: the assets are tiny, and a stale script after an upgrade would talk to a changed API.
        Response(
            status: .ok, headers: [.contentType: contentType, .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
