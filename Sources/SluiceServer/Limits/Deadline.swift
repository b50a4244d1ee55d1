import Synchronization

/// Runs `operation` and returns its result, or nil once `deadline` has passed, whichever comes first. On the
/// deadline the operation is cancelled and left to end on its own; its result is dropped.
///
/// For work that must not hold its caller hostage even when the thing it waits on never answers (a database
/// connection that died without closing).
func firstOrDeadline<T: Sendable>(_ deadline: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T? {
    let race = DeadlineRace<T>()
    let result: Result<T, any Error>? = await withCheckedContinuation { continuation in
        race.start(continuation)
        let work = Task {
            do {
                race.finish(.success(try await operation()))
            } catch {
                race.finish(.failure(error))
            }
        }
        Task {
            try? await Task.sleep(for: deadline)
            work.cancel()
            race.finish(nil)
        }
    }
    return try result?.get()
}

/// Resumes the waiter of ``firstOrDeadline(_:_:)`` once, with whichever outcome comes first.
private final class DeadlineRace<T: Sendable>: Sendable {
    private let waiter = Mutex<CheckedContinuation<Result<T, any Error>?, Never>?>(nil)

    func start(_ continuation: CheckedContinuation<Result<T, any Error>?, Never>) {
        waiter.withLock { $0 = continuation }
    }

    func finish(_ result: Result<T, any Error>?) {
        let continuation = waiter.withLock { waiter in
            defer { waiter = nil }
            return waiter
        }
        continuation?.resume(returning: result)
    }
}
