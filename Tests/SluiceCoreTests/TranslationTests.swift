import Foundation
import NIOCore
import Testing
@testable import SluiceCore

@Suite struct RequestTranslationTests {
    func chat(_ body: String) throws -> ChatCompletionRequest {
        try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: buffer(body))
    }

    /// A chat request as the Ollama upstream sends it: through the canonical model.
    func ollamaChat(_ request: ChatCompletionRequest) throws(APIError) -> Ollama.ChatRequest {
        try OllamaChat.ollamaRequest(OpenAIChat.canonicalRequest(request))
    }

    @Test func samplingOptionsMapToOllamaOptions() throws {
        let request = try chat(
            #"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"top_p":0.9,"seed":7,"max_tokens":33,"stop":"END","stream":true}"#)
        let native = try ollamaChat(request)
        #expect(native.options?.temperature == 0.2)
        #expect(native.options?.topP == 0.9)
        #expect(native.options?.seed == 7)
        #expect(native.options?.numPredict == 33)
        #expect(native.options?.stop == ["END"])
        #expect(native.stream == true)
        #expect(native.messages == [Ollama.Message(role: "user", content: "hi")])
    }

    /// Every accepted field is translated or refused by name: none is validated and then dropped.
    @Test func fieldsThatUsedToBeDroppedReachOllama() throws {
        let tools = #"[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]"#
        let base = #""model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"x","name":"lookup","content":"1"}]"#
        let none = try ollamaChat(chat("{\(base),\"tools\":\(tools),\"tool_choice\":\"none\"}"))
        #expect(none.tools == nil)
        let named = try ollamaChat(
            chat("{\(base),\"tools\":\(tools),\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"b\"}}}"))
        #expect(named.tools?.map(\.function.name) == ["b"])
        #expect(named.messages.last?.toolName == "lookup")
        let extra = try ollamaChat(
            chat("{\(base),\"reasoning_effort\":\"none\",\"keep_alive\":\"30m\",\"temperature\":0.5,\"options\":{\"num_ctx\":8192,\"temperature\":0.9}}"))
        #expect(extra.think == .bool(false))
        #expect(extra.keepAlive == "30m")
        #expect(extra.options?.extra["num_ctx"] == 8192)
        #expect(extra.options?.temperature == 0.5)
        let encoded = String(decoding: try JSONEncoder().encode(extra.options), as: UTF8.self)
        #expect(encoded.contains(#""temperature":0.5"#) && !encoded.contains("0.9"))
        #expect(try ollamaChat(chat("{\(base),\"reasoning_effort\":\"high\"}")).think == "high")
        let n = #expect(throws: APIError.self) { try ollamaChat(chat("{\(base),\"n\":2}")) }
        #expect(n?.param == "n")
        // What Ollama cannot do is refused by name, never dropped.
        for (extra, param) in [
            (#""logprobs":true"#, "logprobs"), (#""top_logprobs":2,"logprobs":true"#, "logprobs"), (#""logit_bias":{"1":5}"#, "logit_bias"),
        ] {
            let refused = #expect(throws: APIError.self) { try ollamaChat(chat("{\(base),\(extra)}")) }
            #expect(refused?.param == param)
        }
        let audio = #expect(throws: APIError.self) {
            try ollamaChat(
                chat(#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}}]}]}"#))
        }
        #expect(audio?.param == "messages[0].content[0].type")
        var seeded = try OpenAIChat.canonicalRequest(chat("{\(base),\"seed\":7}"))
        seeded.stream = false
        let anthropic = #expect(throws: APIError.self) { try AnthropicMessages.encodeRequest(seeded) }
        #expect(anthropic?.param == "seed")
        for (extra, param) in [(#""logprobs":true"#, "logprobs"), (#""keep_alive":"5m""#, "keep_alive")] {
            let refused = #expect(throws: APIError.self) {
                try AnthropicMessages.encodeRequest(OpenAIChat.canonicalRequest(chat("{\(base),\(extra)}")))
            }
            #expect(refused?.param == param)
        }
        #expect(try OpenAIChat.canonicalRequest(chat("{\(base),\"reasoning_effort\":\"high\"}")).reasoning == .effort(.high))
        let embed = OllamaRequestTranslation.embed(
            try RequestDecoding.decodeValidated(EmbeddingsRequest.self, from: buffer(#"{"model":"e","input":"x","dimensions":256}"#)))
        #expect(embed.dimensions == 256)
    }

    @Test func noOptionsMeansNoOptionsObject() throws {
        let native = try ollamaChat(chat(#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#))
        #expect(native.options == nil)
        #expect(native.stream == false)
    }

    @Test func responseFormatBecomesFormat() throws {
        let jsonObject = try ollamaChat(
            chat(#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#))
        #expect(jsonObject.format == "json")
        let schema = try ollamaChat(
            chat(#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}"#))
        #expect(schema.format == ["type": "object"])
    }

    @Test func toolsAndToolCallsTranslate() throws {
        let request = try chat(
            #"""
            {"model":"m","tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object","required":["city"]}}}],
             "messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"weather?"},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"sunny"}]}
            """#)
        let native = try ollamaChat(request)
        #expect(native.tools?.first?.function.name == "weather")
        #expect(native.messages[0].role == "system")
        #expect(native.messages[2].toolCalls?.first?.function.arguments == ["city": "Paris"])
        #expect(native.messages[2].content == "")
        #expect(native.messages[3].toolName == "weather")
    }

    @Test func dataURLImagesBecomeImagesAndRemoteURLsAreRefused() throws {
        let native = try ollamaChat(
            chat(#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#))
        #expect(native.messages[0].images == ["AAAA"])
        #expect(native.messages[0].content == "what?")
        #expect(throws: APIError.self) {
            try ollamaChat(
                chat(#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#))
        }
    }

    @Test func completionTakesOnePrompt() throws {
        let one = try RequestDecoding.decodeValidated(CompletionRequest.self, from: buffer(#"{"model":"m","prompt":"say","max_tokens":5}"#))
        #expect(try OllamaRequestTranslation.generate(one).prompt == "say")
        #expect(try OllamaRequestTranslation.generate(one).options?.numPredict == 5)
        let many = try RequestDecoding.decodeValidated(CompletionRequest.self, from: buffer(#"{"model":"m","prompt":["a","b"]}"#))
        #expect(throws: APIError.self) { try OllamaRequestTranslation.generate(many) }
    }
}

@Suite struct ResponseTranslationTests {
    @Test func chatAnswerKeepsContentAndUsage() {
        var answer = Ollama.ChatResponse(model: "m", createdAt: nil, message: .init(role: "assistant", content: "hello"), done: true)
        answer.promptEvalCount = 3
        answer.evalCount = 5
        answer.doneReason = "length"
        let out = OpenAIChat.chatResponse(OllamaChat.canonicalAnswer(answer, identity: identity), identity: identity)
        #expect(out.id == identity.id)
        #expect(out.choices[0].message.content == .text("hello"))
        #expect(out.choices[0].finishReason == "length")
        #expect(out.usage == Usage(promptTokens: 3, completionTokens: 5))
        #expect(out.usage?.totalTokens == 8)
    }

    @Test func toolCallsBecomeOpenAIToolCalls() throws {
        let answer = Ollama.ChatResponse(
            model: "m", createdAt: nil,
            message: .init(role: "assistant", content: "", toolCalls: [.init(function: .init(name: "weather", arguments: ["city": "Paris"]))]),
            done: true)
        let out = OpenAIChat.chatResponse(OllamaChat.canonicalAnswer(answer, identity: identity), identity: identity)
        let call = try #require(out.choices[0].message.toolCalls?.first)
        #expect(call.function.name == "weather")
        #expect(try json(call.function.arguments) == ["city": "Paris"])
        #expect(out.choices[0].message.content == nil)
        #expect(out.choices[0].finishReason == "tool_calls")
        // OpenAI clients expect the content key even when it is null.
        let encoded = String(decoding: try JSONEncoder().encode(out), as: UTF8.self)
        #expect(encoded.contains(#""content":null"#))
    }

    @Test func embeddingsAsFloatsAndBase64() throws {
        let answer = Ollama.EmbedResponse(model: "e", embeddings: [[1, 0.5]], promptEvalCount: 2)
        let floats = OllamaResponseTranslation.embeddings(answer, model: "e", encodingFormat: nil)
        #expect(floats.data[0].embedding == .floats([1, 0.5]))
        #expect(floats.usage.promptTokens == 2)
        let base64 = OllamaResponseTranslation.embeddings(answer, model: "e", encodingFormat: "base64")
        guard case .base64(let text) = base64.data[0].embedding, let data = Data(base64Encoded: text) else {
            Issue.record("expected base64")
            return
        }
        let values = data.withUnsafeBytes { raw in (0..<2).map { Float(bitPattern: UInt32(littleEndian: raw.load(fromByteOffset: $0 * 4, as: UInt32.self))) } }
        #expect(values == [1, 0.5])
    }
}
