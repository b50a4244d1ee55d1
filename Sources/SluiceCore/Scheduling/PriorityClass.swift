/// How a key's requests are treated when upstreams are at their in-flight cap.
public enum PriorityClass: String, Sendable, Codable, CaseIterable {
    /// Someone is waiting on the answer: served first.
    case interactive
    /// Nobody is waiting: served after interactive requests, and never more than a share of an upstream's slots.
    case batch
}
