/// Parsers for human-friendly configuration values: sizes (`64MiB`), durations (`300s`), booleans, lists.
public enum ValueParsing {
    /// Bytes in `1024`, `4KB`, `4KiB`, `64MB`, `64MiB`, `1GiB` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).
    public static func bytes(_ text: String) -> Int? {
        let s = text.trimmingSpaces()
        let digits = s.prefix { $0.isNumber || $0 == "." }
        guard !digits.isEmpty, let number = Double(digits), number >= 0 else { return nil }
        let unit = s.dropFirst(digits.count).trimmingSpaces().lowercased()
        let multiplier: Double
        switch unit {
        case "", "b": multiplier = 1
        case "k", "kb": multiplier = 1_000
        case "kib": multiplier = 1_024
        case "m", "mb": multiplier = 1_000_000
        case "mib": multiplier = 1_048_576
        case "g", "gb": multiplier = 1_000_000_000
        case "gib": multiplier = 1_073_741_824
        default: return nil
        }
        let value = number * multiplier
        guard value < Double(Int.max) else { return nil }
        return Int(value)
    }

    /// A duration in `250ms`, `30s`, `5m`, `1h`, `1h30m`, or plain seconds (`30`, `0.5`).
    public static func duration(_ text: String) -> Duration? {
        let s = text.trimmingSpaces().lowercased()
        guard !s.isEmpty else { return nil }
        if let seconds = Double(s) {
            return seconds >= 0 ? .milliseconds(Int64(seconds * 1000)) : nil
        }
        var total = Duration.zero
        var rest = Substring(s)
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isNumber || $0 == "." }
            guard !digits.isEmpty, let number = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let millis: Double
            switch unit {
            case "ms": millis = number
            case "s": millis = number * 1_000
            case "m": millis = number * 60_000
            case "h": millis = number * 3_600_000
            case "d": millis = number * 86_400_000
            default: return nil
            }
            total += .milliseconds(Int64(millis))
        }
        return total
    }

    public static func bool(_ text: String) -> Bool? {
        switch text.trimmingSpaces().lowercased() {
        case "1", "true", "yes", "on": true
        case "0", "false", "no", "off": false
        default: nil
        }
    }

    /// Comma-separated values, trimmed, empties dropped.
    public static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}

/// Parses `.env` files: `KEY=value` lines, `#` comments, optional `export ` and single or double quotes.
public enum DotEnv {
    public static func parse(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            var line = rawLine.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingSpaces() }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingSpaces()
            var value = line[line.index(after: eq)...].trimmingSpaces()
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q {
                value = String(value.dropFirst().dropLast())
            } else if let hash = value.range(of: " #") {
                value = value[..<hash.lowerBound].trimmingSpaces()
            }
            if !key.isEmpty { out[key] = value }
        }
        return out
    }
}
