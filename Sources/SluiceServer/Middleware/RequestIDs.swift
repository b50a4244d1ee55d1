import HTTPTypes
import Hummingbird
import NIOCore

/// Gives every request an ID (the client's `X-Request-ID` when sane), puts it in every log line and echoes it.
public enum RequestIDs {
    /// Run by ``EdgeMiddleware``, which echoes the returned ID on the answer.
    static func assign(_ request: Request, to context: inout SluiceRequestContext) -> String {
        let id = request.headers[.requestID].flatMap(Self.sanitized) ?? context.id
        context.requestID = id
        context.logger[metadataKey: "hb.request.id"] = nil
        context.logger[metadataKey: "request_id"] = .string(id)
        return id
    }

    /// Accepts 1–128 characters of `[A-Za-z0-9._:-]`, so a client cannot inject anything into logs or headers.
    static func sanitized(_ value: String) -> String? {
        guard (1...128).contains(value.utf8.count) else { return nil }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"):
                continue
            default:
                return nil
            }
        }
        return value
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-ID")!
}
