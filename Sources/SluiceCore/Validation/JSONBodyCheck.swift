/// One pass over a request body before it is decoded, refusing what a JSON decoder would read differently from
/// the upstream the bytes are forwarded to, or could not report by field.
///
/// - A key twice in one object: Foundation keeps the first, Python and Go keep the last, so
///   `{"model":"allowed","model":"other"}` would be checked as one model and served as another. Keys are compared
///   after unescaping (`"mo\u0064el"` is `model`), and only within the same object.
/// - A number no 64-bit float holds (`1e999`, 5,000 digits): Foundation reports it as invalid JSON without a field.
/// - Invalid UTF-8, a NUL or a lone UTF-16 surrogate in a string: a decoder rejects or mangles them, and what it
///   says does not name the field.
/// - More items than allowed in a top-level array (`arrayCaps`), counted before anything is built from them.
///
/// The scan allocates only for the keys of the objects currently open, so it costs a small part of decoding.
public struct JSONBodyCheck {
    /// Why a body was refused, and where.
    public enum Fault: Error, Equatable, Sendable {
        /// Not JSON at all; no field to name.
        case syntax
        /// Nested deeper than ``maxDepth``.
        case tooDeep
        case duplicateKey(path: String)
        case numberOutOfRange(path: String)
        case invalidUTF8(path: String)
        /// A character no request needs and some readers cut strings at (`character` names it).
        case forbiddenCharacter(path: String, character: String)
        case tooManyItems(path: String, limit: Int)

        /// A fault in a top-level key has no field to name.
        static func named(_ path: String, _ problem: String) -> APIError {
            path.isEmpty ? .invalidJSON("a key: \(problem)") : .invalidValue(path, problem)
        }

        /// The 400 a client gets for it.
        public var apiError: APIError {
            switch self {
            case .syntax:
                .invalidJSON("the request body is not valid JSON.")
            case .tooDeep:
                .invalidJSON("the request body is nested more than \(JSONBodyCheck.maxDepth) levels deep.")
            case .duplicateKey(let path):
                APIError(
                    status: 400, type: "invalid_request_error", code: "duplicate_key",
                    message: "Invalid JSON body: duplicate key '\(path)'; a key may appear only once in an object.", param: path)
            case .numberOutOfRange(let path):
                Self.named(path, "the number is out of range.")
            case .invalidUTF8(let path):
                Self.named(path, "the string is not valid UTF-8.")
            case .forbiddenCharacter(let path, let character):
                Self.named(path, "the string contains a character that is not allowed (\(character)).")
            case .tooManyItems(let path, let limit):
                .invalidValue(path, "at most \(limit) items are allowed.")
            }
        }
    }

    /// Deeper documents are refused rather than risking the stack; request bodies are far shallower.
    public static let maxDepth = 128

    /// Checks `json`; `arrayCaps` limits the item count of top-level members that are arrays.
    public static func check(_ json: UnsafeRawBufferPointer, arrayCaps: [String: Int] = [:]) throws(Fault) {
        var scanner = JSONBodyCheck(input: json.bindMemory(to: UInt8.self), arrayCaps: arrayCaps)
        scanner.skipSpace()
        try scanner.value(depth: 0)
        scanner.skipSpace()
        guard scanner.atEnd else { throw .syntax }
    }

    let input: UnsafeBufferPointer<UInt8>
    let arrayCaps: [String: Int]
    var position = 0
    /// Keys of every object still open, innermost last; an object's keys are dropped when it closes.
    var keys: [Key] = []
    /// Unescaped bytes of the open objects' keys that were written with escapes.
    var unescaped: [UInt8] = []
    /// Where the scan is, for naming the field of a fault.
    var path: [Step] = []

    struct Key {
        var hash: Int
        /// In `input` unless `escaped`, then in `unescaped`.
        var range: Range<Int>
        var escaped: Bool
    }

    enum Step {
        case key(Int)
        case index(Int)
    }

    init(input: UnsafeBufferPointer<UInt8>, arrayCaps: [String: Int]) {
        self.input = input
        self.arrayCaps = arrayCaps
        keys.reserveCapacity(32)
        path.reserveCapacity(8)
    }

    var atEnd: Bool { position == input.count }

