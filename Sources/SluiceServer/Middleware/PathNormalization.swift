import HTTPTypes
import Hummingbird
import SluiceCore

/// Puts every request path into the form the router read it, for the middleware and handlers that read it after.
///
/// Hummingbird's router matches on the raw path before any router middleware runs, ignoring empty segments, so
/// `//admin/keys` matches `/admin/keys`. Access control decides from the route that matched (``AccessMiddleware``);
/// this rewrite makes every later reader of the path (limits, accounting, logs, errors) see that same request, and
/// refuses the spellings the router would take differently from a reader:
/// - empty segments are dropped (`//v1//models/` → `/v1/models`), as the router drops them;
/// - `.` and `..` segments (which the router takes literally), a path that does not start with `/`, and any
///   percent-encoded `/`, `\`, `.` or NUL (which a later decoder could turn into a different path) are refused with 400.
///
/// The query string is kept as sent.
public enum PathNormalization {
    public enum Outcome: Equatable, Sendable {
        /// Already in normal form: the common case, which allocates nothing.
        case canonical
        /// The normal form of path and query.
        case rewritten(String)
        case refused(String)
    }

    /// The normal form of a request target (`/path?query`).
    public static func normalize(_ target: String) -> Outcome {
        let utf8 = target.utf8
        guard utf8.first == UInt8(ascii: "/") else { return .refused("it must start with /") }
        let queryStart = utf8.firstIndex(of: UInt8(ascii: "?")) ?? utf8.endIndex
        let pathBytes = utf8[utf8.startIndex..<queryStart]
        if isCanonical(pathBytes) { return .canonical }
        if let reason = forbiddenEncoding(pathBytes) { return .refused(reason) }
        var segments: [Substring] = []
        for segment in target[target.startIndex..<queryStart].split(separator: "/", omittingEmptySubsequences: true) {
            // The router takes `.` and `..` literally, so it could never route the resolved path: refusing them
            // keeps what is routed and what is guarded the same request.
            guard segment != ".", segment != ".." else { return .refused("it contains . or .. segments") }
            segments.append(segment)
        }
        let path = "/" + segments.joined(separator: "/")
        return .rewritten(path + target[queryStart...])
    }

    /// True when no segment is empty, `.` or `..`, and nothing is percent-encoded that could hide one of them.
    static func isCanonical(_ path: Substring.UTF8View) -> Bool {
        var previous: UInt8 = 0
        var segmentLength = 0
        var dots = 0
        var first = true
        for byte in path {
            if first {
                first = false
                previous = byte
                continue
            }
            switch byte {
            case UInt8(ascii: "/"):
                if previous == UInt8(ascii: "/") { return false }
                if segmentLength == dots, dots == 1 || dots == 2 { return false }
                segmentLength = 0
                dots = 0
            case UInt8(ascii: "%"), UInt8(ascii: "\\"):
                return false
            default:
                segmentLength += 1
                if byte == UInt8(ascii: ".") { dots += 1 }
            }
            previous = byte
        }
        // A trailing slash (other than the root) or a final dot segment is not the normal form either.
        if path.count > 1, previous == UInt8(ascii: "/") { return false }
        if segmentLength == dots, dots == 1 || dots == 2 { return false }
        return true
    }

    /// Why a percent-escape or backslash must not be accepted, if one is present that could change the path's shape.
    static func forbiddenEncoding(_ path: Substring.UTF8View) -> String? {
        var iterator = path.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "\\") { return "it contains a backslash" }
            guard byte == UInt8(ascii: "%") else { continue }
            guard let high = iterator.next(), let low = iterator.next(), let h = hex(high), let l = hex(low) else {
                return "it has a malformed percent-escape"
            }
            switch h << 4 | l {
            case 0x2F, 0x5C, 0x2E, 0x00: return "it percent-encodes /, \\, . or NUL"
            default: continue
            }
        }
        return nil
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
