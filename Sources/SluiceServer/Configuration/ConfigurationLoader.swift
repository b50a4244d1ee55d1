import Foundation
import Logging
import SluiceCore
import SluiceUpstream
import Yams

/// A configuration that cannot be used, with a message naming the option and where its value came from.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Builds a `GatewayConfiguration` from its layers: flag > environment > config file > `.env` > default.
public struct ConfigurationLoader: Sendable {
    /// Options set on the command line, by kebab-case name (`max-body-bytes`).
    public var flags: [String: String]
    public var environment: [String: String]
    /// Where `.env` is read from; nil skips it.
    public var dotEnvPath: String?

    public init(flags: [String: String] = [:], environment: [String: String] = ProcessInfo.processInfo.environment, dotEnvPath: String? = ".env") {
        self.flags = flags
        self.environment = environment
        self.dotEnvPath = dotEnvPath
    }

    /// Every option a layer may set, by kebab-case name.
    public static let optionNames: [String] = [
        "host", "port", "upstream", "upstream-kind", "upstream-api-key", "database", "master-key", "auth", "allow-insecure",
        "rate-limit-rps", "rate-limit-burst", "ip-rate-limit-rpm", "trusted-proxies", "cache-ttl", "cache-max-bytes",
        "cache-scope", "cache-deterministic-only",
        "max-body-bytes", "upstream-timeout", "connect-timeout", "idle-timeout", "cors-origins", "log-level", "log-file",
        "log-bodies", "store-bodies", "tls-cert", "tls-key", "shutdown-grace",
        "retention-days", "response-retention", "reference-model", "record-usage",
        "breaker-failures", "breaker-cooldown", "probe-interval", "upstream-max-inflight", "upstream-queue", "upstream-queue-timeout",
        "client-header-timeout", "client-body-timeout", "client-idle-timeout", "max-connections",
        "client-write-timeout", "cache-coalesce-wait", "max-buffered-bytes", "affinity-ttl", "affinity-max",
        "context-policy", "context-max", "overflow-after", "batch-share", "rate-limit-sync-interval", "budget-webhook",
        "rollup-retention-days",
    ]
    /// Keys only a config file can hold.
    static let fileOnlyKeys: Set<String> = ["upstreams", "prices", "aliases", "models"]

    static func envName(_ option: String) -> String {
        "SLUICE_" + option.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    public func load() throws(ConfigurationError) -> GatewayConfiguration {
        let dotEnv = try readDotEnv()
        let configPath = flags["config"] ?? environment["SLUICE_CONFIG"] ?? dotEnv["SLUICE_CONFIG"]
        let file = try configPath.map { path throws(ConfigurationError) in try Self.readConfigFile(path) } ?? ConfigFile()

        var raw: [String: (value: String, source: String)] = [:]
        for name in Self.optionNames {
            let env = Self.envName(name)
            if let v = flags[name] {
                raw[name] = (v, "--\(name)")
            } else if let v = environment[env] {
                raw[name] = (v, env)
            } else if let v = file.options[name] {
                raw[name] = (v, "\(name) in \(configPath ?? "config file")")
            } else if let v = dotEnv[env] {
                raw[name] = (v, "\(env) in .env")
            }
        }
        var config = try Self.parse(raw)
        // A list of upstreams in the file stands unless a flag or the environment names a single one.
        if let list = file.upstreams, !list.isEmpty, flags["upstream"] == nil, environment[Self.envName("upstream")] == nil {
            config.upstreams = list
        }
        config.prices = file.prices
        config.aliases = file.aliases
        config.virtualModels = file.models
        for (name, model) in file.models {
            if file.aliases[name] != nil { throw ConfigurationError("'\(name)' is both an alias and a virtual model in \(configPath ?? "the config file")") }
            if file.aliases[model.model] != nil || (file.models[model.model] != nil && model.model != name) {
                throw ConfigurationError("models.\(name).model names '\(model.model)', itself an alias or virtual model: names do not chain")
            }
        }
        try Self.validate(config)
        return config
    }

    /// A config file's options as strings, and its structured `upstreams` list.
    struct ConfigFile {
        var options: [String: String] = [:]
        var upstreams: [UpstreamEndpoint]?
        var prices: [String: ModelPrice] = [:]
        var aliases: [String: String] = [:]
        var models: [String: VirtualModel] = [:]
    }

    private func readDotEnv() throws(ConfigurationError) -> [String: String] {
        guard let path = dotEnvPath, FileManager.default.fileExists(atPath: path) else { return [:] }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError("cannot read \(path)")
        }
        return DotEnv.parse(text)
    }

