#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import SluiceCore
import Synchronization

/// The bound on bytes of upstream answers held in memory at once, over every request (`max-buffered-bytes`).
///
/// Non-streamed answers are collected whole before they are translated and written, so N large answers in
/// parallel hold N times their size (the probe: three 43 MB embeddings answers peaked at 768 MiB). Each request's
/// ``AnswerBufferLease`` takes bytes from this budget as they arrive; a request whose next chunk would pass the bound
/// fails with 503 `gateway_overloaded` instead of growing the process. After a spike, when the budget's use falls
/// back to zero, the allocator is asked to return its free pages to the system, so resident memory follows.
public final class AnswerBufferBudget: Sendable {
    public let limit: Int
    private let used = Atomic<Int>(0)
    /// The most in use since memory was last returned to the system.
    private let peak = Atomic<Int>(0)
    /// Peaks smaller than this are not worth a trim.
    let trimThreshold: Int

    public init(limit: Int, trimThreshold: Int = 16 * 1_048_576) {
        self.limit = limit
        self.trimThreshold = trimThreshold
    }

    /// Bytes currently held.
    public var inUse: Int { used.load(ordering: .relaxed) }

    func reserve(_ bytes: Int) -> Bool {
        let after = used.wrappingAdd(bytes, ordering: .relaxed).newValue
        if after > limit {
            used.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        peak.max(after, ordering: .relaxed)
        return true
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        let after = used.wrappingSubtract(bytes, ordering: .relaxed).newValue
        guard after == 0, peak.load(ordering: .relaxed) >= trimThreshold else { return }
        peak.store(0, ordering: .relaxed)
        Self.returnFreeMemory()
    }

    /// glibc keeps freed large-answer pages in its arenas; `malloc_trim` hands them back. It walks every arena, so it
    /// runs on the thread pool, never on an event loop or the cooperative pool.
    static func returnFreeMemory() {
        guard let trim = mallocTrim else { return }
        NIOThreadPool.singleton.submit { _ in _ = trim(0) }
    }

    /// glibc's `malloc_trim`, looked up at run time: it is declared in `<malloc.h>`, which the Glibc module does not
    /// export, and other C libraries lack it (then memory is simply not trimmed).
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()
}

/// One request's share of the ``AnswerBufferBudget``: bytes it holds until its answer is written.
///
/// Set as ``AnswerBufferLease/current`` around an upstream call, so the upstream's collecting code can charge it
/// without every provider method carrying it; released by the gateway once the answer is written, or when freed.
public final class AnswerBufferLease: Sendable {
    @TaskLocal public static var current: AnswerBufferLease?

    let budget: AnswerBufferBudget
    private let held = Mutex(0)

    public init(budget: AnswerBufferBudget) {
        self.budget = budget
    }

    /// Takes `bytes` more, or throws 503 when the gateway already holds its limit of answers.
    public func reserve(_ bytes: Int) throws(APIError) {
        guard budget.reserve(bytes) else {
            throw APIError(
                status: 503, type: "server_error", code: "gateway_overloaded",
                message: "The gateway is holding its limit of buffered answers; retry shortly.", retryAfter: 1)
        }
        held.withLock { $0 += bytes }
    }

    /// Gives back everything held; safe to call more than once.
    public func release() {
        let bytes = held.withLock { held -> Int in
            defer { held = 0 }
            return held
        }
        budget.release(bytes)
    }

    deinit { release() }
}
