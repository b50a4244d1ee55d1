import Foundation
import Testing

@testable import SluiceCore

@Suite("API key secrets")
struct APIKeySecretTests {
    @Test func generatedKeysHaveThePrefixAndEnoughRandomCharacters() {
        let secret = APIKeySecret.generate()
        #expect(secret.hasPrefix("sk-sluice-"))
        #expect(secret.count - "sk-sluice-".count >= 32)
        #expect(APIKeySecret.isWellFormed(secret))
    }

    @Test func generatedKeysDiffer() {
        let keys = Set((0..<1000).map { _ in APIKeySecret.generate() })
        #expect(keys.count == 1000)
    }

    @Test func hashIsLowercaseHexSHA256() {
        // SHA-256("abc"), from FIPS 180-2.
        #expect(APIKeySecret.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test(arguments: ["", "sk-sluice-", "sk-sluice-short", "sk-other-" + String(repeating: "a", count: 40),
                      "sk-sluice-" + String(repeating: "a", count: 31), "sk-sluice-" + String(repeating: "a", count: 39) + "!"])
    func malformedKeysAreRejected(_ text: String) {
        #expect(!APIKeySecret.isWellFormed(text))
    }

    @Test func constantTimeEqualsCompares() {
        #expect(APIKeySecret.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!APIKeySecret.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!APIKeySecret.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
        #expect(APIKeySecret.matches("master-secret", configured: "master-secret"))
        #expect(!APIKeySecret.matches("master-secreT", configured: "master-secret"))
    }

    @Test func digestWordsRoundTripThroughHex() throws {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        let digest = SHA256Words(hashing: "abc")
        #expect(digest.hex == hex)
        #expect(SHA256Words(hex: hex) == digest)
        #expect(SHA256Words(hex: hex.uppercased()) == digest)
        #expect(digest.constantTimeEquals(try #require(SHA256Words(hex: hex))))
        #expect(!digest.constantTimeEquals(SHA256Words(hashing: "abd")))
        #expect(SHA256Words(hex: String(hex.dropLast())) == nil)
        #expect(SHA256Words(hex: String(hex.dropLast()) + "g") == nil)
    }

    @Test func responseIDsHaveOpenAIsShapeAndDiffer() {
        let ids = (0..<1000).map { _ in ResponseIdentity.randomID(prefix: "chatcmpl") }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(50) {
            #expect(id.hasPrefix("chatcmpl-"))
            let suffix = id.dropFirst("chatcmpl-".count)
            #expect(suffix.count == 24)
            #expect(suffix.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
        }
    }

    @Test func issuedKeysStoreOnlyTheHash() {
        let issued = IssuedKey(name: "ci", now: 100, allowedModels: ["llama3.2"], rpm: 5)
        #expect(issued.record.hash == APIKeySecret.hash(issued.secret))
        #expect(issued.secret.hasPrefix(issued.record.prefix))
        #expect(issued.record.prefix.count < 20)
        #expect(issued.record.id.hasPrefix("key_"))
        #expect(!issued.record.id.contains(issued.secret))
    }

    @Test func refusalsCoverRevokedAndExpired() {
        var record = IssuedKey(name: "k", now: 0, expiresAt: 50).record
        #expect(record.refusal(now: 10) == nil)
        #expect(record.refusal(now: 50) != nil)
        record.expiresAt = nil
        record.revoked = true
        #expect(record.refusal(now: 10) != nil)
    }

    @Test func timeArguments() throws {
        let day: Double = 86_400
        #expect(TimeArgument.past("24h", now: 100_000) == Double(100_000) - day)
        #expect(TimeArgument.future("30d", now: 0) == 30 * day)
        #expect(TimeArgument.past("2026-01-01", now: 0) == Double(1_767_225_600))
        #expect(TimeArgument.past("soon", now: 0) == nil)
    }
}

@Suite("Token buckets")
struct TokenBucketTests {
    @Test func admitsTheBurstThenRefuses() {
        var bucket = TokenBucket.perMinute(3, now: 0)
        #expect(bucket.take(now: 0).allowed)
        #expect(bucket.take(now: 0).allowed)
        let third = bucket.take(now: 0)
        #expect(third.allowed && third.remaining == 0)
        let refused = bucket.take(now: 0)
        #expect(!refused.allowed)
        // 3 per minute: one token every 20 seconds.
        #expect(abs(refused.retryAfterSeconds - 20) < 1e-9)
        #expect(abs(refused.resetSeconds - 60) < 1e-9)
    }

