#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import Synchronization

/// Where JSON log lines go: stdout or an append-only file created with mode 0600.
public final class LogSink: Sendable {
    private let fd: Mutex<Int32>
    private let ownsDescriptor: Bool

    public static let standardOutput = LogSink(fd: STDOUT_FILENO, owns: false)

    private init(fd: Int32, owns: Bool) {
        self.fd = Mutex(fd)
        self.ownsDescriptor = owns
    }

    /// Opens (or creates) `path` for appending; the file is forced to 0600 even if it existed with wider permissions.
    public convenience init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigurationError("cannot open log file \(path): \(String(cString: strerror(errno)))") }
        guard fchmod(fd, 0o600) == 0 else {
            close(fd)
            throw ConfigurationError("cannot set mode 0600 on log file \(path)")
        }
        self.init(fd: fd, owns: true)
    }

    deinit {
        if ownsDescriptor { fd.withLock { _ = close($0) } }
    }

    /// Writes one whole line; the lock keeps lines from interleaving.
    func write(_ bytes: [UInt8]) {
        fd.withLock { fd in
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 {
                        if n < 0, errno == EINTR { continue }
                        return
                    }
                    offset += n
                }
            }
        }
    }
}

/// A swift-log handler writing one JSON object per line: time, level, message, label, then metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let sink: LogSink

    public init(label: String, level: Logger.Level, sink: LogSink) {
        self.label = label
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "{\"time\":\""
        line += Timestamp.now()
        line += "\",\"level\":\""
        line += event.level.rawValue
        line += "\",\"msg\":"
        Self.appendJSONString(event.message.description, to: &line)
        line += ",\"logger\":"
        Self.appendJSONString(label, to: &line)
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for key in merged.keys.sorted() {
            line += ","
            Self.appendJSONString(key, to: &line)
            line += ":"
            Self.appendValue(merged[key]!, to: &line)
        }
        line += "}\n"
        sink.write(Array(line.utf8))
    }

    static func appendValue(_ value: Logger.Metadata.Value, to line: inout String) {
        switch value {
        case .string(let s): appendJSONString(s, to: &line)
        case .stringConvertible(let c):
            if let n = c as? any BinaryInteger {
                line += "\(n)"
            } else if let d = c as? Double, d.isFinite {
                line += "\(d)"
            } else {
                appendJSONString(c.description, to: &line)
            }
        case .array(let a):
            line += "["
            for (i, v) in a.enumerated() {
                if i > 0 { line += "," }
                appendValue(v, to: &line)
            }
            line += "]"
        case .dictionary(let d):
            line += "{"
            for (i, key) in d.keys.sorted().enumerated() {
                if i > 0 { line += "," }
                appendJSONString(key, to: &line)
                line += ":"
                appendValue(d[key]!, to: &line)
            }
            line += "}"
        }
    }

    static func appendJSONString(_ s: String, to line: inout String) {
        line += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20:
                line += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: line.unicodeScalars.append(scalar)
            }
        }
        line += "\""
    }
}

/// RFC 3339 UTC timestamps with milliseconds, without a DateFormatter on the hot path.
/// RFC 3339 timestamps without a per-call formatter.
public enum Timestamp {
    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return format(seconds: ts.tv_sec, milliseconds: Int(ts.tv_nsec / 1_000_000))
    }

    public static func rfc3339(_ unixSeconds: Double) -> String {
        let seconds = unixSeconds.rounded(.down)
        return format(seconds: Int(seconds), milliseconds: Int((unixSeconds - seconds) * 1000))
    }

    static func format(seconds: Int, milliseconds: Int) -> String {
        var t = seconds
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))T"
            + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2)).\(pad(milliseconds, 3))Z"
    }
}
