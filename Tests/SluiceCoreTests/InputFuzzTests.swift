import Foundation
import NIOCore
import Testing
@testable import SluiceCore

/// Property tests over everything that parses client text: fed extreme and random values from a fixed seed, no
/// parser may trap (a trap ends the test process, so running them is the assertion), and each either yields a
/// finite in-range value or refuses with nil or a 400.
///
/// The seed is fixed so a failure replays; change it locally to explore, not in CI.
@Suite struct InputFuzzTests {
    static let seed: UInt64 = 0x5EED_2026_1129_0001

    /// SplitMix64 (``SeededGenerator``): tiny, fast and the same on every platform, unlike the system generator.
    typealias SplitMix64 = SeededGenerator

    /// Numbers as clients have sent them to break parsers.
    static let extremeNumbers: [String] = [
        "nan", "NaN", "inf", "-inf", "infinity", "-0", "0", "-1", "1e308", "1e999", "-1e999", "1e-999", "1.7976931348623157e308",
        "1.8e308", "4.9e-324", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
        String(repeating: "9", count: 30), String(repeating: "9", count: 5000), "0." + String(repeating: "0", count: 5000) + "1",
        "1e99999999999999999999", "0x1p3", "1.5", ".5", "5.", "+5", "1e30", "99999999999999999999", "00", "-", "1e", "1e+",
    ]

    static let units = ["", "ms", "s", "m", "h", "d", "KiB", "MiB", "GiB", "kb", "x", "d1s", "h30m", " "]

