import Foundation
import SluiceStore

/// Waits until every running gateway instance serves the key table as of a revision, so that a key created or
/// revoked anywhere takes effect on the very next request, whichever instance it reaches.
///
/// Instances report the revision they serve after every key poll (``KeyDirectorySync``); one that has not reported
/// for ``liveWindow`` is taken for dead and not waited for.
public enum KeyPropagation {
    public static let liveWindow: Double = 3
    /// Long enough for a dead instance to drop out of the live window.
    public static let defaultTimeout: Duration = .seconds(5)

    /// How a key change reached the running instances.
    public struct Outcome: Sendable, Equatable {
        /// Live instances that had not confirmed the change when the wait ran out: 0 once all have.
        public var lagging: Int
        /// Instances behind the change that have not reported for longer than ``liveWindow``: crashed, or cut off
        /// from the store and still serving the keys they last loaded. Nobody waits for them.
        public var silent: Int

        public init(lagging: Int, silent: Int) {
            self.lagging = lagging
            self.silent = silent
        }
    }

    /// Waits for every live instance to serve the store's current keys.
    public static func awaitInstances(
        store: any GatewayStore, timeout: Duration = defaultTimeout,
        now: @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) async throws -> Outcome {
        let keyRevision = try await store.keysRevision()
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let behind = try await store.instancesBehind(keyRevision: keyRevision, reportedSince: now() - liveWindow)
            if behind == 0 || clock.now >= deadline {
                // The store forgets an instance an hour after its last report, so this counts every one it knows.
                let known = try await store.instancesBehind(keyRevision: keyRevision, reportedSince: 0)
                return Outcome(lagging: behind, silent: max(0, known - behind))
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
