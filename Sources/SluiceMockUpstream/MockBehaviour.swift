import SluiceCore

/// The mock upstream's deterministic answers, kept apart from its HTTP layer so tests can reason about them.
public enum MockBehaviour {
    public static let models = ["llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest"]

    /// The canonical name of a served model, accepting names without `:latest`.
    public static func resolve(_ model: String) -> String? {
        models.first { $0 == model || $0 == model + ":latest" }
    }

    /// Per-request fault triggers, read from the last user message or the prompt.
    public struct Triggers: Sendable, Equatable {
        /// Send three chunks, then drop the connection.
        public var die = false
        /// 100 ms between streamed chunks.
        public var slow = false
        /// Two streamed chunks, then 30 s of silence before the rest: a model pausing mid-answer.
        public var stall = false
        /// Answer HTTP 500.
        public var error = false
        /// Stream the answer's content 500 times over before its end: megabytes for a short prompt, to fill every
        /// buffer between the gateway and a client that does not read.
        public var flood = false
        /// Call the first tool, when the request has tools. Ollama and OpenAI chat call it whenever tools are present
        /// (their behaviour before the trigger existed, which tests rely on); Anthropic only with the trigger.
        public var tool = false
        /// Think before answering: `thinkingText(about:)` as Ollama `thinking`, OpenAI `reasoning_content` or an
        /// Anthropic `thinking` block.
        public var think = false
        /// End an OpenAI chat stream cleanly after its finish reason (and usage) but without `data: [DONE]`, as
        /// llama.cpp's server does.
        public var noDone = false
        /// Report part of the prompt as read from the upstream's prompt cache (``cachedPromptTokens``), and on the
        /// Anthropic API part as written to it (``cacheWriteTokens``), as a repeated long prompt would.
        public var cached = false

        public init(_ text: String) {
            die = text.contains("[[die]]")
            slow = text.contains("[[slow]]")
            stall = text.contains("[[stall]]")
            error = text.contains("[[error]]")
            flood = text.contains("[[flood]]")
            tool = text.contains("[[tool]]")
            think = text.contains("[[think]]")
            noDone = text.contains("[[nodone]]")
            cached = text.contains("[[cached]]")
        }
    }

    /// Prompt tokens a `[[cached]]` request reports as read from the prompt cache.
    public static let cachedPromptTokens = 1024
    /// Prompt tokens a `[[cached]]` request to the Anthropic API reports as written to the prompt cache.
    public static let cacheWriteTokens = 256

    public static func replyText(to prompt: String) -> String {
        "Hello from the Sluice mock. You said: \(prompt)"
    }

    /// The reasoning a `[[think]]` request gets before its answer.
    public static func thinkingText(about prompt: String) -> String {
        "Thinking about: \(prompt)"
    }

    /// The signature of an Anthropic thinking block.
    public static let thinkingSignature = "mock-signature"

    public static let jsonReply = #"{"answer":"mock"}"#

    /// The streamed pieces of a reply: the first word, then " " + each next word, so they join to the text.
    public static func pieces(of text: String) -> [String] {
        let words = text.split(separator: " ", omittingEmptySubsequences: false)
        return words.enumerated().map { $0.offset == 0 ? String($0.element) : " " + $0.element }
    }

    /// Whitespace-separated words across texts, at least 1: the mock's token count.
    public static func tokenCount(_ texts: [String]) -> Int {
        max(1, texts.reduce(0) { $0 + $1.split(whereSeparator: \.isWhitespace).count })
    }

    /// A tool call to the first tool, with each required parameter set to "mock".
    public static func toolCall(for tools: [Tool]) -> (name: String, arguments: JSONValue)? {
        guard let tool = tools.first else { return nil }
        return (tool.function.name, arguments(forSchema: tool.function.parameters))
    }

    /// The arguments of a call to a tool with this JSON schema: each required parameter set to "mock".
    public static func arguments(forSchema schema: JSONValue?) -> JSONValue {
        let required = schema?["required"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return .object(Dictionary(required.map { ($0, JSONValue.string("mock")) }, uniquingKeysWith: { first, _ in first }))
    }

    /// A tool call's JSON arguments cut into the pieces a stream sends: at least 3 when the text has 3 characters
    /// (about a quarter each), so a client must join them; they concatenate to the text.
    public static func argumentPieces(of json: String) -> [String] {
        let characters = Array(json)
        guard !characters.isEmpty else { return [] }
        let size = max(1, characters.count / 4)
        return stride(from: 0, to: characters.count, by: size).map { String(characters[$0..<min($0 + size, characters.count)]) }
    }

    /// An 8-dimensional vector derived from the text (FNV-1a), the same for the same text.
    public static func embedding(of text: String) -> [Double] {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return (0..<8).map { i in Double((hash >> (UInt64(i) * 8)) & 0xff) / 255.0 - 0.5 }
    }
}
