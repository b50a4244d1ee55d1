/// Why a request's body could not be read, raised by ``ConnectionGuard`` to the handler that was reading it.
///
/// Both are the client's doing, so they are answered and counted as 4xx (499 for a client that left), never as 500.
public enum ClientConnectionError: Error, Sendable {
    /// The connection closed or failed before the body was complete.
    case disconnected
    /// The client sent nothing for `client-body-timeout` while the body was being read.
    case bodyTimeout
}
