/// Why the gateway closed a client connection on its own: the `reason` label of
/// `sluice_client_connections_closed_total` and of the log line.
enum ConnectionCloseReason: String, Sendable, CaseIterable {
    /// The request head was not complete within `client-header-timeout` (answered 408).
    case headerTimeout = "header_timeout"
    /// Nothing of the body arrived for `client-body-timeout` (answered 408).
    case bodyTimeout = "body_timeout"
    /// A kept-alive connection sent no new request within `client-idle-timeout` (closed without an answer).
    case idleTimeout = "idle_timeout"
    /// `max-connections` were already open (closed at once).
    case maxConnections = "max_connections"
}
