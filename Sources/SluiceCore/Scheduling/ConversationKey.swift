import Crypto

/// What identifies a conversation across its turns, so each turn can go where the previous one left its prompt cache.
///
/// In order: the client's `x-session-id` header, else the request's `user` field (with the model), else a hash of
/// the model, the system prompt and the first user message, which stay the same as a conversation grows.
public struct ConversationKey: Hashable, Sendable {
    public let value: String

    public init(_ value: String) {
        self.value = value
    }

    /// The key of a request, or nil when it carries nothing that lasts from turn to turn (no messages, no prompt).
    ///
    /// Reads the shapes of every dialect: `messages` (OpenAI, Ollama, Anthropic), `system` (Anthropic, Ollama
    /// generate), `instructions` and `input` (Responses), `prompt` (completions, Ollama generate).
    public static func of(sessionID: String?, model: String, body: JSONValue?) -> ConversationKey? {
        if let sessionID, !sessionID.isEmpty { return ConversationKey("session:" + sessionID) }
        guard let body else { return nil }
        if let user = body["user"]?.stringValue, !user.isEmpty { return ConversationKey("user:\(model)\u{0}\(user)") }
        var system = text(of: body["system"]) ?? text(of: body["instructions"]) ?? ""
        var firstUser: String?
        if let messages = body["messages"]?.arrayValue ?? body["input"]?.arrayValue {
            for message in messages {
                let role = message["role"]?.stringValue
                if system.isEmpty, role == "system" || role == "developer" { system = text(of: message["content"]) ?? "" }
                if role == "user" {
                    firstUser = text(of: message["content"]) ?? ""
                    break
                }
            }
        }
        firstUser = firstUser ?? body["prompt"]?.stringValue ?? body["input"]?.stringValue
        guard let firstUser else { return nil }
        var hash = SHA256()
        for part in [model, system, firstUser] {
            hash.update(data: Array(part.utf8))
            hash.update(data: [0])
        }
        return ConversationKey("hash:" + SHA256Words(hash.finalize()).hex)
    }

    /// The text of a string, or of an array of content parts or blocks.
    static func text(of value: JSONValue?) -> String? {
        switch value {
        case .string(let text)?: return text
        case .array(let parts)?: return parts.compactMap { $0["text"]?.stringValue ?? $0.stringValue }.joined(separator: "\n")
        default: return nil
        }
    }
}

/// Which upstream served each conversation last: a bounded table, least recently used out first, entries expiring
/// `ttl` after their last turn (a prompt cache does not outlive its model's `keep_alive` much either).
///
/// Pure: the server keeps it under a lock, and time is passed in.
public struct ConversationAffinity: Sendable {
    private var table: LRUCache<ConversationKey, String>
    public let ttl: Double

    /// - Parameters:
    ///   - capacity: conversations remembered at most.
    ///   - ttl: seconds an entry lasts after its last turn.
    public init(capacity: Int, ttl: Double) {
        self.table = LRUCache(maxCost: max(1, capacity))
        self.ttl = ttl
    }

    public var count: Int { table.count }

    /// The upstream (by name) that served the conversation's last turn, if that was less than `ttl` ago.
    public mutating func upstream(for key: ConversationKey, now: Double) -> String? {
        table.value(for: key, now: now)
    }

    /// Notes that `upstream` served a turn of the conversation now.
    public mutating func record(_ key: ConversationKey, upstream: String, now: Double) {
        table.insert(upstream, for: key, cost: 1, expires: now + ttl)
    }
}
