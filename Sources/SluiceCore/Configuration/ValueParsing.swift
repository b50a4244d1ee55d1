/// Parsers for human-friendly configuration values: sizes (`64MiB`), durations (`300s`), booleans, lists.
public enum ValueParsing {
    /// The longest duration any option or argument takes (100 years): past it a value is a typo or an attack, and
    /// converting it to whole milliseconds could overflow.
    public static let maxDuration = Duration.seconds(36_525 * 86_400)
    /// The largest size any option takes (1 TiB): no memory bound or body limit of a gateway comes near it.
    public static let maxBytes = 1 << 40

    /// Bytes in `1024`, `4KB`, `4KiB`, `64MB`, `64MiB`, `1GiB` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).
    public static func bytes(_ text: String) -> Int? {
        let s = text.trimmingSpaces()
        let digits = s.prefix { $0.isDecimalDigitOrPoint }
        guard !digits.isEmpty, let number = Double(digits) else { return nil }
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
        // Checked as a Double before converting: Int(_:) traps on a value it cannot hold.
        guard value.isFinite, value >= 0, value <= Double(maxBytes) else { return nil }
        return Int(value)
    }

    /// A duration in `250ms`, `30s`, `5m`, `1h`, `1h30m`, `7d`, or plain seconds (`30`, `0.5`), at most ``maxDuration``.
    ///
    /// Only ASCII digits and a point make a number: `Double(_:)` alone would also take `inf`, `nan` and `1e30`.
    public static func duration(_ text: String) -> Duration? {
        let s = text.trimmingSpaces().lowercased()
        guard !s.isEmpty else { return nil }
        if s.allSatisfy(\.isDecimalDigitOrPoint) {
            return Double(s).flatMap { milliseconds($0 * 1_000) }
        }
        var total = Duration.zero
        var rest = Substring(s)
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isDecimalDigitOrPoint }
            guard !digits.isEmpty, let number = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let scale: Double
            switch unit {
            case "ms": scale = 1
            case "s": scale = 1_000
            case "m": scale = 60_000
            case "h": scale = 3_600_000
            case "d": scale = 86_400_000
            default: return nil
            }
            guard let part = milliseconds(number * scale) else { return nil }
            total += part
            guard total <= maxDuration else { return nil }
        }
        return total
    }

    /// Whole milliseconds of a count that is finite, not negative and within ``maxDuration``; nil otherwise.
    static func milliseconds(_ millis: Double) -> Duration? {
        guard millis.isFinite, millis >= 0, millis <= Double(maxDuration.components.seconds) * 1_000 else { return nil }
        return .milliseconds(Int64(millis))
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

extension Character {
    /// `0`-`9` or `.`: what a number in an option is made of (`isNumber` would also take `½` and other scripts' digits).
    var isDecimalDigitOrPoint: Bool {
        guard let ascii = asciiValue else { return false }
        return (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(ascii) || ascii == UInt8(ascii: ".")
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
