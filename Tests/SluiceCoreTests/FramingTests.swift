import NIOCore
import Testing
@testable import SluiceCore

@Suite struct FramingTests {
    @Test func lineSplitterHandlesPartialLinesAndCRLF() throws {
        var splitter = LineSplitter()
        splitter.append(buffer("ab"))
        #expect(try splitter.nextLine() == nil)
        splitter.append(buffer("c\r\nde\nf"))
        #expect(try splitter.nextLine().map { String(buffer: $0) } == "abc")
        #expect(try splitter.nextLine().map { String(buffer: $0) } == "de")
        #expect(try splitter.nextLine() == nil)
        #expect(splitter.remainder().map { String(buffer: $0) } == "f")
        #expect(splitter.remainder() == nil)
    }

    @Test func lineSplitterBoundsLineLength() {
        var splitter = LineSplitter(maxLineBytes: 8)
        splitter.append(buffer("0123456789"))
        #expect(throws: FramingError.self) { try splitter.nextLine() }
    }

    @Test func sseDecoderFollowsTheSpec() throws {
        var decoder = SSEDecoder()
        let events = try decoder.feed(buffer(": comment\nevent: error\ndata: line1\ndata: line2\n\ndata:x\n\nid: 3\n\n"))
        #expect(events == [ServerSentEvent(event: "error", data: "line1\nline2"), ServerSentEvent(data: "x")])
    }

    @Test func sseDecoderIsIndifferentToChunkBoundaries() throws {
        let text = "data: {\"a\":1}\n\nevent: e\ndata: two\r\n\r\ndata: [DONE]\n\n"
        var whole = SSEDecoder()
        let expected = try whole.feed(buffer(text))
        #expect(expected.count == 3)
        let bytes = Array(text.utf8)
        for split in 1..<bytes.count {
            var decoder = SSEDecoder()
            let events = try decoder.feed(ByteBuffer(bytes: bytes[..<split])) + decoder.feed(ByteBuffer(bytes: bytes[split...]))
            #expect(events == expected, "split at \(split)")
        }
    }

    @Test func sseEncoderSplitsMultilineData() throws {
        var out = ByteBuffer()
        SSEEncoder.write(ServerSentEvent(event: "x", data: "a\nb"), into: &out)
        #expect(String(buffer: out) == "event: x\ndata: a\ndata: b\n\n")
        var decoder = SSEDecoder()
        #expect(try decoder.feed(out) == [ServerSentEvent(event: "x", data: "a\nb")])
    }
}

@Suite struct ValueParsingTests {
    @Test func sizes() {
        #expect(ValueParsing.bytes("1024") == 1024)
        #expect(ValueParsing.bytes("4MiB") == 4 * 1_048_576)
        #expect(ValueParsing.bytes("64 MB") == 64_000_000)
        #expect(ValueParsing.bytes("1.5KiB") == 1536)
        #expect(ValueParsing.bytes("lots") == nil)
        #expect(ValueParsing.bytes("5XB") == nil)
    }

    @Test func durations() {
        #expect(ValueParsing.duration("300s") == .seconds(300))
        #expect(ValueParsing.duration("250ms") == .milliseconds(250))
        #expect(ValueParsing.duration("1h30m") == .seconds(5400))
        #expect(ValueParsing.duration("2.5") == .milliseconds(2500))
        #expect(ValueParsing.duration("soon") == nil)
        #expect(ValueParsing.duration("-1") == nil)
    }

    @Test func booleansAndLists() {
        #expect(ValueParsing.bool("Yes") == true)
        #expect(ValueParsing.bool("off") == false)
        #expect(ValueParsing.bool("maybe") == nil)
        #expect(ValueParsing.list(" a, b,,c ") == ["a", "b", "c"])
    }

    @Test func dotEnv() {
        let parsed = DotEnv.parse("""
            # comment
            SLUICE_PORT=9000
            export SLUICE_HOST="0.0.0.0"
            SLUICE_LOG_LEVEL=debug # trailing comment
            SLUICE_MASTER_KEY='a#b'
            garbage line
            """)
        #expect(parsed == ["SLUICE_PORT": "9000", "SLUICE_HOST": "0.0.0.0", "SLUICE_LOG_LEVEL": "debug", "SLUICE_MASTER_KEY": "a#b"])
    }
}
