/// A bounded first-in, first-out line of requests waiting for an upstream slot.
///
/// Pure bookkeeping: the server keeps it under its lock together with the continuations it stores as `Waiter`s,
/// and decides with `grant` which waiter a freed slot goes to.
public struct AdmissionQueue<Waiter> {
    /// How many may wait at once; 0 means nobody waits (a full upstream sheds at once).
    public let capacity: Int
    // A plain array: the line is bounded (hundreds), and removal from the middle is the rare case.
    private var entries: [(id: UInt64, waiter: Waiter)] = []

    public init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    public var count: Int { entries.count }
    public var isFull: Bool { count >= capacity }

    /// Adds a waiter at the back; false when the line is full.
    public mutating func enqueue(id: UInt64, _ waiter: Waiter) -> Bool {
        guard !isFull else { return false }
        entries.append((id, waiter))
        return true
    }

    /// Takes a waiter out wherever it stands (it timed out or was cancelled); nil when it is no longer waiting.
    public mutating func remove(id: UInt64) -> Waiter? {
        guard let index = entries.firstIndex(where: { $0.id == id }) else { return nil }
        return entries.remove(at: index).waiter
    }

    /// Lets `body` change a waiter in place; nil when it is no longer waiting.
    public mutating func update<Result>(id: UInt64, _ body: (inout Waiter) -> Result) -> Result? {
        guard let index = entries.firstIndex(where: { $0.id == id }) else { return nil }
        return body(&entries[index].waiter)
    }

    /// Serves waiters front to back: each one `grant` gives something to leaves the line with it.
    ///
    /// A waiter `grant` refuses keeps its place and does not block those behind it, which may want another
    /// upstream or model; `grant` is expected to claim what it gives, so later calls see it taken.
    public mutating func serve<Grant>(_ grant: (Waiter) -> Grant?) -> [(waiter: Waiter, grant: Grant)] {
        var served: [(waiter: Waiter, grant: Grant)] = []
        var kept: [(id: UInt64, waiter: Waiter)] = []
        for entry in entries {
            if let given = grant(entry.waiter) {
                served.append((entry.waiter, given))
            } else {
                kept.append(entry)
            }
        }
        if !served.isEmpty { entries = kept }
        return served
    }
}

extension AdmissionQueue: Sendable where Waiter: Sendable {}
