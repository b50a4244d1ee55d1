import NIOCore
import NIOPosix

/// A task executor that runs jobs on one SwiftNIO event loop.
///
/// The data plane runs each client connection's task with this executor preferred, on the event loop that accepted
/// the connection. ``UpstreamConnectionPool`` then takes an upstream connection of that same loop, so a request is
/// read, forwarded, answered and written back without leaving one thread: no hand-off to the global concurrent
/// executor and back at every `await` on channel I/O (see the README's performance section).
///
/// Work on such a task must not block: it runs on the event loop itself, as a channel handler would.
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }

    /// One executor per loop of the shared group, made once: a connection only looks its loop's executor up.
    private static let executors: [ObjectIdentifier: EventLoopTaskExecutor] = {
        var executors: [ObjectIdentifier: EventLoopTaskExecutor] = [:]
        for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() {
            executors[ObjectIdentifier(loop)] = EventLoopTaskExecutor(eventLoop: loop)
        }
        return executors
    }()

    /// The executor of `eventLoop`: shared for the loops of `MultiThreadedEventLoopGroup.singleton`, new otherwise.
    public static func of(_ eventLoop: any EventLoop) -> EventLoopTaskExecutor {
        executors[ObjectIdentifier(eventLoop)] ?? EventLoopTaskExecutor(eventLoop: eventLoop)
    }
}
