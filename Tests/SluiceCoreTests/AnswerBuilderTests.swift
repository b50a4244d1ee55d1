import Testing
@testable import SluiceCore

@Suite("Canonical answers from streams")
struct AnswerBuilderTests {
    let answer = Generation.Answer(
        id: "msg_1", model: "m",
        content: [
            .reasoning(Generation.Reasoning(text: "think", signature: "sig")), .text("Hello there"),
            .toolCall(Generation.ToolCall(id: "call_1", name: "f", arguments: #"{"a":1}"#)),
        ],
        stopReason: .toolUse, usage: Generation.Usage(promptTokens: 3, completionTokens: 4))

    /// A cached answer replayed as deltas and rebuilt is the same answer: the cache loses nothing.
    @Test func deltasRebuildTheAnswer() {
        var builder = Generation.AnswerBuilder()
        for delta in answer.deltas { builder.observe(delta) }
        #expect(builder.answer == answer)
    }

    @Test func piecesJoinAndArgumentsConcatenate() {
        var builder = Generation.AnswerBuilder()
        let deltas: [Generation.Delta] = [
            .messageStart(id: "x", model: "m", usage: nil), .text("He"), .text("llo"), .toolCallStart(index: 0, id: "c", name: "f"),
            .toolCallArguments(index: 0, #"{"a""#), .toolCallArguments(index: 0, ":1}"),
            .finish(.toolUse, stopSequence: nil, usage: Generation.Usage(promptTokens: 1, completionTokens: 2)),
        ]
        for delta in deltas { builder.observe(delta) }
        #expect(builder.answer?.text == "Hello")
        #expect(builder.answer?.toolCalls.first?.arguments == #"{"a":1}"#)
    }

    /// Truncated or failed streams are never cached.
    @Test func onlyAFinishedStreamYieldsAnAnswer() {
        var builder = Generation.AnswerBuilder()
        builder.observe(.text("partial"))
        #expect(builder.answer == nil)
        builder.observe(.error(.upstreamFailed()))
        builder.observe(.finish(.endTurn, stopSequence: nil, usage: nil))
        #expect(builder.answer == nil)
    }
}
