/// Canonical JSON bytes: object keys sorted, no insignificant whitespace, so equal documents hash equally.
public enum CanonicalJSON {}

extension CanonicalJSON {
    /// Thrown when the bytes are not one JSON value.
    public struct InvalidJSON: Error {}

    /// Canonical bytes of a JSON document read straight from its text, without building a value tree.
    ///
    /// Object members are sorted by their key as written and whitespace between tokens goes; strings keep their
    /// escapes as written and numbers their digits (but `2.0` becomes `2`). Two spellings of one document may
    /// therefore differ (`"\u0041"` and `"A"`), which costs a cache miss; two different documents never give
    /// the same bytes, because the output is itself the document in JSON. Members of the top-level object named
    /// in `dropping` are left out.
    public static func bytes(of json: UnsafeRawBufferPointer, dropping: Set<String> = []) throws(InvalidJSON) -> [UInt8] {
        try bytes(of: json, dropping: dropping.map { Array($0.utf8) })
    }

    /// As ``bytes(of:dropping:)``, with the dropped names already as bytes (the cache key's are made once).
    static func bytes(of json: UnsafeRawBufferPointer, dropping: [[UInt8]]) throws(InvalidJSON) -> [UInt8] {
        var scanner = Scanner(input: json.bindMemory(to: UInt8.self), dropping: dropping)
        var out: [UInt8] = []
        out.reserveCapacity(json.count)
        scanner.skipSpace()
        try scanner.value(into: &out, depth: 0)
        scanner.skipSpace()
        guard scanner.atEnd else { throw InvalidJSON() }
        return out
    }

    /// The bytes of the top-level member `name` of a JSON object (its value only), without parsing the rest:
    /// how the gateway reads `usage` from an answer it forwards as is. Nil when absent or not an object.
    public static func topLevelMember(_ name: String, in json: UnsafeRawBufferPointer) -> Range<Int>? {
        topLevelMembers([name], in: json)[0]
    }

    /// The value ranges of several top-level members in one pass (the first of each name), nil where absent;
    /// all nil when the text is not an object, breaks off before every name is found, or has a key spelled with
    /// escapes before then.
    public static func topLevelMembers(_ names: [String], in json: UnsafeRawBufferPointer) -> [Range<Int>?] {
        var found = [Range<Int>?](repeating: nil, count: names.count)
        var scanner = Scanner(input: json.bindMemory(to: UInt8.self), dropping: [])
        let wanted = names.map { Array($0.utf8) }
        var missing = names.count
        do throws(InvalidJSON) {
            scanner.skipSpace()
            guard !scanner.atEnd, scanner.input[scanner.position] == UInt8(ascii: "{") else { return found.map { _ in nil } }
            scanner.position += 1
            while missing > 0 {
                scanner.skipSpace()
                guard !scanner.atEnd, scanner.input[scanner.position] == UInt8(ascii: "\"") else { throw InvalidJSON() }
                let key = try scanner.string()
                // A key spelled with escapes (`"stre\u0061m"`) is a name decoders read after unescaping: no answer
                // rather than a wrong one, so callers fall back to a decoder that reads it as the upstream will.
                if scanner.input[key].contains(UInt8(ascii: "\\")) { throw InvalidJSON() }
                scanner.skipSpace()
                guard !scanner.atEnd, scanner.input[scanner.position] == UInt8(ascii: ":") else { throw InvalidJSON() }
                scanner.position += 1
                scanner.skipSpace()
                let start = scanner.position
                try scanner.skipValue(depth: 1)
                let name = scanner.input[(key.lowerBound + 1)..<(key.upperBound - 1)]
                if let i = wanted.indices.first(where: { found[$0] == nil && wanted[$0].elementsEqual(name) }) {
                    found[i] = start..<scanner.position
                    missing -= 1
                }
                scanner.skipSpace()
                guard !scanner.atEnd else { throw InvalidJSON() }
                let byte = scanner.input[scanner.position]
                scanner.position += 1
                if byte == UInt8(ascii: "}") { break }
                guard byte == UInt8(ascii: ",") else { throw InvalidJSON() }
            }
            return found
        } catch {
            return found.map { _ in nil }
        }
    }

    struct Scanner {
        let input: UnsafeBufferPointer<UInt8>
        let dropping: [[UInt8]]
        var position = 0

        /// Deeper documents are refused rather than risking the stack; request bodies are far shallower.
        static let maxDepth = 128

        var atEnd: Bool { position == input.count }

        mutating func skipSpace() {
            while position < input.count {
                switch input[position] {
                case 0x20, 0x0A, 0x0D, 0x09: position += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: StaticString, into out: inout [UInt8]) throws(InvalidJSON) {
            let count = literal.utf8CodeUnitCount
            guard input.count - position >= count else { throw InvalidJSON() }
            for i in 0..<count where input[position + i] != literal.utf8Start[i] { throw InvalidJSON() }
            out.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: count))
            position += count
        }

        mutating func value(into out: inout [UInt8], depth: Int) throws(InvalidJSON) {
            guard position < input.count, depth < Self.maxDepth else { throw InvalidJSON() }
            switch input[position] {
            case UInt8(ascii: "{"): try object(into: &out, depth: depth)
            case UInt8(ascii: "["): try array(into: &out, depth: depth)
            case UInt8(ascii: "\""):
                let range = try string()
                out.append(contentsOf: UnsafeBufferPointer(rebasing: input[range]))
            case UInt8(ascii: "t"): try expect("true", into: &out)
            case UInt8(ascii: "f"): try expect("false", into: &out)
            case UInt8(ascii: "n"): try expect("null", into: &out)
            default: try number(into: &out)
            }
        }