    /// Some client text: an extreme number with a unit, a random byte string, or a mix.
    static func text(_ rng: inout SplitMix64) -> String {
        switch rng.next() % 4 {
        case 0: return extremeNumbers.randomElement(using: &rng)! + units.randomElement(using: &rng)!
        case 1:
            let bytes = (0..<Int(rng.next() % 24)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            return String(decoding: bytes, as: UTF8.self)
        case 2:
            let digits = (0..<Int(rng.next() % 40 + 1)).map { _ in Character(String(rng.next() % 10)) }
            return String(digits) + units.randomElement(using: &rng)!
        default:
            return "-" + extremeNumbers.randomElement(using: &rng)! + units.randomElement(using: &rng)!
        }
    }

    @Test func valueParsersNeverTrapAndStayInRange() {
        var rng = SplitMix64(state: Self.seed)
        var inputs = Self.extremeNumbers.flatMap { n in Self.units.map { n + $0 } }
        for _ in 0..<4_000 { inputs.append(Self.text(&rng)) }
        let now = 1_700_000_000.0
        for text in inputs {
            if let d = ValueParsing.duration(text) {
                #expect(d >= .zero && d <= ValueParsing.maxDuration, "duration(\(text.debugDescription)) = \(d)")
            }
            if let b = ValueParsing.bytes(text) {
                #expect(b >= 0 && b <= ValueParsing.maxBytes, "bytes(\(text.debugDescription)) = \(b)")
            }
            for moment in [TimeArgument.past(text, now: now), TimeArgument.future(text, now: now)] {
                if let moment { #expect(moment.isFinite, "\(text.debugDescription) gave \(moment)") }
            }
            do throws(APIError) {
                try KeyTerms(name: "k", expires: text).check(now: now)
            } catch {
                #expect(error.status == 400)
                #expect(error.param == "expires")
            }
        }
    }

    static let validBodies: [(String, String)] = [
        (
            "chat",
            #"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":0.5,"top_p":1,"max_tokens":10,"n":1,"seed":7,"stop":["x"],"presence_penalty":0,"frequency_penalty":0,"stream":false,"tool_choice":"auto","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"logit_bias":{"50256":-1},"logprobs":true,"top_logprobs":2,"user":"u"}"#
        ),
        (
            "completion",
            #"{"model":"m","prompt":["a","b"],"max_tokens":5,"temperature":1,"best_of":2,"n":1,"logprobs":1,"echo":false,"suffix":"s","logit_bias":{"1":2}}"#
        ),
        ("embeddings", #"{"model":"e","input":["one","two"],"dimensions":8,"encoding_format":"float"}"#),
    ]

    static func decode(_ kind: String, _ body: ByteBuffer) throws(APIError) {
        switch kind {
        case "chat":
            let r = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: body)
            for value in [r.temperature, r.topP, r.presencePenalty, r.frequencyPenalty].compactMap({ $0 }) { #expect(value.isFinite) }
            if let m = r.tokenLimit { #expect(m >= 1) }
        case "completion":
            let r = try RequestDecoding.decodeValidated(CompletionRequest.self, from: body)
            for value in [r.temperature, r.topP].compactMap({ $0 }) { #expect(value.isFinite) }
        default:
            let r = try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: body)
            #expect((1...EmbeddingsRequest.maxInputs).contains(r.input.values.count))
            #expect(!r.input.values.contains(""))
        }
    }

    /// One random change to a valid body: an extreme number or string for a value, a random byte run, a dropped or
    /// repeated span, a duplicated key.
    static func mutate(_ body: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var out = body
        let at = Int(rng.next() % UInt64(out.count + 1))
        switch rng.next() % 7 {
        case 0, 1:
            // Replace the value after a random ':' with something extreme.
            guard let colon = out.indices.filter({ out[$0] == UInt8(ascii: ":") }).randomElement(using: &rng) else { break }
            var end = colon + 1
            var depth = 0
            while end < out.count {
                let byte = out[end]
                if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") { depth += 1 }
                if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                    if depth == 0 { break }
                    depth -= 1
                }
                if byte == UInt8(ascii: ","), depth == 0 { break }
                end += 1
            }
            let replacements = extremeNumbers + [
                #""""#, #""\ud800""#, #""\u0000""#, #"[]"#, #"{}"#, #"[""]"#, "null", "true", #""x""#, "123",
                "[" + Array(repeating: "1", count: 3000).joined(separator: ",") + "]",
            ]
            out.replaceSubrange((colon + 1)..<end, with: Array(replacements.randomElement(using: &rng)!.utf8))
        case 2:
            let bytes = (0..<Int(rng.next() % 8 + 1)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            out.insert(contentsOf: bytes, at: at)
        case 3:
            out.removeSubrange(at..<min(out.count, at + Int(rng.next() % 6 + 1)))
        case 4:
            // Repeat the first member right after the opening brace: a duplicate key.
            if let comma = out.firstIndex(of: UInt8(ascii: ",")) {
                out.insert(contentsOf: Array(out[1...comma]), at: comma + 1)
            }
        case 5:
            out = Array(out.prefix(at))
        default:
            out[min(at, out.count - 1)] = UInt8(truncatingIfNeeded: rng.next())
        }
        return out
    }

    @Test func requestDecodersNeverTrapAndRefuseWith400() {
        var rng = SplitMix64(state: Self.seed)
        var refused = 0
        for round in 0..<3_000 {
            let (kind, valid) = Self.validBodies[round % Self.validBodies.count]
            var body = Array(valid.utf8)
            for _ in 0..<Int(rng.next() % 3 + 1) { body = Self.mutate(body, &rng) }
            do throws(APIError) {
                try Self.decode(kind, ByteBuffer(bytes: body))
            } catch {
                refused += 1
                #expect(error.status == 400, "\(kind) \(String(decoding: body, as: UTF8.self).prefix(300)): \(error)")
            }
        }
        // The mutations are meant to break things; if nearly all pass, they no longer test anything.
        #expect(refused > 1_000)
    }

    /// Whatever the body check accepts is JSON to Foundation too: it never waves through what the decoder then
    /// misreads.
    @Test func bodyCheckAcceptsOnlyJSON() {
        var rng = SplitMix64(state: Self.seed ^ 0xB0D1)
        for round in 0..<3_000 {
            var body = Array(Self.validBodies[round % Self.validBodies.count].1.utf8)
            for _ in 0..<Int(rng.next() % 3 + 1) { body = Self.mutate(body, &rng) }
            let accepted = body.withUnsafeBytes { bytes in
                do throws(JSONBodyCheck.Fault) {
                    try JSONBodyCheck.check(bytes)
                    return true
                } catch {
                    return false
                }
            }
            if accepted {
                #expect(
                    (try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])) != nil,
                    "accepted \(String(decoding: body, as: UTF8.self).prefix(300))")
            }
        }
    }
}
