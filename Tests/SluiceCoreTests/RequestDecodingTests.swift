import NIOCore
import Testing
@testable import SluiceCore

@Suite struct RequestDecodingTests {
    func decodeError(_ body: String) -> APIError? {
        do {
            _ = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: buffer(body))
            return nil
        } catch {
            return error
        }
    }

    @Test func validRequestDecodesAndIgnoresUnknownFields() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"max_tokens":10,"vendor_extension":{"a":1}}"#
        let request = try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: buffer(body))
        #expect(request.model == "m")
        #expect(request.messages[0].content?.text == "hi")
        #expect(request.temperature == 0.5)
        #expect(request.tokenLimit == 10)
    }

    @Test func malformedJSONIsInvalidJSON() {
        let error = decodeError(#"{"model": "m", "messages": ["#)
        #expect(error?.status == 400)
        #expect(error?.code == "invalid_json")
        #expect(error?.param == nil)
    }

    @Test func emptyAndNonObjectBodiesAreInvalidJSON() {
        #expect(decodeError("")?.code == "invalid_json")
        #expect(decodeError("[1,2]")?.message.contains("JSON object") == true)
        #expect(decodeError("not json")?.code == "invalid_json")
    }

    @Test func missingFieldsAreNamed() {
        #expect(decodeError(#"{"messages":[{"role":"user","content":"x"}]}"#) == .missingField("model"))
        #expect(decodeError(#"{"model":"m"}"#) == .missingField("messages"))
        #expect(decodeError(#"{"model":"m","messages":[{"content":"x"}]}"#)?.param == "messages[0].role")
    }

    @Test func wrongTypesAreNamed() {
        let error = decodeError(#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#)
        #expect(error?.code == "invalid_type")
        #expect(error?.param == "temperature")
        #expect(error?.message.contains("number") == true)
        #expect(decodeError(#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.5}"#)?.param == "max_tokens")
        #expect(decodeError(#"{"model":5,"messages":[]}"#)?.param == "model")
        #expect(decodeError(#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#)?.param == "stream")
    }

    @Test(arguments: [
        (#""temperature":5"#, "temperature"), (#""temperature":-0.1"#, "temperature"), (#""top_p":1.5"#, "top_p"),
        (#""n":0"#, "n"), (#""max_tokens":0"#, "max_tokens"), (#""presence_penalty":3"#, "presence_penalty"),
        (#""frequency_penalty":-3"#, "frequency_penalty"), (#""max_completion_tokens":-1"#, "max_completion_tokens"),
        (#""stop":["a","b","c","d","e"]"#, "stop"), (#""response_format":{"type":"yaml"}"#, "response_format.type"),
    ])
    func outOfRangeValuesAreNamed(field: String, param: String) {
        let error = decodeError(#"{"model":"m","messages":[{"role":"user","content":"x"}],"# + field + "}")
        #expect(error?.code == "invalid_value")
        #expect(error?.param == param)
    }

    @Test func emptyMessagesAndBadRolesAreRejected() {
        #expect(decodeError(#"{"model":"m","messages":[]}"#)?.param == "messages")
        #expect(decodeError(#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#)?.param == "messages[0].role")
        #expect(decodeError(#"{"model":"","messages":[{"role":"user","content":"x"}]}"#)?.param == "model")
    }

    @Test func embeddingsValidation() throws {
        let ok = try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: buffer(#"{"model":"e","input":["a","b"]}"#))
        #expect(ok.input.values == ["a", "b"])
        #expect(throws: APIError.self) {
            try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: buffer(#"{"model":"e","input":[]}"#))
        }
        #expect(throws: APIError.self) {
            try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: buffer(#"{"model":"e","input":"a","encoding_format":"hex"}"#))
        }
    }

    @Test func errorBodyHasOpenAIShapeWithNullParam() throws {
        let body = try JSONEncoder().encode(APIError.invalidJSON("x").body)
        let value = try json(String(decoding: body, as: UTF8.self))
        #expect(value["error"]?["param"] == .null)
        #expect(value["error"]?["code"] == "invalid_json")
        #expect(value["error"]?["type"] == "invalid_request_error")
    }
}
import Foundation