        /// Moves past one value without writing it anywhere.
        mutating func skipValue(depth: Int) throws(InvalidJSON) {
            guard position < input.count, depth < Self.maxDepth else { throw InvalidJSON() }
            switch input[position] {
            case UInt8(ascii: "\""):
                _ = try string()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let close = input[position] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                position += 1
                skipSpace()
                if position < input.count, input[position] == close {
                    position += 1
                    return
                }
                while true {
                    skipSpace()
                    if close == UInt8(ascii: "}") {
                        guard position < input.count, input[position] == UInt8(ascii: "\"") else { throw InvalidJSON() }
                        _ = try string()
                        skipSpace()
                        guard position < input.count, input[position] == UInt8(ascii: ":") else { throw InvalidJSON() }
                        position += 1
                        skipSpace()
                    }
                    try skipValue(depth: depth + 1)
                    skipSpace()
                    guard position < input.count else { throw InvalidJSON() }
                    let byte = input[position]
                    position += 1
                    if byte == close { return }
                    guard byte == UInt8(ascii: ",") else { throw InvalidJSON() }
                }
            default:
                var ignored: [UInt8] = []
                try value(into: &ignored, depth: depth)
            }
        }

        /// The range of a string token, quotes included.
        mutating func string() throws(InvalidJSON) -> Range<Int> {
            let start = position
            position += 1
            while position < input.count {
                switch input[position] {
                case UInt8(ascii: "\""):
                    position += 1
                    return start..<position
                case UInt8(ascii: "\\"): position += 2
                case 0..<0x20: throw InvalidJSON()
                default: position += 1
                }
            }
            throw InvalidJSON()
        }

        mutating func number(into out: inout [UInt8]) throws(InvalidJSON) {
            let start = position
            var fraction: Int?
            var exponent = false
            while position < input.count {
                switch input[position] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"): break
                case UInt8(ascii: "."): fraction = position
                case UInt8(ascii: "e"), UInt8(ascii: "E"): exponent = true
                default:
                    guard position > start else { throw InvalidJSON() }
                    emitNumber(start..<position, fraction: fraction, exponent: exponent, into: &out)
                    return
                }
                position += 1
            }
            guard position > start else { throw InvalidJSON() }
            emitNumber(start..<position, fraction: fraction, exponent: exponent, into: &out)
        }

        /// `2.0` and `2` are the same number to every JSON reader, so an all-zero fraction is dropped.
        func emitNumber(_ range: Range<Int>, fraction: Int?, exponent: Bool, into out: inout [UInt8]) {
            var end = range.upperBound
            if let fraction, !exponent, input[(fraction + 1)..<end].allSatisfy({ $0 == UInt8(ascii: "0") }) {
                end = fraction
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: input[range.lowerBound..<end]))
        }

        mutating func array(into out: inout [UInt8], depth: Int) throws(InvalidJSON) {
            position += 1
            out.append(UInt8(ascii: "["))
            skipSpace()
            if position < input.count, input[position] == UInt8(ascii: "]") {
                position += 1
                out.append(UInt8(ascii: "]"))
                return
            }
            while true {
                skipSpace()
                try value(into: &out, depth: depth + 1)
                skipSpace()
                guard position < input.count else { throw InvalidJSON() }
                let byte = input[position]
                position += 1
                if byte == UInt8(ascii: "]") { break }
                guard byte == UInt8(ascii: ",") else { throw InvalidJSON() }
                out.append(UInt8(ascii: ","))
            }
            out.append(UInt8(ascii: "]"))
        }

        /// One member as written to `out`: its key token in the input, its `"key":value` bytes in `out`.
        struct Member {
            var key: Range<Int>
            var bytes: Range<Int>
        }

        mutating func object(into out: inout [UInt8], depth: Int) throws(InvalidJSON) {
            position += 1
            let start = out.count
            var members: [Member] = []
            skipSpace()
            if position < input.count, input[position] == UInt8(ascii: "}") {
                position += 1
                out.append(contentsOf: [UInt8(ascii: "{"), UInt8(ascii: "}")])
                return
            }
            while true {
                skipSpace()
                guard position < input.count, input[position] == UInt8(ascii: "\"") else { throw InvalidJSON() }
                let key = try string()
                skipSpace()
                guard position < input.count, input[position] == UInt8(ascii: ":") else { throw InvalidJSON() }
                position += 1
                skipSpace()
                let memberStart = out.count
                out.append(contentsOf: UnsafeBufferPointer(rebasing: input[key]))
                out.append(UInt8(ascii: ":"))
                try value(into: &out, depth: depth + 1)
                if depth == 0, isDropped(key) {
                    out.removeSubrange(memberStart...)
                } else {
                    members.append(Member(key: key, bytes: memberStart..<out.count))
                }
                skipSpace()
                guard position < input.count else { throw InvalidJSON() }
                let byte = input[position]
                position += 1
                if byte == UInt8(ascii: "}") { break }
                guard byte == UInt8(ascii: ",") else { throw InvalidJSON() }
            }
            // Members were written back to back; reassemble them in key order with braces and commas.
            let written = Array(out[start...])
            out.removeSubrange(start...)
            let sorted = members.sorted { lhs, rhs in
                input[lhs.key].lexicographicallyPrecedes(input[rhs.key])
            }
            out.append(UInt8(ascii: "{"))
            for (i, member) in sorted.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: written[(member.bytes.lowerBound - start)..<(member.bytes.upperBound - start)])
            }
            out.append(UInt8(ascii: "}"))
        }

        func isDropped(_ key: Range<Int>) -> Bool {
            // The key token includes its quotes.
            let name = input[(key.lowerBound + 1)..<(key.upperBound - 1)]
            return dropping.contains { $0.elementsEqual(name) }
        }
    }
}
