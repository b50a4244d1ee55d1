import NIOCore
import SluiceCore
import SluiceUpstream
import Testing

@Suite("Responses pass-through")
struct ResponsesPassthroughTests {
    /// A Responses stream as an upstream that serves the API itself sends it.
    func upstreamStream(complete: Bool) -> ByteBuffer {
        var encoder = OpenAIResponses.StreamEncoder(id: "resp_up", model: "m", createdAt: 1)
        var out = ByteBuffer()
        encoder.write(.messageStart(id: nil, model: "m", usage: nil), into: &out)
        encoder.write(.text("Hello"), into: &out)
        if complete {
            encoder.write(.finish(.endTurn, stopSequence: nil, usage: Generation.Usage(promptTokens: 7, completionTokens: 2)), into: &out)
        }
        return out
    }

    @Test func bytesPassUntouchedAndUsageIsRead() throws {
        var translator = ResponsesStreamPassthrough()
        let input = upstreamStream(complete: true)
        var output = ByteBuffer()
        // Split mid-event, as a network would.
        try translator.translate(input.getSlice(at: 0, length: 40)!, into: &output)
        try translator.translate(input.getSlice(at: 40, length: input.readableBytes - 40)!, into: &output)
        try translator.finish(into: &output)
        #expect(output == input)
        #expect(translator.usage == Usage(promptTokens: 7, completionTokens: 2))
    }

    @Test func aStreamWithoutItsTerminalEventIsATruncation() throws {
        var translator = ResponsesStreamPassthrough()
        var output = ByteBuffer()
        try translator.translate(upstreamStream(complete: false), into: &output)
        #expect(throws: APIError.self) { try translator.finish(into: &output) }
        #expect(String(buffer: translator.failureFrame(for: .upstreamFailed())).contains("response.failed"))
    }
}
