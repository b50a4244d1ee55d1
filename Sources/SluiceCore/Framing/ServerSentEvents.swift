import NIOCore

/// One server-sent event.
public struct ServerSentEvent: Sendable, Equatable {
    public var event: String?
    public var data: String

    public init(event: String? = nil, data: String) {
        self.event = event
        self.data = data
    }
}

/// Writes server-sent events.
public enum SSEEncoder {
    /// Appends `event: …` (when named) and `data: …` lines and the blank line that ends the event.
    public static func write(_ event: ServerSentEvent, into buffer: inout ByteBuffer) {
        if let name = event.event {
            buffer.writeString("event: ")
            buffer.writeString(name)
            buffer.writeString("\n")
        }
        // A newline inside data would end the field early, so each line gets its own `data:`.
        for line in event.data.split(separator: "\n", omittingEmptySubsequences: false) {
            buffer.writeString("data: ")
            buffer.writeSubstring(line)
            buffer.writeString("\n")
        }
        buffer.writeString("\n")
    }

    /// Appends `data: <bytes>\n\n` for a JSON payload that holds no newline.
    public static func writeData(_ json: ByteBuffer, into buffer: inout ByteBuffer) {
        buffer.writeString("data: ")
        var json = json
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
    }

    /// The terminator OpenAI streams end with.
    public static func writeDone(into buffer: inout ByteBuffer) {
        buffer.writeString("data: [DONE]\n\n")
    }
}

/// Incremental server-sent-events parser (WHATWG rules for `event` and `data`; `id` and `retry` ignored).
public struct SSEDecoder: Sendable {
    private var lines = LineSplitter()
    private var eventName: String?
    private var dataLines: [String] = []

    public init() {}

    /// Feeds bytes; returns the events they completed.
    public mutating func feed(_ buffer: ByteBuffer) throws(FramingError) -> [ServerSentEvent] {
        lines.append(buffer)
        var events: [ServerSentEvent] = []
        while let line = try lines.nextLine() {
            if line.readableBytes == 0 {
                if !dataLines.isEmpty {
                    events.append(ServerSentEvent(event: eventName, data: dataLines.joined(separator: "\n")))
                }
                eventName = nil
                dataLines.removeAll(keepingCapacity: true)
                continue
            }
            let text = String(buffer: line)
            if text.hasPrefix(":") { continue }
            let field: Substring
            var value: Substring
            if let colon = text.firstIndex(of: ":") {
                field = text[..<colon]
                value = text[text.index(after: colon)...]
                if value.hasPrefix(" ") { value = value.dropFirst() }
            } else {
                field = Substring(text)
                value = ""
            }
            switch field {
            case "data": dataLines.append(String(value))
            case "event": eventName = String(value)
            default: break
            }
        }
        return events
    }
}

extension SSEDecoder {
    /// Feeds an upstream's bytes; a body that is not SSE is the upstream's fault, reported as a malformed stream.
    public mutating func upstreamEvents(_ input: ByteBuffer) throws(APIError) -> [ServerSentEvent] {
        do {
            return try feed(input)
        } catch {
            throw .malformedStream
        }
    }
}
