import Foundation
import NIOCore

/// An IP address or CIDR block (`10.0.0.0/8`, `::1`, `fd00::/8`), for the trusted-proxies list.
public struct IPRange: Sendable, Equatable, CustomStringConvertible {
    let network: [UInt8]
    let prefixLength: Int
    public let description: String

    /// Parses `ADDRESS` or `ADDRESS/BITS`; nil when it is neither.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let bytes = Self.bytes(of: first) else { return nil }
        let bits = bytes.count * 8
        var length = bits
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...bits).contains(parsed) else { return nil }
            length = parsed
        }
        self.network = Self.masked(bytes, prefixLength: length)
        self.prefixLength = length
        self.description = text
    }

    /// Whether `address` (a textual IPv4 or IPv6 address) lies in this range; IPv4-mapped IPv6 addresses match IPv4 ranges.
    public func contains(_ address: String) -> Bool {
        guard var bytes = Self.bytes(of: address) else { return false }
        if bytes.count == 16, network.count == 4, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            bytes = Array(bytes[12...])
        }
        guard bytes.count == network.count else { return false }
        return Self.masked(bytes, prefixLength: prefixLength) == network
    }

    /// The 4 or 16 bytes of a textual address; NIO's parser does the parsing.
    static func bytes(of address: String) -> [UInt8]? {
        guard let socketAddress = try? SocketAddress(ipAddress: address, port: 0) else { return nil }
        switch socketAddress {
        case .v4(let v4):
            return withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
        case .v6(let v6):
            return withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        default:
            return nil
        }
    }

    static func masked(_ bytes: [UInt8], prefixLength: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let keep = max(0, min(8, prefixLength - index * 8))
            return keep == 8 ? byte : byte & ~(UInt8(0xFF) >> keep)
        }
    }
}

/// Resolves the client's address from the peer and `X-Forwarded-For`, trusting the header only from listed proxies.
public struct ClientAddressResolver: Sendable {
    public let trusted: [IPRange]

    public init(trusted: [IPRange]) {
        self.trusted = trusted
    }

    func isTrusted(_ address: String) -> Bool {
        trusted.contains { $0.contains(address) }
    }

    /// The peer itself unless it is a trusted proxy; then the right-most `X-Forwarded-For` entry that is not a
    /// trusted proxy (entries to its left are whatever the client claimed and prove nothing).
    public func clientAddress(peer: String?, forwardedFor: [String]) -> String? {
        guard let peer, !trusted.isEmpty, isTrusted(peer) else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() {
            guard IPRange.bytes(of: hop) != nil else { return peer }
            if !isTrusted(hop) { return hop }
        }
        return hops.first ?? peer
    }
}