    mutating func skipSpace() {
        while position < input.count {
            switch input[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    mutating func value(depth: Int) throws(Fault) {
        guard position < input.count else { throw .syntax }
        guard depth < Self.maxDepth else { throw .tooDeep }
        switch input[position] {
        case UInt8(ascii: "{"): try object(depth: depth)
        case UInt8(ascii: "["): try array(depth: depth, cap: nil)
        case UInt8(ascii: "\""): _ = try string(isKey: false)
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: try number()
        }
    }

    mutating func literal(_ word: StaticString) throws(Fault) {
        let count = word.utf8CodeUnitCount
        guard input.count - position >= count else { throw .syntax }
        for i in 0..<count where input[position + i] != word.utf8Start[i] { throw .syntax }
        position += count
    }

    mutating func object(depth: Int) throws(Fault) {
        position += 1
        let firstKey = keys.count
        let firstUnescaped = unescaped.count
        // Past a handful of keys a linear search would make a body of many keys quadratic; hashes are then indexed.
        var index: [Int: Int]?
        defer {
            keys.removeSubrange(firstKey...)
            unescaped.removeSubrange(firstUnescaped...)
        }
        skipSpace()
        if position < input.count, input[position] == UInt8(ascii: "}") {
            position += 1
            return
        }
        path.append(.key(-1))
        defer { path.removeLast() }
        while true {
            skipSpace()
            guard position < input.count, input[position] == UInt8(ascii: "\"") else { throw .syntax }
            let key = try string(isKey: true)!
            let keyIndex = keys.count
            keys.append(key)
            path[path.count - 1] = .key(keyIndex)
            if findDuplicate(of: keyIndex, from: firstKey, index: &index) != keyIndex {
                throw .duplicateKey(path: pathString())
            }
            skipSpace()
            guard position < input.count, input[position] == UInt8(ascii: ":") else { throw .syntax }
            position += 1
            skipSpace()
            if depth == 0, !arrayCaps.isEmpty, position < input.count, input[position] == UInt8(ascii: "["),
                let cap = arrayCaps.first(where: { isKey(key, named: $0.key) })?.value
            {
                try array(depth: depth + 1, cap: cap)
            } else {
                try value(depth: depth + 1)
            }
            skipSpace()
            guard position < input.count else { throw .syntax }
            let byte = input[position]
            position += 1
            if byte == UInt8(ascii: "}") { return }
            guard byte == UInt8(ascii: ",") else { throw .syntax }
        }
    }

    /// The first key of the object equal to `keys[newKey]` (itself when it is new).
    func findDuplicate(of newKey: Int, from firstKey: Int, index: inout [Int: Int]?) -> Int {
        let key = keys[newKey]
        if index == nil, newKey - firstKey < 16 {
            for i in firstKey..<newKey where sameKey(keys[i], key) {
                return i
            }
            return newKey
        }
        if index == nil {
            var built: [Int: Int] = [:]
            for i in firstKey..<newKey where built[keys[i].hash] == nil { built[keys[i].hash] = i }
            index = built
        }
        guard let same = index![key.hash] else {
            index![key.hash] = newKey
            return newKey
        }
        if sameKey(keys[same], key) { return same }
        // Two different keys with one hash: rare enough (the hash is seeded per process) to search them all.
        for i in firstKey..<newKey where sameKey(keys[i], key) {
            return i
        }
        return newKey
    }

    func sameKey(_ a: Key, _ b: Key) -> Bool {
        guard a.hash == b.hash, a.range.count == b.range.count else { return false }
        if !a.escaped, !b.escaped { return input[a.range].elementsEqual(input[b.range]) }
        return unescaped.withUnsafeBufferPointer { spelled in
            let x = a.escaped ? UnsafeBufferPointer(rebasing: spelled[a.range]) : UnsafeBufferPointer(rebasing: input[a.range])
            let y = b.escaped ? UnsafeBufferPointer(rebasing: spelled[b.range]) : UnsafeBufferPointer(rebasing: input[b.range])
            return x.elementsEqual(y)
        }
    }

    func name(of key: Key) -> String {
        key.escaped ? String(decoding: unescaped[key.range], as: UTF8.self) : String(decoding: UnsafeBufferPointer(rebasing: input[key.range]), as: UTF8.self)
    }

    func isKey(_ key: Key, named name: String) -> Bool {
        key.escaped ? unescaped[key.range].elementsEqual(name.utf8) : input[key.range].elementsEqual(name.utf8)
    }

    mutating func array(depth: Int, cap: Int?) throws(Fault) {
        position += 1
        skipSpace()
        if position < input.count, input[position] == UInt8(ascii: "]") {
            position += 1
            return
        }
        path.append(.index(0))
        defer { path.removeLast() }
        var count = 0
        while true {
            if let cap, count == cap { throw .tooManyItems(path: pathString(upTo: path.count - 1), limit: cap) }
            path[path.count - 1] = .index(count)
            skipSpace()
            try value(depth: depth + 1)
            count += 1
            skipSpace()
            guard position < input.count else { throw .syntax }
            let byte = input[position]
            position += 1
            if byte == UInt8(ascii: "]") { return }
            guard byte == UInt8(ascii: ",") else { throw .syntax }
        }
    }

    /// Scans a string token, checking its escapes and UTF-8; for a key, returns it (unescaped if need be) with its hash.
    mutating func string(isKey: Bool) throws(Fault) -> Key? {
        position += 1
        let start = position
        var escaped = false
        var unescapedStart = unescaped.count
        while position < input.count {
            let byte = input[position]
            // Most string bytes are plain ASCII: skip them without the checks below.
            if byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
                position += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                let end = position
                position += 1
                guard isKey else { return nil }
                if escaped {
                    // Only keys are kept unescaped: the spans between escapes were not copied yet.
                    unescapedStart = unescaped.count
                    try unescape(start..<end)
                    let range = unescapedStart..<unescaped.count
                    var hasher = Hasher()
                    unescaped.withUnsafeBytes { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[range])) }
                    return Key(hash: hasher.finalize(), range: range, escaped: true)
                }
                var hasher = Hasher()
                hasher.combine(bytes: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: input[start..<end])))
                return Key(hash: hasher.finalize(), range: start..<end, escaped: false)
            case UInt8(ascii: "\\"):
                escaped = true
                _ = try escape(at: position, isKey: isKey)
            case 0:
                throw .forbiddenCharacter(path: pathString(excludingKey: isKey), character: "NUL")
            case 1..<0x20:
                throw .forbiddenCharacter(path: pathString(excludingKey: isKey), character: "an unescaped control character")
            case 0x80...:
                position += try utf8Sequence(at: position, isKey: isKey)
            default:
                position += 1
            }
        }
        throw .syntax
    }

    /// Checks the escape at `at` and moves past it; returns its code point (a surrogate pair's combined).
    mutating func escape(at: Int, isKey: Bool) throws(Fault) -> UInt32 {
        guard at + 1 < input.count else { throw .syntax }
        let code: UInt32
        switch input[at + 1] {
        case UInt8(ascii: "\""): code = 0x22
        case UInt8(ascii: "\\"): code = 0x5C
        case UInt8(ascii: "/"): code = 0x2F
        case UInt8(ascii: "b"): code = 0x08
        case UInt8(ascii: "f"): code = 0x0C
        case UInt8(ascii: "n"): code = 0x0A
        case UInt8(ascii: "r"): code = 0x0D
        case UInt8(ascii: "t"): code = 0x09
        case UInt8(ascii: "u"):
            let unit = try hex4(at: at + 2)
            switch unit {
            case 0:
                throw .forbiddenCharacter(path: pathString(excludingKey: isKey), character: "NUL")
            case 0xD800...0xDBFF:
                guard at + 11 < input.count, input[at + 6] == UInt8(ascii: "\\"), input[at + 7] == UInt8(ascii: "u"),
                    case let low = try hex4(at: at + 8), (0xDC00...0xDFFF).contains(low)
                else {
                    throw .forbiddenCharacter(path: pathString(excludingKey: isKey), character: "a lone UTF-16 surrogate")
                }
                position = at + 12
                return 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            case 0xDC00...0xDFFF:
                throw .forbiddenCharacter(path: pathString(excludingKey: isKey), character: "a lone UTF-16 surrogate")
            default:
                position = at + 6
                return unit
            }
        default:
            throw .syntax
        }
        position = at + 2
        return code
    }

    func hex4(at: Int) throws(Fault) -> UInt32 {
        guard at + 4 <= input.count else { throw .syntax }
        var value: UInt32 = 0
        for i in at..<(at + 4) {
            let byte = input[i]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw .syntax
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Appends the unescaped bytes of a key already checked by ``string(isKey:)`` to `unescaped`.
    mutating func unescape(_ range: Range<Int>) throws(Fault) {
        let resume = position
        defer { position = resume }
        position = range.lowerBound
        while position < range.upperBound {
            let byte = input[position]
            guard byte == UInt8(ascii: "\\") else {
                unescaped.append(byte)
                position += 1
                continue
            }
            let scalar = try escape(at: position, isKey: true)
            guard let unicode = Unicode.Scalar(scalar) else { throw .syntax }
            unescaped.append(contentsOf: UTF8.encode(unicode)!)
        }
    }

    /// The length of the well-formed UTF-8 sequence at `at` (no overlong forms, surrogates or values past U+10FFFF).
    func utf8Sequence(at: Int, isKey: Bool) throws(Fault) -> Int {
        let lead = input[at]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            high = 0x9F
        case 0xF0:
            length = 4
            low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            high = 0x8F
        default: throw .invalidUTF8(path: pathString(excludingKey: isKey))
        }
        guard at + length <= input.count else { throw .invalidUTF8(path: pathString(excludingKey: isKey)) }
        let second = input[at + 1]
        guard second >= low, second <= high else { throw .invalidUTF8(path: pathString(excludingKey: isKey)) }
        for i in (at + 2)..<(at + length) where input[i] & 0xC0 != 0x80 {
            throw .invalidUTF8(path: pathString(excludingKey: isKey))
        }
        return length
    }

    /// Checks a number's grammar and that a 64-bit float holds it (`1e999`, `1e-999` and 400-digit integers do not).
    mutating func number() throws(Fault) {
        let start = position
        if position < input.count, input[position] == UInt8(ascii: "-") { position += 1 }
        // Digits before the point, leading zeros aside: with the exponent they give the magnitude.
        var integerDigits = 0
        var leadingZeros = true
        var fractionLeadingZeros = 0
        guard position < input.count, isDigit(input[position]) else { throw .syntax }
        if input[position] == UInt8(ascii: "0") {
            position += 1
        } else {
            while position < input.count, isDigit(input[position]) {
                integerDigits += 1
                position += 1
            }
            leadingZeros = false
        }
        if position < input.count, input[position] == UInt8(ascii: ".") {
            position += 1
            guard position < input.count, isDigit(input[position]) else { throw .syntax }
            while position < input.count, isDigit(input[position]) {
                if leadingZeros, input[position] == UInt8(ascii: "0") { fractionLeadingZeros += 1 } else { leadingZeros = false }
                position += 1
            }
        }
        var exponent = 0
        if position < input.count, input[position] == UInt8(ascii: "e") || input[position] == UInt8(ascii: "E") {
            position += 1
            var negative = false
            if position < input.count, input[position] == UInt8(ascii: "+") || input[position] == UInt8(ascii: "-") {
                negative = input[position] == UInt8(ascii: "-")
                position += 1
            }
            guard position < input.count, isDigit(input[position]) else { throw .syntax }
            while position < input.count, isDigit(input[position]) {
                // Capped: past a million the verdict is the same, and the sum cannot overflow.
                if exponent < 1_000_000 { exponent = exponent * 10 + Int(input[position] - UInt8(ascii: "0")) }
                position += 1
            }
            if negative { exponent = -exponent }
        }
        if leadingZeros { return }  // zero, however written
        // The value lies in [10^(magnitude-1), 10^magnitude).
        let magnitude = (integerDigits > 0 ? integerDigits : -fractionLeadingZeros) + exponent
        if (-300...308).contains(magnitude) { return }
        if magnitude > 309 || magnitude < -330 { throw .numberOutOfRange(path: pathString()) }
        // Near the ends only parsing tells: past Double.greatestFiniteMagnitude (1.797e308) it is infinite, and below
        // the least subnormal (4.9e-324) a non-zero number becomes 0, which Foundation's decoder refuses as invalid.
        let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<position]), as: UTF8.self)
        guard let parsed = Double(text), parsed.isFinite, parsed != 0 else { throw .numberOutOfRange(path: pathString()) }
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// The field being scanned, as `messages[0].content`; a fault inside a key names the object holding it.
    func pathString(excludingKey: Bool = false) -> String {
        pathString(upTo: excludingKey ? path.count - 1 : path.count)
    }

    func pathString(upTo count: Int) -> String {
        var out = ""
        for step in path.prefix(max(0, count)) {
            switch step {
            case .index(let i):
                out += "[\(i)]"
            case .key(let k):
                guard k >= 0, k < keys.count else { continue }
                if !out.isEmpty { out += "." }
                out += name(of: keys[k])
            }
        }
        return out
    }
}
