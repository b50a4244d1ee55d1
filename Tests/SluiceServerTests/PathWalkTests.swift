import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SluiceCore
import Testing

@testable import SluiceServer

/// Every guarded route, reached through every spelling of its path that a router or a proxy might resolve to it,
/// answers 401 without a key (or 400/404 when the spelling itself is refused): the access decision can never be
/// taken on a different reading of the path than the router's.
@Suite("Path walk")
struct PathWalkTests {
    static let master = "master-secret-value"
    /// Hundreds of refused requests would each log a warning.
    static let quiet: Logger = {
        var logger = Logger(label: "path-walk")
        logger.logLevel = .critical
        return logger
    }()

    func router() -> Router<SluiceRequestContext> {
        var configuration = GatewayConfiguration()
        configuration.masterKey = Self.master
        return buildRouter(
            configuration: configuration, upstreams: [FakeUpstream(.answer("hello"))],
            directory: KeyDirectory(masterKey: Self.master, keys: [IssuedKey(name: "k", now: 0).record], loaded: true),
            store: nil, recorder: CollectingRecorder(), dependencies: .init(store: .none, now: { 1_700_000_000 }))
    }

    /// `/admin/keys` → `//admin/keys`, `/admin//keys`, `/./admin/keys`, `/%2Fadmin/keys`, `/ADMIN/KEYS`, …
    static func variants(of path: String) -> [String] {
        let segments = path.split(separator: "/").map(String.init)
        let first = segments[0]
        let rest = segments.dropFirst().joined(separator: "/")
        let tail = rest.isEmpty ? "" : "/" + rest
        var out = [
            "/" + path, "//" + path, path + "/", path + "//", path + "/.", "/." + path, "/./." + path,
            "/x/.." + path, "/" + first + "/../" + first + tail, "/%2F" + first + tail, "/%2f" + first + tail,
            "/" + first + "%2F" + rest, "/" + first + "%2f" + rest, "/%2e" + path, "/%2E/" + first + tail,
            "/" + first.uppercased() + tail, path.uppercased(), "/" + first.capitalized + tail, "/" + first + "\\" + rest,
            "/%00" + path,
        ]
        if !rest.isEmpty {
            out += ["/" + first + "//" + rest, "/" + first + "/./" + rest, "/" + first + "///" + rest]
        }
        return out
    }

    /// ``Surfaces`` is the one table of routes: the router holds exactly its rows, each with its methods, so the
    /// access area, error shape and metrics label the table gives can never miss a route.
    @Test func theRouterHoldsExactlyTheSurfacesTable() {
        let routed = Set(router().routes.map { "\($0.method) \($0.path.description)" })
        let table = Set(Surfaces.all.flatMap { surface in surface.methods.map { "\($0) \(surface.path)" } })
        #expect(routed == table, "routed but not in the table: \(routed.subtracting(table)); in the table but not routed: \(table.subtracting(routed))")
        #expect(Surfaces.area(matched: "/v1/messages", path: "/v1/messages") == .api)
        #expect(Surfaces.area(matched: nil, path: "/V1/unknown") == .api)
        #expect(Surfaces.area(matched: "/admin/keys/{id}", path: "/admin/keys/k1") == .admin)
        #expect(Surfaces.area(matched: "/healthz", path: "/healthz") == .open)
        #expect(Surfaces.dialect(matched: "/v1/messages/count_tokens", path: "") == .anthropic)
        #expect(Surfaces.dialect(matched: nil, path: "/api/nothing") == .ollama)
        #expect(Surfaces.hasPath("/v1/responses/resp_1") && Surfaces.hasPath("/admin/keys/k1") && !Surfaces.hasPath("/v1/responses/"))
        #expect(Surfaces.methods(ofPath: "/v1/responses/resp_1") == [.get, .delete])
        #expect(Surfaces.methods(ofPath: "/admin/keys") == [.get, .post])
    }

    @Test func everyGuardedRouteRefusesEveryPathVariantWithoutAKey() async throws {
        let router = router()
        let guarded = router.routes.map { (path: $0.path.description, method: $0.method) }.filter { route in
            route.path.hasPrefix("/v1") || route.path.hasPrefix("/api") || route.path.hasPrefix("/admin")
        }
        // The table must be what it claims: every API and admin route, not an empty walk.
        #expect(guarded.count >= 15)
        let app = Application(router: router, logger: Self.quiet)
        try await app.test(.router) { client in
            for route in guarded {
                let path = route.path.replacingOccurrences(of: "{id}", with: "x")
                for variant in Self.variants(of: path) {
                    let body = route.method == .post ? ByteBuffer(string: #"{"model":"m","name":"x"}"#) : nil
                    try await client.execute(uri: variant, method: route.method, body: body) { response in
                        #expect(
                            [400, 401, 404].contains(Int(response.status.code)),
                            "\(route.method) \(variant) answered \(response.status.code)")
                    }
                }
                // And the canonical path itself is guarded.
                try await client.execute(uri: path, method: route.method) { response in
                    #expect(response.status == .unauthorized, "\(route.method) \(path) answered \(response.status.code)")
                }
            }
        }
    }

    @Test func aVariantWithTheKeyReachesTheSameRoute() async throws {
        let app = Application(router: router(), logger: Self.quiet)
        try await app.test(.router) { client in
            // Empty segments are what the router itself ignores.
            for uri in ["//admin/config", "/admin//config/", "///admin/config"] {
                try await client.execute(uri: uri, method: .get, headers: [.authorization: "Bearer \(Self.master)"]) { response in
                    #expect(response.status == .ok, "\(uri) answered \(response.status.code)")
                }
            }
        }
    }

    @Test(arguments: [
        ("/v1/models", PathNormalization.Outcome.canonical),
        ("/", .canonical),
        ("/v1/models?x=//y", .canonical),
        ("//v1/models", .rewritten("/v1/models")),
        ("/v1//models/?a=b", .rewritten("/v1/models?a=b")),
        ("/a/./b/../c", .refused("it contains . or .. segments")),
        ("/..", .refused("it contains . or .. segments")),
        ("/%2Fadmin", .refused("it percent-encodes /, \\, . or NUL")),
        ("/%2e%2e/admin", .refused("it percent-encodes /, \\, . or NUL")),
        ("/a%2", .refused("it has a malformed percent-escape")),
        ("/a\\b", .refused("it contains a backslash")),
        ("*", .refused("it must start with /")),
        ("/v1/models/qwen%3A7b", .rewritten("/v1/models/qwen%3A7b")),
        ("/.well-known", .canonical),
        ("/a/...", .canonical),
    ])
    func normalization(_ target: String, _ expected: PathNormalization.Outcome) {
        #expect(PathNormalization.normalize(target) == expected)
    }
}
