import Foundation
import NIOCore
import Testing
@testable import SluiceCore

/// The input-validation findings of the black-box probe, each value as it was sent.
@Suite struct InputValidationTests {
    static let messages = #""messages":[{"role":"user","content":"hi"}]"#

    func chatError(_ body: String) -> APIError? {
        do {
            _ = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: buffer(body))
            return nil
        } catch {
            return error
        }
    }

    func chatError(extra field: String) -> APIError? {
        chatError(#"{"model":"m","# + Self.messages + "," + field + "}")
    }

    func completionError(extra field: String) -> APIError? {
        do {
            _ = try RequestDecoding.decodeValidated(CompletionRequest.self, from: buffer(#"{"model":"m","prompt":"p","# + field + "}"))
            return nil
        } catch {
            return error
        }
    }

    func embeddingsError(_ body: String) -> APIError? {
        do {
            _ = try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: buffer(body))
            return nil
        } catch {
            return error
        }
    }

    // MARK: Finding 1: numbers that trapped

    @Test(arguments: [
        "1e30", "inf", "-inf", "infinity", "nan", "-0", "-5s", "1e300", "99999999999999999999d", "99999999999999999999",
        String(repeating: "9", count: 5000), "36526d", "0x10", "1e3", "١٢", "5x", "", "s", "1..5s", ".",
    ])
    func durationsOutOfRangeOrMalformedAreNil(text: String) {
        #expect(ValueParsing.duration(text) == nil)
    }

    @Test func durationsInRangeStillParse() {
        #expect(ValueParsing.duration("250ms") == .milliseconds(250))
        #expect(ValueParsing.duration("1h30m") == .seconds(5400))
        #expect(ValueParsing.duration("0.5") == .milliseconds(500))
        #expect(ValueParsing.duration("0") == .zero)
        #expect(ValueParsing.duration("7d") == .seconds(7 * 86_400))
        #expect(ValueParsing.duration("36525d") == ValueParsing.maxDuration)
        // Each part is in range but the sum is not.
        #expect(ValueParsing.duration("36525d1s") == nil)
    }

    @Test(arguments: ["1e30", "inf", "nan", "-1", "99999999999999999999", String(repeating: "9", count: 5000), "2TiB", "1e3", "4XB"])
    func sizesOutOfRangeOrMalformedAreNil(text: String) {
        #expect(ValueParsing.bytes(text) == nil)
    }

    @Test func sizesInRangeStillParse() {
        #expect(ValueParsing.bytes("4MiB") == 4 * 1_048_576)
        #expect(ValueParsing.bytes("1024") == 1024)
        #expect(ValueParsing.bytes("1.5KiB") == 1536)
    }

    @Test func timeArgumentsRefuseWhatTheDurationRefuses() {
        for text in ["1e30", "inf", "99999999999999999999d", "1e300"] {
            #expect(TimeArgument.past(text, now: 1_700_000_000) == nil)
            #expect(TimeArgument.future(text, now: 1_700_000_000) == nil)
        }
        #expect(TimeArgument.past("24h", now: 1_700_000_000) == 1_699_913_600.0)
        #expect(TimeArgument.future("2030-01-01", now: 0) == 1_893_456_000.0)
    }

    @Test func keyTermsAreRangeChecked() throws {
        func param(_ terms: KeyTerms) -> String? {
            do throws(APIError) {
                try terms.check(now: 1_700_000_000)
                return nil
            } catch {
                return error.param
            }
        }
        #expect(param(KeyTerms(name: "k", expires: "1e300")) == "expires")
        #expect(param(KeyTerms(name: "k", expires: "99999999999999999999d")) == "expires")
        #expect(param(KeyTerms(name: "k", rpm: Int.max)) == "rpm")
        #expect(param(KeyTerms(name: "k", tpm: 0)) == "tpm")
        #expect(param(KeyTerms(name: "k", budgetUSD: .infinity)) == "budget_usd")
        #expect(param(KeyTerms(name: "k", budgetUSD: .nan)) == "budget_usd")
        #expect(param(KeyTerms(name: "k", budgetUSD: 1e300)) == "budget_usd")
        #expect(param(KeyTerms(name: "  ")) == "name")
        #expect(param(KeyTerms(name: "k", models: [""])) == "models")
        let issued = try KeyTerms(name: " k ", rpm: 5, budgetUSD: 2, models: ["a"], expires: "30d").issue(now: 1_000)
        #expect(issued.record.name == "k")
        #expect(issued.record.expiresAt == 2_593_000.0)
    }

    @Test func limitArithmeticSaturatesInsteadOfTrapping() {
        #expect(Int(saturating: .infinity) == .max)
        #expect(Int(saturating: -.infinity) == .min)
        #expect(Int(saturating: .nan) == 0)
        #expect(Int(saturating: 1e300) == .max)
        #expect(Int(saturating: Double(Int.max)) == .max)
        #expect(Int(saturating: 41.9) == 41)
        var bucket = TokenBucket.perMinute(Int.max, now: 0)
        #expect(bucket.take(now: 0).limit == .max)
        var slow = TokenBucket.perMinute(1, now: 0)
        slow.charge(1e300, now: 0)
        let decision = slow.check(now: 0)
        #expect(!decision.allowed)
        #expect(rateLimitResetString(decision.retryAfterSeconds).hasSuffix("s"))
        #expect(APIError.rateLimited("x", retryAfter: .infinity).retryAfter == .max)
    }

    // MARK: Finding 2: duplicate keys

    @Test(arguments: [
        (#"{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#, "model"),
        (#"{"model":"gpt-4o-mini","mo\u0064el":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#, "model"),
        (#"{"m\u006fdel":"a","model":"b","messages":[]}"#, "model"),
        (#"{"model":"m","messages":[{"role":"user","role":"system","content":"hi"}]}"#, "messages[0].role"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"user","content":"a","content":"b"}]}"#, "messages[1].content"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"a":{"b":1,"b":2}}}}"#,
            "response_format.json_schema.a.b"),
        (#"{"model":"m","messages":[],"stream":true,"\u0073tream":false}"#, "stream"),
    ])
    func duplicateKeysAreRefusedWithTheirPath(body: String, path: String) {
        let error = chatError(body)
        #expect(error?.status == 400)
        #expect(error?.code == "duplicate_key")
        #expect(error?.param == path)
        #expect(error?.message.contains("duplicate key") == true)
    }

    @Test func sameKeyInDifferentObjectsIsFine() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"type":{"type":"string"}}}}}]}"#
        #expect(chatError(body) == nil)
    }

    @Test func manyKeysInOneObjectAreIndexed() {
        // Past the linear search: a duplicate far from its first spelling is still found, and 20,000 keys stay fast.
        let keys = (0..<20_000).map { #""k\#($0)":1"# }.joined(separator: ",")
        #expect(chatError(#"{"model":"m","# + Self.messages + #","metadata":{"# + keys + "}}") == nil)
        let duplicated = #"{"model":"m","# + Self.messages + #","metadata":{"# + keys + #","k17":2}}"#
        #expect(chatError(duplicated)?.param == "metadata.k17")
    }

    @Test func adminAndNativeBodiesAreCheckedToo() {
        struct Probe: Decodable { var model: String? }
        #expect(throws: APIError.self) { try RequestDecoding.decode(Probe.self, from: buffer(#"{"model":"a","model":"b"}"#)) }
        #expect(throws: APIError.self) {
            try RequestDecoding.decode(Probe.self, from: buffer(#"{"model":"a","options":{"seed":1,"seed":2}}"#))
        }
    }

    // MARK: Finding 3: messages that name the field

    @Test func objectTypedFieldsSayObject() {
        #expect(chatError(extra: #""response_format":"json""#)?.message.contains("expected object") == true)
        #expect(chatError(extra: #""stream_options":[1]"#)?.message.contains("expected object") == true)
        let bias = chatError(extra: #""logit_bias":"x""#)
        #expect(bias?.param == "logit_bias")
        #expect(bias?.message.contains("expected object") == true)
        #expect(RequestDecoding.jsonTypeName([String: Int].self) == "object")
        #expect(RequestDecoding.jsonTypeName(String.self) == "string")
        #expect(RequestDecoding.jsonTypeName([String].self) == "array")
    }

    @Test func unionFieldsNameBothShapes() {
        let content = chatError(#"{"model":"m","messages":[{"role":"user","content":5}]}"#)
        #expect(content?.param == "messages[0].content")
        #expect(content?.message.contains("string or array of content parts") == true)
        #expect(chatError(extra: #""stop":5"#)?.message.contains("string or array of strings") == true)
        // An element of the right shape but wrong type is still blamed precisely.
        #expect(chatError(extra: #""stop":["a",5]"#)?.param == "stop[1]")
    }

    @Test(arguments: [
        (#"{"model":"m","messages":[{"role":"user","content":"\ud800"}]}"#, "not allowed"),
        (#"{"model":"m","messages":[{"role":"user","content":"a\udc00"}]}"#, "not allowed"),
        (#"{"model":"m","messages":[{"role":"user","content":"\ud800\u0041"}]}"#, "not allowed"),
        (#"{"model":"m","messages":[{"role":"user","content":"a\u0000b"}]}"#, "not allowed"),
        ("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\u{0}b\"}]}", "not allowed"),
        ("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\u{1}b\"}]}", "not allowed"),
    ])
    func forbiddenCharactersNameTheField(body: String, words: String) {
        let error = chatError(body)
        #expect(error?.status == 400)
        #expect(error?.param == "messages[0].content")
        #expect(error?.message.contains(words) == true)
    }

    @Test(arguments: [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE2, 0x82], [0xF4, 0x90, 0x80, 0x80], [0x80]] as [[UInt8]])
    func invalidUTF8NamesTheField(bytes: [UInt8]) {
        let body = Array(#"{"model":"m","messages":[{"role":"user","content":"a"#.utf8) + bytes + Array(#"b"}]}"#.utf8)
        do throws(APIError) {
            _ = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: ByteBuffer(bytes: body))
            Issue.record("accepted invalid UTF-8 \(bytes)")
        } catch {
            #expect(error.param == "messages[0].content")
            #expect(error.message.contains("UTF-8"))
        }
    }

    @Test func validUnicodeStillPasses() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"é € 😀 \ud83d\ude00 \u00e9"}]}"#
        let request = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: buffer(body))
        #expect(request.messages[0].content?.text == "é € 😀 😀 é")
    }

    @Test func numbersOutOfRangeNameTheField() {
        let temperature = chatError(extra: #""temperature":1e999"#)
        #expect(temperature?.param == "temperature")
        #expect(temperature?.message.contains("out of range") == true)
        let huge = chatError(extra: #""max_tokens":"# + String(repeating: "9", count: 5000))
        #expect(huge?.param == "max_tokens")
        #expect(huge?.message.contains("out of range") == true)
        let thirty = chatError(extra: #""max_tokens":"# + String(repeating: "9", count: 30))
        #expect(thirty?.param == "max_tokens")
        #expect(thirty?.message.contains("out of range") == true)
        #expect(chatError(extra: #""seed":1e300"#)?.param == "seed")
        #expect(chatError(extra: #""n":1.5"#) == .invalidType("n", expected: "integer"))
        #expect(chatError(extra: #""temperature":-1e999"#)?.param == "temperature")
        #expect(chatError(extra: #""temperature":1e308"#)?.param == "temperature")
        #expect(chatError(extra: #""temperature":1.7976931348623157e308"#)?.message.contains("between") == true)
        #expect(chatError(extra: #""temperature":1.8e308"#)?.message.contains("out of range") == true)
        // Below the least subnormal a non-zero number reads as 0, which Foundation refuses: named, like an overflow.
        #expect(chatError(extra: #""temperature":1e-999"#)?.param == "temperature")
        #expect(chatError(extra: #""temperature":4.9e-324"#) == nil)
        #expect(chatError(extra: #""temperature":0e-999"#) == nil)
        #expect(chatError(extra: #""temperature":-0"#) == nil)
        #expect(chatError(#"{"model":"m","messages":[{"role":"user","content":"hi","x":[1e999]}]}"#)?.param == "messages[0].x[0]")
    }

    @Test(arguments: [#""input":"""#, #""input":[""]"#, #""input":[]"#, #""input":["a",""]"#, #""input":5"#])
    func emptyOrWrongEmbeddingsInputNamesInput(field: String) {
        let error = embeddingsError(#"{"model":"e","# + field + "}")
        #expect(error?.status == 400)
        #expect(error?.param == "input")
    }

    @Test(arguments: [
        (#""tool_choice":123"#, "tool_choice"), (#""tool_choice":"sometimes""#, "tool_choice"),
        (#""tool_choice":{"type":"function"}"#, "tool_choice"), (#""logit_bias":"x""#, "logit_bias"),
        (#""logit_bias":{"x":1}"#, "logit_bias"), (#""logit_bias":{"50256":101}"#, "logit_bias"), (#""logprobs":"x""#, "logprobs"),
        (#""top_logprobs":3"#, "top_logprobs"), (#""logprobs":true,"top_logprobs":21"#, "top_logprobs"),
        (#""parallel_tool_calls":"yes""#, "parallel_tool_calls"),
        (#""messages":[{"role":"user","content":[{"type":"video"}]}]"#, "messages[0].content[0].type"),
        (#""messages":[{"role":"user","content":[{"type":"text"}]}]"#, "messages[0].content[0].text"),
        (#""response_format":{"type":"json_schema"}"#, "response_format.json_schema"),
        (#""tools":[{"type":"function","function":{"name":"f","parameters":"x"}}]"#, "tools[0].function.parameters"),
    ])
    func chatFieldsAreChecked(field: String, param: String) {
        let body = field.hasPrefix(#""messages""#) ? #"{"model":"m","# + field + "}" : #"{"model":"m","# + Self.messages + "," + field + "}"
        let error = chatError(body)
        #expect(error?.status == 400)
        #expect(error?.param == param)
        #expect(error?.message.contains("expected") == true || error?.message.contains("must") == true || error?.code == "missing_field")
    }

    @Test func validToolChoicesAndBiasesPass() {
        #expect(chatError(extra: #""tool_choice":"auto""#) == nil)
        #expect(chatError(extra: #""tool_choice":{"type":"function","function":{"name":"f"}}"#) == nil)
        #expect(chatError(extra: #""logit_bias":{"50256":-100},"logprobs":true,"top_logprobs":2"#) == nil)
    }

    @Test(arguments: [
        (#""best_of":-1"#, "best_of"), (#""best_of":1,"n":2"#, "best_of"), (#""logprobs":"x""#, "logprobs"), (#""logprobs":6"#, "logprobs"),
        (#""logit_bias":"x""#, "logit_bias"), (#""echo":"x""#, "echo"), (#""suffix":5"#, "suffix"), (#""prompt":5"#, "prompt"),
        (#""max_tokens":99999999999999999999"#, "max_tokens"),
    ])
    func completionFieldsAreChecked(field: String, param: String) {
        #expect(completionError(extra: field)?.param == param)
    }

    // MARK: Finding 4: embeddings inputs capped

    @Test func embeddingsInputsAreCappedAt2048() throws {
        let ok = #"{"model":"e","input":["# + Array(repeating: #""a""#, count: 2048).joined(separator: ",") + "]}"
        #expect(try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: buffer(ok)).input.values.count == 2048)
        let over = #"{"model":"e","input":["# + Array(repeating: #""a""#, count: 2049).joined(separator: ",") + "]}"
        let error = embeddingsError(over)
        #expect(error?.param == "input")
        #expect(error?.message.contains("2048") == true)
    }

    /// The cap is applied while scanning: the scan stops at item 2,049, whatever follows, even broken JSON.
    @Test func theCapStopsTheScanBeforeTheRest() {
        let body = #"{"model":"e","input":["# + Array(repeating: "1", count: 200_000).joined(separator: ",") + ",oops"
        #expect(embeddingsError(body)?.param == "input")
        // Only the top-level member is capped; a nested array of that name is not.
        #expect(
            (try? RequestDecoding.decode(
                JSONValue.self, from: buffer(#"{"x":{"input":["# + Array(repeating: "1", count: 3000).joined(separator: ",") + "]}}"))) != nil)
    }

    @Test func deepNestingIsRefusedAsJSON() {
        let deep = #"{"model":"m","messages":[],"x":"# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}"
        let error = chatError(deep)
        #expect(error?.code == "invalid_json")
        #expect(error?.message.contains("nested") == true)
    }
}
