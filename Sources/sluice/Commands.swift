import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceMockUpstream
import SluiceServer

/// `sluice serve`: run the gateway until SIGINT/SIGTERM, then drain.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway in the foreground.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let sink: LogSink
        do {
            sink = try config.logFile.map { try LogSink(path: $0) } ?? .standardOutput
        } catch {
            throw ConfigurationFailure(message: "\(error)")
        }
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: config.logLevel, sink: sink) }
        let logger = Logger(label: "sluice")
        // A store URL or TLS file that cannot be used is a configuration error (exit 2).
        let app = try asConfigurationFailure { try buildApplication(configuration: config, logger: logger) }
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = config.shutdownGrace
        logger.info(
            "sluice starting",
            metadata: [
                "address": "\(config.host):\(config.port)",
                "upstreams": .array(config.upstreams.map { .string("\($0.kind.rawValue) \($0.name)") }),
            ])
        try await ServiceGroup(configuration: groupConfiguration).run()
        logger.info("sluice stopped")
    }
}

/// Runs `body`, turning any error into a ``ConfigurationFailure``.
func asConfigurationFailure<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw ConfigurationFailure(message: "\(error)")
    }
}

/// `sluice check-config`: load, validate and print the effective configuration with secrets masked.
struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate the configuration and print it with secrets masked.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(JSONValue.object(config.redactedSummary))
        print(String(decoding: data, as: UTF8.self))
    }
}

/// `sluice mock-upstream`: the deterministic fake upstream for tests, benchmarks and trials.
struct MockUpstream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-upstream",
        abstract: "Run a deterministic fake upstream speaking Ollama's native API, the OpenAI API and Anthropic's Messages API.")

    @Option(help: "Bind address.") var host = "127.0.0.1"
    @Option(help: "Listen port.") var port = 11434
    @Option(name: .customLong("latency-ms"), help: "Delay before each answer starts.") var latencyMs = 0
    @Option(name: .customLong("tokens-per-second"), help: "Pace of streamed chunks (0 = as fast as possible).") var tokensPerSecond = 0.0
    @Option(name: .customLong("fail-status"), help: "Answer every generating request with this HTTP status.") var failStatus: Int?
    @Option(name: .customLong("model"), help: "A model to list and serve (repeatable; default: the built-in three).") var models: [String] = []
    @Option(name: .customLong("anthropic-api-key"), help: "Require this x-api-key on /v1/messages (default: accept any key or none).")
    var anthropicAPIKey: String?
    @Option(name: .customLong("loaded"), help: "A model loaded at start, listed by /api/ps (repeatable).") var loaded: [String] = []
    @Option(name: .customLong("load-ms"), help: "Time to load a model that is not loaded (default 0).") var loadMs = 0
    @Option(name: .customLong("max-loaded"), help: "Models held at once; loading another unloads the least recently used (0 = no bound).") var maxLoaded = 0
    @Option(name: .customLong("context-length"), help: "Context length reported by /api/ps and /api/show (0 = none).") var contextLength = 0
    @Option(name: .customLong("prompt-cache-miss-ms"), help: "Time per earlier chat message not in the prompt cache (default 0).") var promptCacheMissMs = 0
    @Flag(name: .customLong("hide-loaded"), help: "Answer /api/ps with 404, as a server that does not report loaded models.") var hideLoaded = false

    /// Bounds checked here because the mock turns them into a pause (`Int64(1e6 / rate)`) and an HTTP status, which trap
    /// on values they cannot hold.
    func validate() throws {
        guard (0...600_000).contains(latencyMs) else { throw ValidationError("--latency-ms must be from 0 to 600000") }
        guard tokensPerSecond == 0 || (0.001...1_000_000).contains(tokensPerSecond) else {
            throw ValidationError("--tokens-per-second must be 0 or a number from 0.001 to 1000000")
        }
        if let failStatus, !(100...599).contains(failStatus) { throw ValidationError("--fail-status must be an HTTP status, 100 to 599") }
        for (name, value) in [("--load-ms", loadMs), ("--prompt-cache-miss-ms", promptCacheMissMs)] where !(0...600_000).contains(value) {
            throw ValidationError("\(name) must be from 0 to 600000")
        }
        guard maxLoaded >= 0, contextLength >= 0 else { throw ValidationError("--max-loaded and --context-length must not be negative") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: .warning, sink: .standardOutput) }
        var options = MockUpstreamOptions()
        options.host = host
        options.port = port
        options.latencyMs = latencyMs
        options.tokensPerSecond = tokensPerSecond
        options.failStatus = failStatus
        options.models = models.isEmpty ? nil : models
        options.anthropicAPIKey = anthropicAPIKey
        options.loaded = loaded
        options.loadMs = loadMs
        options.maxLoaded = maxLoaded
        options.contextLength = contextLength
        options.promptCacheMissMs = promptCacheMissMs
        options.hideLoaded = hideLoaded
        let app = buildMockUpstream(options: options, logger: Logger(label: "sluice-mock-upstream"))
        try await app.runService()
    }
}