    /// Reads a YAML or JSON config file into option strings; `upstreams` is kept aside.
    static func readConfigFile(_ path: String) throws(ConfigurationError) -> ConfigFile {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError("cannot read config file \(path)")
        }
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw ConfigurationError("config file \(path) is not valid YAML or JSON: \(error)")
        }
        guard let map = document as? [String: Any] else {
            if document == nil { return ConfigFile() }
            throw ConfigurationError("config file \(path) must hold a mapping of options")
        }
        var out: [String: String] = [:]
        var upstreams: [UpstreamEndpoint]?
        var prices: [String: ModelPrice] = [:]
        var aliases: [String: String] = [:]
        var models: [String: VirtualModel] = [:]
        for (key, value) in map {
            let name = key.replacingOccurrences(of: "_", with: "-")
            if name == "upstreams" {
                upstreams = try parseUpstreams(value, path: path)
                continue
            }
            if name == "prices" {
                prices = try parsePrices(value, path: path)
                continue
            }
            if name == "aliases" {
                aliases = try parseAliases(value, path: path)
                continue
            }
            if name == "models" {
                models = try parseVirtualModels(value, path: path)
                continue
            }
            if fileOnlyKeys.contains(name) { continue }
            guard optionNames.contains(name) else {
                throw ConfigurationError("unknown option '\(key)' in config file \(path)")
            }
            switch value {
            case let list as [Any]: out[name] = list.map { "\($0)" }.joined(separator: ",")
            case is [String: Any]: throw ConfigurationError("option '\(key)' in \(path) must be a single value")
            default: out[name] = "\(value)"
            }
        }
        return ConfigFile(options: out, upstreams: upstreams, prices: prices, aliases: aliases, models: models)
    }

    /// `prices: {model: {input: USD per 1M tokens, output: USD per 1M tokens}}`.
    static func parsePrices(_ value: Any, path: String) throws(ConfigurationError) -> [String: ModelPrice] {
        guard let map = value as? [String: Any] else {
            throw ConfigurationError("'prices' in \(path) must map model names to {input: USD, output: USD} per million tokens")
        }
        var out: [String: ModelPrice] = [:]
        for (model, entry) in map {
            func number(_ field: String) -> Double? {
                guard let entry = entry as? [String: Any] else { return nil }
                switch entry[field] {
                case let d as Double: return d
                case let i as Int: return Double(i)
                case let s as String: return Double(s)
                default: return nil
                }
            }
            // Costs are summed and written as JSON, which has no infinity: a price must be a finite number.
            guard let input = number("input"), let output = number("output"), (0...1_000_000).contains(input),
                (0...1_000_000).contains(output)
            else {
                throw ConfigurationError("prices.\(model) in \(path) needs input and output: USD per million tokens, 0 to 1000000")
            }
            var price = ModelPrice(inputPerMillion: input, outputPerMillion: output)
            for (field, keyPath) in [("cached_input", \ModelPrice.cachedInputPerMillion), ("cache_write", \ModelPrice.cacheWritePerMillion)] {
                guard (entry as? [String: Any])?[field] != nil else { continue }
                guard let value = number(field), (0...1_000_000).contains(value) else {
                    throw ConfigurationError("prices.\(model).\(field) in \(path) must be USD per million tokens, 0 to 1000000")
                }
                price[keyPath: keyPath] = value
            }
            out[model] = price
        }
        return out
    }

    /// `aliases: {gpt-4o-mini: llama3.2}`: the name a client sends → the model actually served.
    static func parseAliases(_ value: Any, path: String) throws(ConfigurationError) -> [String: String] {
        guard let map = value as? [String: Any] else {
            throw ConfigurationError("'aliases' in \(path) must map model names clients send to the models served")
        }
        var out: [String: String] = [:]
        for (alias, target) in map {
            guard let target = target as? String, !target.isEmpty, !alias.isEmpty else {
                throw ConfigurationError("aliases.\(alias) in \(path) must name a model")
            }
            out[alias] = target
        }
        for (alias, target) in out where out[target] != nil {
            throw ConfigurationError("aliases.\(alias) in \(path) points at '\(target)', itself an alias: aliases do not chain")
        }
        return out
    }

    /// `models: {coder: {model: qwen3-coder:30b, num_ctx: 32768, keep_alive: 30m, think: false, temperature: 0.2,
    /// max_tokens: 4096, system: "…", override: false, warm: true}}`.
    static func parseVirtualModels(_ value: Any, path: String) throws(ConfigurationError) -> [String: VirtualModel] {
        guard let map = value as? [String: Any] else {
            throw ConfigurationError("'models' in \(path) must map the model names clients send to {model: upstream model, defaults}")
        }
        let known: Set<String> = ["model", "num_ctx", "keep_alive", "think", "temperature", "max_tokens", "system", "override", "warm"]
        var out: [String: VirtualModel] = [:]
        for (name, entry) in map {
            func fail(_ field: String, _ expected: String) -> ConfigurationError {
                ConfigurationError("models.\(name).\(field) in \(path) must be \(expected)")
            }
            guard let entry = entry as? [String: Any], let target = entry["model"] as? String, !target.isEmpty, !name.isEmpty else {
                throw ConfigurationError("models.\(name) in \(path) needs 'model': the upstream's name for it")
            }
            if let unknown = entry.keys.first(where: { !known.contains($0) }) {
                throw ConfigurationError("unknown field models.\(name).\(unknown) in \(path); known: \(known.sorted().joined(separator: ", "))")
            }
            var model = VirtualModel(name: name, model: target)
            if let v = entry["num_ctx"] {
                guard let n = v as? Int, (256...10_000_000).contains(n) else { throw fail("num_ctx", "an integer from 256 to 10000000") }
                model.numCtx = n
            }
            if let v = entry["keep_alive"] {
                switch v {
                case let n as Int: model.keepAlive = .int(n)
                case let s as String where !s.isEmpty: model.keepAlive = .string(s)
                default: throw fail("keep_alive", "a duration like 30m, or seconds (-1 keeps it loaded)")
                }
            }
            if let v = entry["think"] {
                switch v {
                case let b as Bool: model.think = .bool(b)
                case let s as String where ["low", "medium", "high"].contains(s): model.think = .string(s)
                default: throw fail("think", "true, false, low, medium or high")
                }
            }
            if let v = entry["temperature"] {
                guard let t = (v as? Double) ?? (v as? Int).map(Double.init), (0...2).contains(t) else { throw fail("temperature", "a number from 0 to 2") }
                model.temperature = t
            }
            if let v = entry["max_tokens"] {
                guard let n = v as? Int, n > 0 else { throw fail("max_tokens", "a positive integer") }
                model.maxTokens = n
            }
            if let v = entry["system"] {
                guard let s = v as? String else { throw fail("system", "a string") }
                model.systemPrefix = s
            }
            if let v = entry["override"] {
                guard let b = v as? Bool else { throw fail("override", "true or false") }
                model.overridable = b
            }
            if let v = entry["warm"] {
                guard let b = v as? Bool else { throw fail("warm", "true or false") }
                model.warm = b
            }
            out[name] = model
        }
        return out
    }

    static func parseUpstreams(_ value: Any, path: String) throws(ConfigurationError) -> [UpstreamEndpoint] {
        guard let list = value as? [[String: Any]] else {
            throw ConfigurationError("'upstreams' in \(path) must be a list of mappings with url, kind, api_key, models, weight")
        }
        var out: [UpstreamEndpoint] = []
        for (i, item) in list.enumerated() {
            guard let url = item["url"] as? String else {
                throw ConfigurationError("upstreams[\(i)] in \(path) needs a 'url'")
            }
            let kindText = (item["kind"] as? String) ?? "ollama"
            guard let kind = UpstreamKind(rawValue: kindText) else {
                throw ConfigurationError("upstreams[\(i)].kind in \(path) must be ollama, openai or anthropic, not '\(kindText)'")
            }
            let models = (item["models"] as? [Any])?.map { "\($0)" } ?? []
            var weight = 1
            if let value = item["weight"] {
                // Weights are summed and multiplied by in-flight counts when choosing, so they must stay small.
                guard let parsed = value as? Int, (1...1_000).contains(parsed) else {
                    throw ConfigurationError("upstreams[\(i)].weight in \(path) must be an integer from 1 to 1000")
                }
                weight = parsed
            }
            let name = (item["name"] as? String) ?? "upstream-\(i)"
            var endpoint = UpstreamEndpoint(name: name, baseURL: url, kind: kind, apiKey: item["api_key"] as? String, models: models, weight: weight)
            if let value = item["responses"] {
                guard let serves = value as? Bool, !serves || kind == .openai else {
                    throw ConfigurationError("upstreams[\(i)].responses in \(path) must be true or false, and only an openai upstream serves the Responses API")
                }
                endpoint.servesResponses = serves
            }
            if let value = item["overflow"] {
                guard let overflow = value as? Bool else { throw ConfigurationError("upstreams[\(i)].overflow in \(path) must be true or false") }
                endpoint.overflow = overflow
            }
            if let value = item["price"] {
                endpoint.price = try parsePrices(["upstreams[\(i)].price": value], path: path).values.first
            }
            if let value = item["model_names"] {
                guard let map = value as? [String: Any], map.allSatisfy({ !$0.key.isEmpty && ($0.value as? String)?.isEmpty == false }) else {
                    throw ConfigurationError("upstreams[\(i)].model_names in \(path) must map model names to this upstream's names for them")
                }
                endpoint.modelNames = map.compactMapValues { $0 as? String }
                // It serves the models it has names for.
                endpoint.models += endpoint.modelNames.keys.sorted().filter { !endpoint.models.contains($0) }
            }
            // Records, metrics, breakers and affinity all name upstreams: two with one name would be one to them.
            if out.contains(where: { $0.name == endpoint.name }) {
                throw ConfigurationError("upstreams[\(i)] in \(path) is named '\(endpoint.name)', as an earlier upstream is: names must differ")
            }
            out.append(endpoint)
        }
        return out
    }

    static func parse(_ raw: [String: (value: String, source: String)]) throws(ConfigurationError) -> GatewayConfiguration {
        var c = GatewayConfiguration()
        func value(_ name: String) -> (value: String, source: String)? { raw[name] }
        func fail(_ name: String, _ expected: String) -> ConfigurationError {
            let r = raw[name]!
            return ConfigurationError("invalid \(name) '\(r.value)' (from \(r.source)): expected \(expected)")
        }
        func int(_ name: String, _ range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
            guard let r = value(name) else { return nil }
            guard let v = Int(r.value.trimmingCharacters(in: .whitespaces)), range.contains(v) else {
                throw fail(name, "an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return v
        }
        func duration(_ name: String) throws(ConfigurationError) -> Duration? {
            guard let r = value(name) else { return nil }
            guard let d = ValueParsing.duration(r.value) else { throw fail(name, "a duration like 30s, 250ms or 5m") }
            return d
        }
        func bytes(_ name: String) throws(ConfigurationError) -> Int? {
            guard let r = value(name) else { return nil }
            guard let b = ValueParsing.bytes(r.value) else { throw fail(name, "a size like 4MiB or 1048576") }
            return b
        }
        func bool(_ name: String) throws(ConfigurationError) -> Bool? {
            guard let r = value(name) else { return nil }
            guard let b = ValueParsing.bool(r.value) else { throw fail(name, "true or false") }
            return b
        }
        func string(_ name: String) -> String? {
            guard let v = value(name)?.value.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }

        if let v = string("host") { c.host = v }
        if let v = try int("port", 0...65535) { c.port = v }
        var kind = UpstreamKind.ollama
        if let k = string("upstream-kind") {
            guard let parsed = UpstreamKind(rawValue: k.lowercased()) else { throw fail("upstream-kind", "ollama, openai or anthropic") }
            kind = parsed
        }
        let url = string("upstream") ?? "http://127.0.0.1:11434"
        c.upstreams = [UpstreamEndpoint(name: "default", baseURL: url, kind: kind, apiKey: string("upstream-api-key"))]
        if let v = string("database") { c.database = v }
        c.masterKey = string("master-key")
        if let a = string("auth") {
            guard let mode = GatewayConfiguration.AuthMode(rawValue: a.lowercased()) else { throw fail("auth", "auto, required or off") }
            c.auth = mode
        }
        if let v = try bool("allow-insecure") { c.allowInsecure = v }
        if let r = value("rate-limit-rps") {
            // `Double(_:)` takes `inf` and `1e300`, which the limiter would later convert to Int and trap on.
            guard let v = Double(r.value.trimmingCharacters(in: .whitespaces)), v.isFinite, (0...1_000_000).contains(v) else {
                throw fail("rate-limit-rps", "a number from 0 to 1000000")
            }
            c.rateLimitRPS = v
        }
        if let v = try int("rate-limit-burst", 0...1_000_000) { c.rateLimitBurst = v }
        if let v = try int("ip-rate-limit-rpm", 0...10_000_000) { c.ipRateLimitRPM = v }
        if let v = string("trusted-proxies") { c.trustedProxies = ValueParsing.list(v) }
        if let v = try duration("cache-ttl") { c.cacheTTL = v }
        if let v = try bytes("cache-max-bytes") { c.cacheMaxBytes = v }
        if let v = string("cache-scope") {
            guard let scope = GatewayConfiguration.CacheScope(rawValue: v.lowercased()) else { throw fail("cache-scope", "global or key") }
            c.cacheScope = scope
        }
        if let v = try bool("cache-deterministic-only") { c.cacheDeterministicOnly = v }
        if let v = try bool("record-usage") { c.recordUsage = v }
        if let v = try bytes("max-body-bytes") { c.maxBodyBytes = v }
        if let v = try duration("upstream-timeout") { c.upstreamTimeout = v }
        if let v = try duration("connect-timeout") { c.connectTimeout = v }
        if let v = try duration("idle-timeout") { c.idleTimeout = v }
        if let v = string("cors-origins") { c.corsOrigins = ValueParsing.list(v) }
        if let l = string("log-level") {
            guard let level = Logger.Level(rawValue: l.lowercased()) else {
                throw fail("log-level", "one of trace, debug, info, notice, warning, error, critical")
            }
            c.logLevel = level
        }
        c.logFile = string("log-file")
        if let v = try bool("log-bodies") { c.logBodies = v }
        if let v = try bool("store-bodies") { c.storeBodies = v }
        c.tlsCert = string("tls-cert")
        c.tlsKey = string("tls-key")
        if let v = try duration("shutdown-grace") { c.shutdownGrace = v }
        if let v = try int("retention-days", 0...36_500) { c.retentionDays = v }
        if let v = try int("rollup-retention-days", 0...36_500) { c.rollupRetentionDays = v }
        if let v = try duration("response-retention") { c.responseRetention = v }
        if let v = string("reference-model") { c.referenceModel = v }
        if let v = try int("breaker-failures", 1...1_000) { c.breakerFailures = v }
        if let v = try duration("breaker-cooldown") { c.breakerCooldown = v }
        if let v = try duration("probe-interval") { c.probeInterval = v }
        if let v = try int("upstream-max-inflight", 0...1_000_000) { c.upstreamMaxInflight = v }
        if let v = try int("upstream-queue", 0...1_000_000) { c.upstreamQueue = v }
        if let v = try duration("upstream-queue-timeout") { c.upstreamQueueTimeout = v }
        if let v = try duration("client-header-timeout") { c.clientHeaderTimeout = v }
        if let v = try duration("client-body-timeout") { c.clientBodyTimeout = v }
        if let v = try duration("client-idle-timeout") { c.clientIdleTimeout = v }
        if let v = try int("max-connections", 1...10_000_000) { c.maxConnections = v }
        if let v = try duration("client-write-timeout") { c.clientWriteTimeout = v }
        if let v = try duration("cache-coalesce-wait") { c.cacheCoalesceWait = v }
        if let v = try bytes("max-buffered-bytes") { c.maxBufferedBytes = v }
        if let v = try duration("affinity-ttl") { c.affinityTTL = v }
        if let v = try int("affinity-max", 0...10_000_000) { c.affinityMax = v }
        if let v = string("context-policy") {
            guard let policy = ContextPolicy(rawValue: v.lowercased()) else { throw fail("context-policy", "warn, reject or raise") }
            c.contextPolicy = policy
        }
        if let v = try int("context-max", 256...10_000_000) { c.contextMax = v }
        if let v = try duration("overflow-after") { c.overflowAfter = v }
        if let r = value("batch-share") {
            guard let v = Double(r.value.trimmingCharacters(in: .whitespaces)), v > 0, v <= 1 else {
                throw fail("batch-share", "a fraction above 0 and at most 1, like 0.5")
            }
            c.batchShare = v
        }
        if let v = string("budget-webhook") {
            guard let url = URL(string: v), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
                throw fail("budget-webhook", "an http:// or https:// URL")
            }
            c.budgetWebhook = v
        }
        if let v = try duration("rate-limit-sync-interval") {
            // The README's bound on shared limits assumes at most 250 ms between exchanges.
            guard v >= .milliseconds(10), v <= .milliseconds(250) else { throw fail("rate-limit-sync-interval", "a duration from 10ms to 250ms") }
            c.rateLimitSyncInterval = v
        }
        return c
    }

    static func validate(_ c: GatewayConfiguration) throws(ConfigurationError) {
        for upstream in c.upstreams {
            guard let url = URL(string: upstream.baseURL), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", url.host != nil
            else {
                throw ConfigurationError("invalid upstream URL for '\(upstream.name)': expected http(s)://host[:port]")
            }
        }
        if c.maxBodyBytes < 1 { throw ConfigurationError("invalid max-body-bytes: must be at least 1 byte") }
        for (name, d) in [
            ("upstream-timeout", c.upstreamTimeout), ("connect-timeout", c.connectTimeout), ("idle-timeout", c.idleTimeout),
            ("breaker-cooldown", c.breakerCooldown), ("upstream-queue-timeout", c.upstreamQueueTimeout),
            ("client-header-timeout", c.clientHeaderTimeout), ("client-body-timeout", c.clientBodyTimeout),
            ("client-idle-timeout", c.clientIdleTimeout),
            // Zero would store every response already expired: `store: true` would silently keep nothing.
            ("response-retention", c.responseRetention),
        ] where d <= .zero {
            throw ConfigurationError("invalid \(name): must be greater than 0")
        }
        guard c.database.hasPrefix("sqlite:") || c.database.hasPrefix("postgres://") || c.database.hasPrefix("postgresql://") else {
            throw ConfigurationError("invalid database: expected sqlite:PATH or postgres://user:pass@host:port/db")
        }
        if (c.tlsCert == nil) != (c.tlsKey == nil) {
            throw ConfigurationError("tls-cert and tls-key must be set together")
        }
        for path in [c.tlsCert, c.tlsKey].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: path) {
            throw ConfigurationError("cannot read TLS file \(path)")
        }
        let authOff = c.auth == .off || (c.auth == .auto && c.masterKey == nil)
        if authOff, !isLoopback(c.host), !c.allowInsecure {
            throw ConfigurationError(
                "refusing to listen on \(c.host) with authentication off: set a master key or auth=required, bind 127.0.0.1, or pass --allow-insecure")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

extension GatewayConfiguration {
    /// The effective configuration as JSON-ready values, secrets masked.
    public var redactedSummary: [String: JSONValue] {
        func mask(_ s: String?) -> JSONValue { s == nil ? .null : "********" }
        return [
            "host": .string(host), "port": .int(port),
            "upstreams": .array(
                upstreams.map {
                    .object([
                        "name": .string($0.name), "url": .string(CredentialMasking.redacted($0.baseURL)), "kind": .string($0.kind.rawValue),
                        "api_key": mask($0.apiKey), "models": .array($0.models.map { .string($0) }), "weight": .int($0.weight),
                        "overflow": .bool($0.overflow), "model_names": .object($0.modelNames.mapValues { .string($0) }),
                        "price": $0.price.map { .object(["input": .double($0.inputPerMillion), "output": .double($0.outputPerMillion)]) } ?? .null,
                    ])
                }),
            "database": .string(CredentialMasking.redacted(database)), "master_key": mask(masterKey), "auth": .string(auth.rawValue),
            "allow_insecure": .bool(allowInsecure), "rate_limit_rps": .double(rateLimitRPS), "rate_limit_burst": .int(rateLimitBurst),
            "ip_rate_limit_rpm": .int(ipRateLimitRPM), "trusted_proxies": .array(trustedProxies.map { .string($0) }),
            "cache_ttl": .string("\(cacheTTL)"), "cache_max_bytes": .int(cacheMaxBytes), "cache_scope": .string(cacheScope.rawValue),
            "cache_deterministic_only": .bool(cacheDeterministicOnly), "max_body_bytes": .int(maxBodyBytes),
            "upstream_timeout": .string("\(upstreamTimeout)"), "connect_timeout": .string("\(connectTimeout)"),
            "idle_timeout": .string("\(idleTimeout)"), "cors_origins": .array(corsOrigins.map { .string($0) }),
            "log_level": .string(logLevel.rawValue), "log_file": logFile.map { .string($0) } ?? .null,
            "log_bodies": .bool(logBodies), "store_bodies": .bool(storeBodies),
            "tls_cert": tlsCert.map { .string($0) } ?? .null, "tls_key": tlsKey.map { .string($0) } ?? .null,
            "shutdown_grace": .string("\(shutdownGrace)"), "retention_days": .int(retentionDays),
           
            "response_retention": .string("\(responseRetention)"), "record_usage": .bool(recordUsage),
            "reference_model": .string(referenceModel),
            "breaker_failures": .int(breakerFailures), "breaker_cooldown": .string("\(breakerCooldown)"),
            "probe_interval": .string("\(probeInterval)"), "upstream_max_inflight": .int(upstreamMaxInflight),
            "upstream_queue": .int(upstreamQueue), "upstream_queue_timeout": .string("\(upstreamQueueTimeout)"),
            "client_header_timeout": .string("\(clientHeaderTimeout)"), "client_body_timeout": .string("\(clientBodyTimeout)"),
            "client_idle_timeout": .string("\(clientIdleTimeout)"), "max_connections": .int(maxConnections),
            "client_write_timeout": .string("\(clientWriteTimeout)"), "cache_coalesce_wait": .string("\(cacheCoalesceWait)"),
            "max_buffered_bytes": .int(maxBufferedBytes), "affinity_ttl": .string("\(affinityTTL)"), "affinity_max": .int(affinityMax),
            "context_policy": .string(contextPolicy.rawValue), "context_max": .int(contextMax),
            "overflow_after": .string("\(overflowAfter)"), "batch_share": .double(batchShare),
            "models": .object(virtualModels.mapValues(\.summary)),
            "rate_limit_sync_interval": .string("\(rateLimitSyncInterval)"), "rollup_retention_days": .int(rollupRetentionDays),
            "budget_webhook": budgetWebhook.map { .string(CredentialMasking.redacted($0)) } ?? .null,
            "aliases": .object(aliases.mapValues { .string($0) }),
            "prices": .object(
                prices.mapValues { price in
                    var entry: [String: JSONValue] = ["input": .double(price.inputPerMillion), "output": .double(price.outputPerMillion)]
                    if let cached = price.cachedInputPerMillion { entry["cached_input"] = .double(cached) }
                    if let write = price.cacheWritePerMillion { entry["cache_write"] = .double(write) }
                    return .object(entry)
                }),
        ]
    }

}
