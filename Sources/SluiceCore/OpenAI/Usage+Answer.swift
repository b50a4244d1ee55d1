import Foundation
import NIOCore

extension Usage {
    /// The `usage` member of an OpenAI answer, decoding only that member: answers can be long, and the gateway
    /// forwards them as they are. Nil when there is none or it cannot be read.
    public init?(inAnswer answer: ByteBuffer) {
        let usage: Usage? = answer.withUnsafeReadableBytes { bytes in
            guard let range = CanonicalJSON.topLevelMember("usage", in: bytes) else { return nil }
            return try? JSONDecoder().decode(Usage.self, from: Data(bytes[range]))
        }
        guard let usage else { return nil }
        self = usage
    }
}
