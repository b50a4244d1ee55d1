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
        /// Answer HTTP 500.
        public var error = false
        /// Stream the answer's content 500 times over before its end: megabytes for a short prompt, to fill every
        /// buffer between the gateway and a client that does not read.
        public var flood = false

        public init(_ text: String) {
            die = text.contains("[[die]]")
            slow = text.contains("[[slow]]")
            error = text.contains("[[error]]")
            flood = text.contains("[[flood]]")
        }
    }

    public static func replyText(to prompt: String) -> String {
        "Hello from the Sluice mock. You said: \(prompt)"
    }

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
        let required = tool.function.parameters?["required"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return (tool.function.name, .object(Dictionary(uniqueKeysWithValues: required.map { ($0, JSONValue.string("mock")) })))
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
