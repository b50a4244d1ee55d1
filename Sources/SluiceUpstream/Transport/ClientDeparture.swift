import Synchronization

/// Tells a client connection's upstream calls that the client has gone, so they stop at once instead of when the
/// next answer byte fails to reach it.
///
/// The connection's guard calls ``clientLeft()`` when the client closes its side while an answer is pending (nginx's
/// behaviour with `proxy_ignore_client_abort off`) or the connection drops; every ``UpstreamConnectionPool`` call
/// made by that connection's task (found through ``current``) is then cancelled and its upstream connection closed.
/// Without it, a stream whose model pauses, or a call not yet answered, holds its upstream until the upstream speaks.
public final class ClientDeparture: Sendable {
    private struct State {
        var left = false
        var watched: [ObjectIdentifier: @Sendable () -> Void] = [:]
    }

    private let state = Mutex(State())

    /// The departure of the client connection whose task is running.
    @TaskLocal public static var current: ClientDeparture?

    public init() {}

    /// One for a client already gone.
    public static func departed() -> ClientDeparture {
        let departure = ClientDeparture()
        departure.clientLeft()
        return departure
    }

    public var hasLeft: Bool { state.withLock { $0.left } }

    /// The client has gone: cancels every watched call, and any call watched from now on.
    public func clientLeft() {
        let cancels = state.withLock { state -> [@Sendable () -> Void] in
            guard !state.left else { return [] }
            state.left = true
            defer { state.watched = [:] }
            return Array(state.watched.values)
        }
        for cancel in cancels { cancel() }
    }

    /// Runs `cancel` when the client leaves; false (and nothing kept) when it has left already.
    func watch(_ id: ObjectIdentifier, cancel: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard !state.left else { return false }
            state.watched[id] = cancel
            return true
        }
    }

    func unwatch(_ id: ObjectIdentifier) {
        _ = state.withLock { $0.watched.removeValue(forKey: id) }
    }
}
