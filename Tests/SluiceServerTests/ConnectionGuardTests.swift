import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SluiceServer

/// The connection guard on an embedded channel, whose clock only moves when the test moves it.
@Suite struct ConnectionGuardTests {
    let metrics = GatewayMetrics()
    let channel = EmbeddedChannel()

    init() throws {
        let limits = ConnectionLimits(headerTimeout: .seconds(10), bodyTimeout: .seconds(30), idleTimeout: .seconds(75), maxConnections: 10)
        try channel.pipeline.syncOperations.addHandler(ConnectionGuard(limits: limits, metrics: metrics, logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    func request(_ version: HTTPVersion = .http1_1, headers: HTTPHeaders = [:], end: Bool = true) throws {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: version, method: .POST, uri: "/v1/chat/completions", headers: headers)))
        if end { try channel.writeInbound(HTTPServerRequestPart.end(nil)) }
    }

    func respond() throws {
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "0"])))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
    }

    /// The statuses of the response heads written so far.
    func writtenStatuses() throws -> [UInt] {
        var statuses: [UInt] = []
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            if case .head(let head) = part { statuses.append(head.status.code) }
        }
        return statuses
    }

    func closedCount(_ reason: ConnectionCloseReason) -> Bool {
        String(decoding: metrics.render(), as: UTF8.self).contains("sluice_client_connections_closed_total{reason=\"\(reason.rawValue)\"} 1")
    }

    /// A pooling client sends its next request once it has an answer's bytes, which can be before the answer's end
    /// passes the guard: that end must not be taken for an early answer to the next request, whose body would then
    /// be dropped (the soak saw one request in a few thousand arrive with an empty body).
    @Test func theNextRequestsBodyIsNotDroppedWhenThePreviousAnswerEndsLate() throws {
        try request()
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "0"])))
        try request(end: false)
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: #"{"model":"m"}"#)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        var parts: [String] = []
        while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head: parts.append("head")
            case .body(let body): parts.append(String(buffer: body))
            case .end: parts.append("end")
            }
        }
        #expect(parts == ["head", "end", "head", #"{"model":"m"}"#, "end"])
        #expect(channel.isActive)
        let heads = try writtenHeads()
        #expect(heads.first?.headers["connection"] == [])
    }

    /// The next request's `Connection: close` belongs to the next answer: the current one, ending after that request's
    /// head arrived, must not close the connection before the next request is answered.
    @Test func theNextRequestsConnectionCloseDoesNotCloseThePreviousAnswer() throws {
        try request()
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "0"])))
        try request(headers: ["connection": "close"])
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        #expect(channel.isActive)
        try respond()
        #expect(!channel.isActive)
        let heads = try writtenHeads()
        #expect(heads.count == 2)
        #expect(heads[0].headers["connection"] == [])
        #expect(heads[1].headers["connection"] == ["close"])
    }

    /// The response heads written so far.
    func writtenHeads() throws -> [HTTPResponseHead] {
        var heads: [HTTPResponseHead] = []
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            if case .head(let head) = part { heads.append(head) }
        }
        return heads
    }

    @Test func silentConnectionGets408AtTheHeaderTimeout() throws {
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(try writtenStatuses() == [408])
        #expect(!channel.isActive)
        #expect(closedCount(.headerTimeout))
    }

    @Test func keptAliveConnectionClosesAtTheIdleTimeoutWithoutAnAnswer() throws {
        try request()
        try respond()
        #expect(try writtenStatuses() == [200])
        channel.embeddedEventLoop.advanceTime(by: .seconds(74))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(try writtenStatuses() == [])
        #expect(closedCount(.idleTimeout))
    }

    @Test func http10RequestIsClosedAfterItsAnswer() throws {
        try request(.http1_0)
        try respond()
        #expect(!channel.isActive)
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("no response head")
            return
        }
        #expect(head.headers["connection"] == ["close"])
    }

    @Test func bodyTimeoutCountsOnlyWhileTheGatewayAsksForBytes() throws {
        try request(headers: ["content-length": "100"], end: false)
        // Nobody asked for the body (the handler is busy): no limit runs.
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(channel.isActive)
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(try writtenStatuses() == [408])
        #expect(!channel.isActive)
        #expect(closedCount(.bodyTimeout))
        #expect(throws: ClientConnectionError.bodyTimeout) { try channel.throwIfErrorCaught() }
    }

    @Test func earlyAnswerDropsTheRestOfTheBodyThenCloses() throws {
        try request(headers: ["content-length": "100"], end: false)
        _ = try channel.readInbound(as: HTTPServerRequestPart.self)
        try respond()
        #expect(channel.isActive)
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("no response head")
            return
        }
        #expect(head.headers["connection"] == ["close"])
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(repeating: 0, count: 100)))
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self) == nil)
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(!channel.isActive)
    }

    @Test func clientLeavingMidBodyFailsTheReadAsDisconnected() throws {
        try request(headers: ["content-length": "100"], end: false)
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(repeating: 0, count: 10)))
        channel.pipeline.fireChannelInactive()
        #expect(throws: ClientConnectionError.disconnected) { try channel.throwIfErrorCaught() }
    }

    @Test func endOfStreamMidBodyIsADisconnectEvenBeforeTheChannelIsInactive() throws {
        try request(headers: ["content-length": "100"], end: false)
        channel.pipeline.fireErrorCaught(HTTPParserError.invalidEOFState)
        #expect(throws: ClientConnectionError.disconnected) { try channel.throwIfErrorCaught() }
    }

    @Test func malformedHeadIsAnswered400() throws {
        channel.pipeline.fireErrorCaught(HTTPParserError.invalidHeaderToken)
        #expect(try writtenStatuses() == [400])
        #expect(!channel.isActive)
    }

    @Test func malformedBodyFailsTheReadAndClosesAfterTheAnswer() throws {
        try request(headers: ["transfer-encoding": "chunked"], end: false)
        channel.pipeline.fireErrorCaught(HTTPParserError.invalidChunkSize)
        #expect(throws: HTTPParserError.invalidChunkSize) { try channel.throwIfErrorCaught() }
        // What the client sends after the bad chunk fails the decoder again; the answer must still go out.
        channel.pipeline.fireErrorCaught(ByteToMessageDecoderError.dataReceivedInErrorState(HTTPParserError.invalidChunkSize, ByteBuffer()))
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .badRequest)))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        #expect(!channel.isActive)
    }
}
