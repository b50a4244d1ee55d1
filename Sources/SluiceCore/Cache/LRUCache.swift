/// A least-recently-used map bounded by the total cost (bytes) of its values, with per-entry expiry.
///
/// Not thread-safe by itself: the server wraps it in a lock. Time is passed in, so tests control it.
public struct LRUCache<Key: Hashable, Value> {
    struct Node {
        var key: Key
        var value: Value
        var cost: Int
        var expires: Double
        var prev: Int
        var next: Int
    }

    public let maxCost: Int
    public private(set) var totalCost = 0
    private var nodes: [Node?] = []
    private var free: [Int] = []
    private var index: [Key: Int] = [:]
    /// Most recently used.
    private var head = -1
    /// Least recently used, evicted first.
    private var tail = -1

    public init(maxCost: Int) {
        self.maxCost = maxCost
    }

    public var count: Int { index.count }

    /// The live value for `key`, which becomes the most recently used; an expired entry is removed.
    public mutating func value(for key: Key, now: Double) -> Value? {
        guard let i = index[key], let node = nodes[i] else { return nil }
        if node.expires <= now {
            remove(at: i)
            return nil
        }
        moveToFront(i)
        return node.value
    }

    /// Stores a value; evicts least recently used entries until the bound holds. Returns how many were evicted.
    /// A value costlier than the whole bound is not stored.
    @discardableResult
    public mutating func insert(_ value: Value, for key: Key, cost: Int, expires: Double) -> Int {
        if let existing = index[key] { remove(at: existing) }
        guard cost <= maxCost else { return 0 }
        var evicted = 0
        while totalCost + cost > maxCost, tail >= 0 {
            remove(at: tail)
            evicted += 1
        }
        let node = Node(key: key, value: value, cost: cost, expires: expires, prev: -1, next: head)
        let i: Int
        if let reused = free.popLast() {
            nodes[reused] = node
            i = reused
        } else {
            nodes.append(node)
            i = nodes.count - 1
        }
        if head >= 0 { nodes[head]!.prev = i }
        head = i
        if tail < 0 { tail = i }
        index[key] = i
        totalCost += cost
        return evicted
    }

    @discardableResult
    public mutating func removeValue(for key: Key) -> Bool {
        guard let i = index[key] else { return false }
        remove(at: i)
        return true
    }

    /// Drops every expired entry; returns how many.
    @discardableResult
    public mutating func removeExpired(now: Double) -> Int {
        var removed = 0
        var i = tail
        while i >= 0 {
            let prev = nodes[i]!.prev
            if nodes[i]!.expires <= now {
                remove(at: i)
                removed += 1
            }
            i = prev
        }
        return removed
    }

    private mutating func moveToFront(_ i: Int) {
        guard i != head else { return }
        unlink(i)
        nodes[i]!.prev = -1
        nodes[i]!.next = head
        if head >= 0 { nodes[head]!.prev = i }
        head = i
        if tail < 0 { tail = i }
    }

    private mutating func unlink(_ i: Int) {
        let node = nodes[i]!
        if node.prev >= 0 { nodes[node.prev]!.next = node.next } else { head = node.next }
        if node.next >= 0 { nodes[node.next]!.prev = node.prev } else { tail = node.prev }
    }

    private mutating func remove(at i: Int) {
        unlink(i)
        let node = nodes[i]!
        index[node.key] = nil
        totalCost -= node.cost
        nodes[i] = nil
        free.append(i)
    }
}
extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
extension LRUCache.Node: Sendable where Key: Sendable, Value: Sendable {}
