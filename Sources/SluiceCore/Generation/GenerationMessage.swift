extension Generation {
    /// One turn of the conversation.
    public struct Message: Sendable, Equatable {
        public var role: Role
        /// The turn's parts, in order. An assistant turn may mix text, reasoning and tool calls; a tool turn holds
        /// tool results only.
        public var content: [ContentPart]
        /// Per-message fields the model does not name (chat `name`), by JSON key.
        public var extensions: Extensions

        public init(role: Role, content: [ContentPart], extensions: Extensions = [:]) {
            self.role = role
            self.content = content
            self.extensions = extensions
        }

        /// The text parts joined, for upstreams that take a plain string.
        public var text: String { content.compactMap(\.text).joined() }
    }

    /// Who said a message. Tool results are their own role, as OpenAI has it; Anthropic carries them in a user turn.
    public enum Role: String, Sendable, Equatable {
        /// An instruction in the middle of the conversation (chat `system`/`developer`, Responses `developer`).
        case system
        case user
        case assistant
        case tool
    }

    /// A typed part of a message.
    public enum ContentPart: Sendable, Equatable {
        case text(Text)
        case image(Image)
        case toolCall(ToolCall)
        case toolResult(ToolResult)
        case reasoning(Reasoning)

        /// The text of a text part, nil for any other part.
        public var text: String? {
            if case .text(let t) = self { return t.text }
            return nil
        }

        public static func text(_ text: String) -> ContentPart { .text(Text(text)) }
    }

    /// Plain text.
    public struct Text: Sendable, Equatable {
        public var text: String
        /// Fields such as Anthropic `cache_control` or `citations`, by JSON key.
        public var extensions: Extensions

        public init(_ text: String, extensions: Extensions = [:]) {
            self.text = text
            self.extensions = extensions
        }
    }

    /// An image given as input.
    public struct Image: Sendable, Equatable {
        public enum Source: Sendable, Equatable {
            /// The image bytes, base64 encoded, and their media type (`image/png`, `image/jpeg`, ...).
            case base64(mediaType: String, data: String)
            /// An http(s) URL the upstream fetches itself.
            case url(String)
        }

        public var source: Source
        /// OpenAI `detail` (`low`, `high`, `auto`), when given.
        public var detail: String?
        public var extensions: Extensions

        public init(source: Source, detail: String? = nil, extensions: Extensions = [:]) {
            self.source = source
            self.detail = detail
            self.extensions = extensions
        }

        /// A `data:` URL for base64 sources, the URL itself otherwise: what OpenAI's `image_url` takes.
        public var url: String {
            switch source {
            case .base64(let mediaType, let data): "data:\(mediaType);base64,\(data)"
            case .url(let url): url
            }
        }

        /// Reads an OpenAI `image_url`: a `data:<type>;base64,<data>` URL becomes a base64 source.
        public init(openAIURL url: String, detail: String? = nil) {
            if url.hasPrefix("data:"), let comma = url.firstIndex(of: ","), url[..<comma].hasSuffix(";base64") {
                let mediaType = url[url.index(url.startIndex, offsetBy: 5)..<comma].dropLast(7)
                self.init(source: .base64(mediaType: String(mediaType), data: String(url[url.index(after: comma)...])), detail: detail)
            } else {
                self.init(source: .url(url), detail: detail)
            }
        }
    }

    /// A call the assistant made.
    public struct ToolCall: Sendable, Equatable {
        /// The call id results refer back to (`toolu_…` from Anthropic, `call_…` from OpenAI).
        public var id: String
        public var name: String
        /// The arguments as JSON text, as OpenAI carries them; Anthropic's `input` object is encoded to it.
        public var arguments: String
        public var extensions: Extensions

        public init(id: String, name: String, arguments: String, extensions: Extensions = [:]) {
            self.id = id
            self.name = name
            self.arguments = arguments
            self.extensions = extensions
        }
    }

    /// The result of a tool call, given back to the model.
    public struct ToolResult: Sendable, Equatable {
        /// The `ToolCall.id` this answers.
        public var callID: String
        /// The called tool's name when known (Ollama wants it; Anthropic and OpenAI do not send it).
        public var name: String?
        /// Text and image parts.
        public var content: [ContentPart]
        /// Anthropic `is_error`: the tool failed and the content says how.
        public var isError: Bool
        public var extensions: Extensions

        public init(callID: String, name: String? = nil, content: [ContentPart], isError: Bool = false, extensions: Extensions = [:]) {
            self.callID = callID
            self.name = name
            self.content = content
            self.isError = isError
            self.extensions = extensions
        }

        /// The text parts joined, for upstreams that take a string.
        public var text: String { content.compactMap(\.text).joined() }
    }

    /// The model's reasoning ("thinking") before it answered.
    public struct Reasoning: Sendable, Equatable {
        /// The reasoning text (Anthropic `thinking`, Responses summary text, Ollama `thinking`).
        public var text: String
        /// Anthropic `signature` (or Responses `encrypted_content`): proof the upstream needs when the reasoning
        /// is sent back to it; meaningless to any other upstream.
        public var signature: String?
        /// Anthropic `redacted_thinking.data`: reasoning the upstream encrypted; `text` is empty then.
        public var redactedData: String?
        public var extensions: Extensions

        public init(text: String, signature: String? = nil, redactedData: String? = nil, extensions: Extensions = [:]) {
            self.text = text
            self.signature = signature
            self.redactedData = redactedData
            self.extensions = extensions
        }
    }
}
