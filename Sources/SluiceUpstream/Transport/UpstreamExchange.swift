import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// One request on the event-loop transport and its answer, as the caller sees it: the head, then body chunks
/// buffered until read.
///
/// `@unchecked Sendable`: the caller's task holds it, but every mutable member is touched on `eventLoop` only;
/// methods that may be called elsewhere (`cancel`, `nextChunk`) hop there first.
final class UpstreamExchange: @unchecked Sendable {
    /// Bytes read ahead of the caller before the connection stops reading (end-to-end backpressure for streams).
    static let highWater = 256 * 1024
    static let lowWater = 64 * 1024

    let eventLoop: any EventLoop
    let head: HTTPRequestHead
    let body: ByteBuffer?
    private let headPromise: EventLoopPromise<HTTPResponseHead>
    private var headSettled = false
    private var pending = CircularBuffer<ByteBuffer>()
    private var pendingBytes = 0
    /// nil while the answer is coming; then its end or its failure.
    private var outcome: Result<Void, any Error>?
    private var waiter: EventLoopPromise<ByteBuffer?>?
    private var deadline: Scheduled<Void>?
    /// The connection carrying the exchange until its answer ended.
    var connection: UpstreamConnectionHandler?
    /// The client whose leaving cancels this call; told when the call ends, so it forgets the call.
    let departure: ClientDeparture?

    init(eventLoop: any EventLoop, head: HTTPRequestHead, body: ByteBuffer?, departure: ClientDeparture?) {
        self.eventLoop = eventLoop
        self.departure = departure
        self.head = head
        self.body = body
        self.headPromise = eventLoop.makePromise()
    }

    var headFuture: EventLoopFuture<HTTPResponseHead> { headPromise.futureResult }
    var isFinished: Bool { outcome != nil }

    func scheduleDeadline(_ at: NIODeadline) {
        eventLoop.assertInEventLoop()
        deadline = eventLoop.scheduleTask(deadline: at) { [self] in
            fail(UpstreamTransportError.deadlineExceeded)
        }
    }

    func receive(_ head: HTTPResponseHead) {
        eventLoop.assertInEventLoop()
        guard !headSettled else { return }
        headSettled = true
        headPromise.succeed(head)
    }

    /// - Returns: whether the connection should stop reading until the caller catches up.
    func receive(_ chunk: ByteBuffer) -> Bool {
        eventLoop.assertInEventLoop()
        guard outcome == nil else { return false }
        if let waiter {
            self.waiter = nil
            waiter.succeed(chunk)
            return false
        }
        pending.append(chunk)
        pendingBytes += chunk.readableBytes
        return pendingBytes > Self.highWater
    }

    func finish() {
        eventLoop.assertInEventLoop()
        guard outcome == nil else { return }
        outcome = .success(())
        departure?.unwatch(ObjectIdentifier(self))
        deadline?.cancel()
        deadline = nil
        if !headSettled {
            headSettled = true
            headPromise.fail(UpstreamTransportError.remoteConnectionClosed)
        }
        if let waiter {
            self.waiter = nil
            waiter.succeed(nil)
        }
    }

    /// Ends the exchange with `error` (the head's waiter gets it, or else the body's reader, after the chunks that
    /// arrived before it: a stream cut midway delivers what it sent) and drops its connection.
    func fail(_ error: any Error) {
        eventLoop.preconditionInEventLoop()
        guard outcome == nil else { return }
        outcome = .failure(error)
        departure?.unwatch(ObjectIdentifier(self))
        deadline?.cancel()
        deadline = nil
        if let connection {
            self.connection = nil
            connection.abort(self)
        }
        if !headSettled {
            headSettled = true
            headPromise.fail(error)
        }
        if let waiter {
            self.waiter = nil
            waiter.fail(error)
        }
    }

    /// Ends the exchange from any thread: its caller was cancelled, its client left, or its reader dropped the body
    /// before the end (then the rest of the answer is not wanted and the connection cannot be reused). No-op once the
    /// answer has ended.
    func cancel() {
        eventLoop.execute { self.fail(CancellationError()) }
    }

    /// What the reader finds: a chunk, the end, the failure, or nothing yet.
    enum Poll {
        case chunk(ByteBuffer)
        case end
        case failed(any Error)
        case wait
    }

    /// The next chunk if one is here; on `eventLoop` only.
    func poll() -> Poll {
        eventLoop.assertInEventLoop()
        if let chunk = pending.popFirst() {
            pendingBytes -= chunk.readableBytes
            if pendingBytes < Self.lowWater { connection?.resumeReading() }
            return .chunk(chunk)
        }
        switch outcome {
        case .success?: return .end
        case .failure(let error)?: return .failed(error)
        case nil: return .wait
        }
    }

    /// The next chunk, nil at the end of the answer.
    func nextChunk() -> EventLoopFuture<ByteBuffer?> {
        guard eventLoop.inEventLoop else { return eventLoop.flatSubmit { self.nextChunk() } }
        switch poll() {
        case .chunk(let chunk): return eventLoop.makeSucceededFuture(chunk)
        case .end: return eventLoop.makeSucceededFuture(nil)
        case .failed(let error): return eventLoop.makeFailedFuture(error)
        case .wait:
            let promise = eventLoop.makePromise(of: ByteBuffer?.self)
            waiter = promise
            return promise.futureResult
        }
    }
}

/// An answer body on the event-loop transport, as AsyncHTTPClient's `HTTPClientResponse.Body` carries it.
struct UpstreamAnswerBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    /// Abandons the exchange when the body is dropped unread, so its connection does not wait on a reader forever.
    final class Owner: Sendable {
        let exchange: UpstreamExchange
        init(_ exchange: UpstreamExchange) { self.exchange = exchange }
        deinit { exchange.cancel() }
    }

    let owner: Owner

    init(_ exchange: UpstreamExchange) {
        owner = Owner(exchange)
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        let owner: Owner

        mutating func next() async throws -> ByteBuffer? {
            let exchange = owner.exchange
            if exchange.eventLoop.inEventLoop {
                switch exchange.poll() {
                case .chunk(let chunk): return chunk
                case .end: return nil
                case .failed(let error): throw error
                case .wait: break
                }
            }
            try Task.checkCancellation()
            return try await withTaskCancellationHandler {
                try await exchange.nextChunk().get()
            } onCancel: {
                exchange.cancel()
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(owner: owner)
    }
}