    @Test func refillsOverTime() {
        var bucket = TokenBucket.perMinute(60, now: 0)
        for _ in 0..<60 { #expect(bucket.take(now: 0).allowed) }
        #expect(!bucket.take(now: 0).allowed)
        #expect(bucket.take(now: 1).allowed)
        #expect(!bucket.take(now: 1).allowed)
        // Never more than the capacity, however long it waits.
        var count = 0
        while bucket.take(now: 10_000).allowed { count += 1 }
        #expect(count == 60)
    }

    @Test func chargesAfterTheFactCanGoNegative() {
        var bucket = TokenBucket.perMinute(1000, now: 0)
        #expect(bucket.check(now: 0).allowed)
        bucket.charge(1500, now: 0)
        let refused = bucket.check(now: 0)
        #expect(!refused.allowed)
        #expect(refused.remaining == 0)
        // 500 tokens short at 1000/min: 30 s (plus a hair).
        #expect(refused.retryAfterSeconds > 29.9 && refused.retryAfterSeconds < 30.1)
        #expect(bucket.check(now: 31).allowed)
    }

    @Test func idleMeansFull() {
        var bucket = TokenBucket.perMinute(10, now: 0)
        #expect(bucket.isIdle(now: 0))
        _ = bucket.take(now: 0)
        #expect(!bucket.isIdle(now: 1))
        #expect(bucket.isIdle(now: 6))
    }

    @Test func resetStrings() {
        #expect(rateLimitResetString(0.25) == "250ms")
        #expect(rateLimitResetString(1) == "1s")
        #expect(rateLimitResetString(59.2) == "1m0s")
        #expect(rateLimitResetString(58.5) == "59s")
        #expect(rateLimitResetString(360) == "6m0s")
        #expect(rateLimitResetString(3_661) == "1h1m1s")
    }
}

@Suite("Client addresses")
struct ClientAddressTests {
    @Test func rangesMatch() throws {
        let v4 = try #require(IPRange("10.0.0.0/8"))
        #expect(v4.contains("10.1.2.3"))
        #expect(!v4.contains("11.0.0.1"))
        #expect(v4.contains("::ffff:10.0.0.1"))
        let single = try #require(IPRange("127.0.0.1"))
        #expect(single.contains("127.0.0.1"))
        #expect(!single.contains("127.0.0.2"))
        let v6 = try #require(IPRange("fd00::/8"))
        #expect(v6.contains("fd12::1"))
        #expect(!v6.contains("fe80::1"))
        #expect(IPRange("not-an-ip") == nil)
        #expect(IPRange("10.0.0.0/33") == nil)
    }

    @Test func forwardedForIsIgnoredFromUntrustedPeers() {
        let resolver = ClientAddressResolver(trusted: [IPRange("127.0.0.1")!])
        #expect(resolver.clientAddress(peer: "192.0.2.7", forwardedFor: ["1.2.3.4"]) == "192.0.2.7")
    }

    @Test func forwardedForFromATrustedProxyGivesTheRightmostUntrustedHop() {
        let resolver = ClientAddressResolver(trusted: [IPRange("127.0.0.1")!, IPRange("10.0.0.0/8")!])
        // The client claims 6.6.6.6; the trusted proxy chain saw 203.0.113.9.
        #expect(resolver.clientAddress(peer: "127.0.0.1", forwardedFor: ["6.6.6.6, 203.0.113.9", "10.0.0.5"]) == "203.0.113.9")
        #expect(resolver.clientAddress(peer: "127.0.0.1", forwardedFor: []) == "127.0.0.1")
        #expect(resolver.clientAddress(peer: "127.0.0.1", forwardedFor: ["garbage"]) == "127.0.0.1")
    }

    @Test func noTrustedProxiesMeansThePeer() {
        let resolver = ClientAddressResolver(trusted: [])
        #expect(resolver.clientAddress(peer: "127.0.0.1", forwardedFor: ["1.2.3.4"]) == "127.0.0.1")
    }
}
