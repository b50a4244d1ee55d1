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

    /// Waits for every live instance to serve the store's current keys; returns how many still lagged when
    /// `timeout` ran out: 0 once all have confirmed.
    public static func awaitInstances(
        store: any GatewayStore, timeout: Duration = defaultTimeout,
        now: @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) async throws -> Int {
        let keyRevision = try await store.keysRevision()
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let behind = try await store.instancesBehind(keyRevision: keyRevision, reportedSince: now() - liveWindow)
            if behind == 0 || clock.now >= deadline { return behind }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
