import ArgumentParser
import Foundation

/// The `sluice` command: an LLM gateway in one binary.
@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "An OpenAI-compatible gateway in front of Ollama and OpenAI-compatible servers.",
        subcommands: [Serve.self, Keys.self, Teams.self, Usage.self, CheckConfig.self, MockUpstream.self]
    )

    /// Runs the command; usage and configuration errors exit with 2, as the product contract says.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ConfigurationFailure {
            FileHandle.standardError.write(Data("sluice: configuration error: \(error.message)\n".utf8))
            Foundation.exit(2)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// A configuration problem found at start; exits with code 2.
struct ConfigurationFailure: Error {
    var message: String
}
