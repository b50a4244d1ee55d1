import Foundation
import Testing
import SluiceCore
@testable import SluiceServer

@Suite struct ConfigurationTests {
    /// A scratch directory with the files a test writes.
    func scratch(_ files: [String: String]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        return dir
    }

    @Test func defaults() throws {
        let config = try ConfigurationLoader(flags: [:], environment: [:], dotEnvPath: nil).load()
        #expect(config.host == "127.0.0.1")
        #expect(config.port == 8080)
        #expect(config.upstreams.map(\.baseURL) == ["http://127.0.0.1:11434"])
        #expect(config.maxBodyBytes == 4 * 1024 * 1024)
        #expect(config.database == "sqlite:./sluice.db")
    }

    @Test func precedenceIsFlagThenEnvironmentThenFileThenDotEnv() throws {
        let dir = try scratch([
            "sluice.yaml": "port: 7003\nlog_level: warning\nmax-body-bytes: 1MiB\nidle_timeout: 9s\n",
            ".env": "SLUICE_PORT=7004\nSLUICE_LOG_LEVEL=debug\nSLUICE_MAX_BODY_BYTES=2KiB\nSLUICE_IDLE_TIMEOUT=8s\nSLUICE_CACHE_TTL=1m\n",
        ])
        let loader = ConfigurationLoader(
            flags: ["port": "7001", "config": dir.appendingPathComponent("sluice.yaml").path],
            environment: ["SLUICE_PORT": "7002", "SLUICE_LOG_LEVEL": "error"],
            dotEnvPath: dir.appendingPathComponent(".env").path)
        let config = try loader.load()
        #expect(config.port == 7001)  // flag
        #expect(config.logLevel == .error)  // environment over file
        #expect(config.maxBodyBytes == 1_048_576)  // file over .env
        #expect(config.idleTimeout == .seconds(9))
        #expect(config.cacheTTL == .seconds(60))  // .env over default
    }

