#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The kernel's cryptographic random numbers, read 4 KiB at a time.
///
/// `SystemRandomNumberGenerator` makes one `getrandom` call per 64-bit word, and every answer needs five words (its
/// id and its usage record's UUIDv7): five system calls per request on the hot path. The words are the same
/// kernel CSPRNG output, only read in bulk; they are handed out once each.
public struct BatchedSystemRandom: RandomNumberGenerator {
    private struct Pool {
        var words = [UInt64](repeating: 0, count: 512)
        var next = 512

        /// `/dev/urandom` (the same CSPRNG as `getrandom`, which Swift's Glibc module does not export), opened once;
        /// -1 where it cannot be opened, and then the words come from `SystemRandomNumberGenerator` one by one.
        static let device = open("/dev/urandom", O_RDONLY | O_CLOEXEC)

        mutating func take() -> UInt64 {
            if next == words.count {
                let filled = Self.device >= 0 && words.withUnsafeMutableBytes { bytes in
                    var filled = 0
                    while filled < bytes.count {
                        let got = read(Self.device, bytes.baseAddress! + filled, bytes.count - filled)
                        if got > 0 {
                            filled += got
                        } else if got < 0 && errno == EINTR {
                            continue
                        } else {
                            return false
                        }
                    }
                    return true
                }
                if !filled {
                    var system = SystemRandomNumberGenerator()
                    for i in words.indices { words[i] = system.next() }
                }
                next = 0
            }
            defer { next += 1 }
            return words[next]
        }
    }

    private static let pool = Mutex(Pool())

    public init() {}

    public mutating func next() -> UInt64 {
        Self.pool.withLock { $0.take() }
    }
}
