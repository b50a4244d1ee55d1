#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How long a client connection may take over each step, and how many may be open at once.
///
/// The timeouts are nginx's: `header` runs from accept (or from the first byte of a later request) until the request
/// head is complete, `body` is the longest gap between two reads of a body the gateway asked for, `idle` is how long a
/// kept-alive connection may wait for its next request.
struct ConnectionLimits: Sendable {
    var headerTimeout: Duration
    var bodyTimeout: Duration
    var idleTimeout: Duration
    var maxConnections: Int
    /// After an answer sent before the body was read (413, 401), at most this much of the rest is read and dropped,
    /// so a client that writes its whole body before reading still gets the answer.
    var lingerBytes = 64 * 1024 * 1024
    /// And for at most this long in all, as nginx's `lingering_time`.
    var lingerTime = Duration.seconds(30)

    /// File descriptors kept for everything that is not a client: the listener, the store, the log file, the
    /// upstream pools beyond one connection per client.
    static let reservedDescriptors = 64

    /// The default cap: every client connection may need an upstream connection too, so half of what the soft
    /// `RLIMIT_NOFILE` leaves after the reserve.
    static func defaultMaxConnections() -> Int {
        var limit = rlimit()
        #if os(Linux)
        let status = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #else
        let status = getrlimit(RLIMIT_NOFILE, &limit)
        #endif
        // An unreadable or unlimited (RLIM_INFINITY, all bits set) soft limit: a million descriptors is beyond any machine this runs on.
        let soft = status == 0 && limit.rlim_cur != rlim_t.max ? Int(clamping: limit.rlim_cur) : 1_048_576
        return max(16, (soft - reservedDescriptors) / 2)
    }
}