    @Test func invalidValuesNameOptionAndSource() {
        do {
            _ = try ConfigurationLoader(flags: [:], environment: ["SLUICE_PORT": "notaport"], dotEnvPath: nil).load()
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("port"))
            #expect(error.description.contains("SLUICE_PORT"))
        }
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(flags: ["upstream": "ftp://x"], environment: [:], dotEnvPath: nil).load()
        }
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(flags: ["idle-timeout": "0s"], environment: [:], dotEnvPath: nil).load()
        }
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(flags: ["tls-cert": "/nonexistent.pem"], environment: [:], dotEnvPath: nil).load()
        }
    }

    @Test func unknownFileKeysAreErrors() throws {
        let dir = try scratch(["c.json": #"{"prot": 1}"#])
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(flags: ["config": dir.appendingPathComponent("c.json").path], environment: [:], dotEnvPath: nil).load()
        }
    }

    @Test func upstreamListFromFile() throws {
        let dir = try scratch([
            "c.yaml": """
                upstreams:
                  - url: http://127.0.0.1:11434
                    kind: ollama
                    models: [llama3.2]
                  - url: https://api.example.com
                    kind: openai
                    api_key: sk-upstream-secret
                    weight: 3
                """
        ])
        let config = try ConfigurationLoader(flags: ["config": dir.appendingPathComponent("c.yaml").path], environment: [:], dotEnvPath: nil).load()
        #expect(config.upstreams.count == 2)
        #expect(config.upstreams[1].kind == .openai)
        #expect(config.upstreams[1].weight == 3)
        #expect(config.upstreams[0].models == ["llama3.2"])
        let summary = String(describing: config.redactedSummary)
        #expect(!summary.contains("sk-upstream-secret"))
    }

    @Test func anthropicKindAndResponsesPassThrough() throws {
        let dir = try scratch([
            "c.yaml": """
                upstreams:
                  - url: https://api.anthropic.example
                    kind: anthropic
                    api_key: sk-ant-secret
                  - url: https://api.example.com
                    kind: openai
                    responses: true
                """,
            "bad.yaml": "upstreams:\n  - url: http://127.0.0.1:11434\n    kind: ollama\n    responses: true\n",
        ])
        func load(_ name: String) throws -> GatewayConfiguration {
            try ConfigurationLoader(flags: ["config": dir.appendingPathComponent(name).path], environment: [:], dotEnvPath: nil).load()
        }
        let config = try load("c.yaml")
        #expect(config.upstreams[0].kind == .anthropic)
        #expect(!config.upstreams[0].servesResponses)
        #expect(config.upstreams[1].servesResponses)
        #expect(!String(describing: config.redactedSummary).contains("sk-ant-secret"))
        // Only an OpenAI upstream can serve the Responses API itself.
        #expect(throws: ConfigurationError.self) { try load("bad.yaml") }
    }

    @Test func aliasesFromFile() throws {
        let dir = try scratch([
            "c.yaml": "aliases:\n  gpt-4o-mini: llama3.2\n",
            "chain.yaml": "aliases:\n  a: b\n  b: c\n",
            "bad.yaml": "aliases: [gpt-4o-mini]\n",
        ])
        func load(_ name: String) throws -> GatewayConfiguration {
            try ConfigurationLoader(flags: ["config": dir.appendingPathComponent(name).path], environment: [:], dotEnvPath: nil).load()
        }
        #expect(try load("c.yaml").aliases == ["gpt-4o-mini": "llama3.2"])
        #expect(throws: ConfigurationError.self) { try load("chain.yaml") }
        #expect(throws: ConfigurationError.self) { try load("bad.yaml") }
    }

    @Test func schedulingFromFileEnvironmentAndFlags() throws {
        let dir = try scratch([
            "m.yaml": """
                models:
                  coder: {model: "qwen3-coder:30b", num_ctx: 32768, keep_alive: 30m, think: false, temperature: 0.2, override: false, warm: true}
                aliases:
                  gpt-4o-mini: llama3.2
                upstreams:
                  - {url: "http://127.0.0.1:11434"}
                  - {url: "https://hosted.invalid", kind: openai, overflow: true, price: {input: 1, output: 2}, model_names: {"llama3.2": "vendor/llama-3.2"}}
                context_policy: reject
                overflow_after: 500ms
                """,
            "chain.yaml": "models:\n  coder: {model: gpt-4o-mini}\naliases:\n  gpt-4o-mini: llama3.2\n",
            "typo.yaml": "models:\n  coder: {model: x, num_cxt: 4096}\n",
            "think.yaml": "models:\n  coder: {model: x, think: maybe}\n",
        ])
        func load(_ name: String, flags: [String: String] = [:], environment: [String: String] = [:]) throws -> GatewayConfiguration {
            var flags = flags
            flags["config"] = dir.appendingPathComponent(name).path
            return try ConfigurationLoader(flags: flags, environment: environment, dotEnvPath: nil).load()
        }
        let config = try load("m.yaml")
        let coder = try #require(config.virtualModels["coder"])
        #expect(coder.model == "qwen3-coder:30b" && coder.numCtx == 32768 && coder.keepAlive == "30m" && coder.think == false)
        #expect(coder.temperature == 0.2 && !coder.overridable && coder.warm)
        #expect(config.modelNames == ["coder": "qwen3-coder:30b", "gpt-4o-mini": "llama3.2"])
        #expect(config.upstreams[1].overflow && config.upstreams[1].price == ModelPrice(inputPerMillion: 1, outputPerMillion: 2))
        #expect(config.upstreams[1].models == ["llama3.2"])
        #expect(config.upstreams[1].upstreamName(for: "llama3.2:latest") == "vendor/llama-3.2")
        #expect(config.upstreams[1].upstreamName(for: "qwen") == "qwen")
        #expect(config.contextPolicy == .reject && config.overflowAfter == .milliseconds(500))
        #expect(try load("m.yaml", environment: ["SLUICE_CONTEXT_POLICY": "raise"]).contextPolicy == .raise)
        #expect(try load("m.yaml", flags: ["context-policy": "warn", "batch-share": "0.25"]).batchShare == 0.25)
        #expect(throws: ConfigurationError.self) { try load("m.yaml", flags: ["context-policy": "shout"]) }
        #expect(throws: ConfigurationError.self) { try load("m.yaml", flags: ["batch-share": "0"]) }
        #expect(throws: ConfigurationError.self) { try load("chain.yaml") }
        #expect(throws: ConfigurationError.self) { try load("typo.yaml") }
        #expect(throws: ConfigurationError.self) { try load("think.yaml") }
    }

    @Test func insecureBindIsRefusedUnlessAllowed() throws {
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(flags: ["host": "0.0.0.0"], environment: [:], dotEnvPath: nil).load()
        }
        _ = try ConfigurationLoader(flags: ["host": "0.0.0.0", "allow-insecure": "true"], environment: [:], dotEnvPath: nil).load()
        _ = try ConfigurationLoader(flags: ["host": "0.0.0.0", "master-key": "mk"], environment: [:], dotEnvPath: nil).load()
    }

    @Test func routingLimitsHaveDefaultsAndAllForms() throws {
        let defaults = try ConfigurationLoader(flags: [:], environment: [:], dotEnvPath: nil).load().upstreamLimits
        #expect(defaults.breakerFailures == 3)
        #expect(defaults.breakerCooldown == .seconds(10))
        #expect(defaults.maxInFlight == 256)
        #expect(defaults.queueCapacity == 512)
        #expect(defaults.queueTimeout == .seconds(10))
        let dir = try scratch(["c.yaml": "breaker_failures: 5\nupstream-queue: 7\nprobe_interval: 0\n"])
        let config = try ConfigurationLoader(
            flags: ["config": dir.appendingPathComponent("c.yaml").path, "breaker-cooldown": "2.5"],
            environment: ["SLUICE_UPSTREAM_MAX_INFLIGHT": "0", "SLUICE_UPSTREAM_QUEUE_TIMEOUT": "250ms"], dotEnvPath: nil
        ).load()
        #expect(config.breakerFailures == 5)
        #expect(config.breakerCooldown == .milliseconds(2500))
        #expect(config.probeInterval == .zero)
        #expect(config.upstreamMaxInflight == 0)
        #expect(config.upstreamQueue == 7)
        #expect(config.upstreamQueueTimeout == .milliseconds(250))
        #expect(config.redactedSummary["breaker_failures"] == .int(5))
    }

    @Test func routingLimitsAreValidated() {
        for (name, value) in [
            ("breaker-failures", "0"), ("breaker-failures", "many"), ("breaker-cooldown", "0s"), ("probe-interval", "-1"),
            ("upstream-max-inflight", "-1"), ("upstream-queue", "x"), ("upstream-queue-timeout", "0"),
        ] {
            do {
                _ = try ConfigurationLoader(flags: [name: value], environment: [:], dotEnvPath: nil).load()
                Issue.record("\(name)=\(value) was accepted")
            } catch {
                #expect(error.description.contains(name))
            }
        }
    }

    @Test func clientConnectionLimitsHaveDefaultsAndAllForms() throws {
        let defaults = try ConfigurationLoader(flags: [:], environment: [:], dotEnvPath: nil).load()
        #expect(defaults.clientHeaderTimeout == .seconds(10))
        #expect(defaults.clientBodyTimeout == .seconds(30))
        #expect(defaults.clientIdleTimeout == .seconds(75))
        #expect(defaults.maxConnections == ConnectionLimits.defaultMaxConnections())
        #expect(defaults.maxConnections >= 16)
        #expect(defaults.redactedSummary["max_connections"] == .int(defaults.maxConnections))

        let dir = try scratch(["c.yaml": "client_idle_timeout: 5s\nmax-connections: 100\n"])
        let config = try ConfigurationLoader(
            flags: ["config": dir.appendingPathComponent("c.yaml").path, "client-header-timeout": "500ms"],
            environment: ["SLUICE_CLIENT_BODY_TIMEOUT": "2s", "SLUICE_MAX_CONNECTIONS": "200"], dotEnvPath: nil
        ).load()
        #expect(config.clientHeaderTimeout == .milliseconds(500))
        #expect(config.clientBodyTimeout == .seconds(2))
        #expect(config.clientIdleTimeout == .seconds(5))
        #expect(config.maxConnections == 200)
        #expect(config.redactedSummary["client_header_timeout"] == .string("0.5 seconds"))
        let limits = config.connectionLimits
        #expect(limits.headerTimeout == .milliseconds(500) && limits.maxConnections == 200)
    }

    @Test func clientConnectionLimitsAreValidated() {
        for (name, value) in [
            ("client-header-timeout", "0"), ("client-body-timeout", "slow"), ("client-idle-timeout", "0s"),
            ("max-connections", "0"), ("max-connections", "lots"),
        ] {
            do {
                _ = try ConfigurationLoader(flags: [name: value], environment: [:], dotEnvPath: nil).load()
                Issue.record("\(name)=\(value) was accepted")
            } catch {
                #expect(error.description.contains(name))
            }
        }
    }

    @Test func responseRetentionHasADefaultAndAllForms() throws {
        let defaults = try ConfigurationLoader(flags: [:], environment: [:], dotEnvPath: nil).load()
        #expect(defaults.responseRetention == .seconds(30 * 86_400))
        #expect(defaults.redactedSummary["response_retention"] == .string("\(Duration.seconds(30 * 86_400))"))

        let dir = try scratch(["c.yaml": "response_retention: 7d\n", ".env": "SLUICE_RESPONSE_RETENTION=2h\n"])
        let file = try ConfigurationLoader(
            flags: ["config": dir.appendingPathComponent("c.yaml").path], environment: [:], dotEnvPath: nil
        ).load()
        #expect(file.responseRetention == .seconds(7 * 86_400))
        let dotEnv = try ConfigurationLoader(
            flags: [:], environment: [:], dotEnvPath: dir.appendingPathComponent(".env").path
        ).load()
        #expect(dotEnv.responseRetention == .seconds(7_200))
        let environment = try ConfigurationLoader(
            flags: ["config": dir.appendingPathComponent("c.yaml").path], environment: ["SLUICE_RESPONSE_RETENTION": "1d12h"],
            dotEnvPath: nil
        ).load()
        #expect(environment.responseRetention == .seconds(36 * 3_600))
        let flag = try ConfigurationLoader(
            flags: ["response-retention": "90m"], environment: ["SLUICE_RESPONSE_RETENTION": "1d"], dotEnvPath: nil
        ).load()
        #expect(flag.responseRetention == .seconds(5_400))
        #expect(flag.redactedSummary["response_retention"] == .string("5400.0 seconds"))
    }

    /// Zero would store every response already expired, so `store: true` would keep nothing without saying so.
    @Test func responseRetentionIsValidated() {
        for value in ["0", "0s", "forever", "-1d", "200000d"] {
            do {
                _ = try ConfigurationLoader(flags: [:], environment: ["SLUICE_RESPONSE_RETENTION": value], dotEnvPath: nil).load()
                Issue.record("response-retention=\(value) was accepted")
            } catch {
                #expect(error.description.contains("response-retention"))
            }
        }
    }

    @Test func defaultMaxConnectionsLeavesRoomUnderTheDescriptorLimit() {
        var limit = rlimit()
        #if os(Linux)
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #else
        getrlimit(RLIMIT_NOFILE, &limit)
        #endif
        guard limit.rlim_cur != rlim_t.max else { return }
        let derived = ConnectionLimits.defaultMaxConnections()
        #expect(derived * 2 + ConnectionLimits.reservedDescriptors <= max(Int(limit.rlim_cur), 16 * 2 + ConnectionLimits.reservedDescriptors))
    }

    @Test func secretsAreMasked() throws {
        let config = try ConfigurationLoader(
            flags: ["master-key": "super-secret", "database": "postgres://u:pw123@db:5432/s"], environment: [:], dotEnvPath: nil
        ).load()
        let summary = String(describing: config.redactedSummary)
        #expect(!summary.contains("super-secret"))
        #expect(!summary.contains("pw123"))
        #expect(summary.contains("postgres://u:***@db:5432/s"))
    }
}

@Suite struct LoggingTests {
    @Test func logFileIsCreated0600AndHoldsJSONLines() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-log-\(UUID().uuidString).log").path
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644])
        let sink = try LogSink(path: path)
        var handler = JSONLogHandler(label: "t", level: .info, sink: sink)
        handler[metadataKey: "request_id"] = "abc"
        handler.log(event: .init(level: .info, message: "hello \"quoted\"\nnext", metadata: ["n": .stringConvertible(3)], source: "s", file: "f", function: "fn", line: 1))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.split(separator: "\n").count == 1)
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        #expect(object?["request_id"] as? String == "abc")
        #expect(object?["msg"] as? String == "hello \"quoted\"\nnext")
        #expect(object?["n"] as? Int == 3)
    }
}
