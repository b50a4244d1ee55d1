import Foundation
import SluiceCore
import Synchronization

/// What a local inference server costs beyond generating, simulated: loading a cold model, reprocessing a prompt
/// whose prefix it has not cached. `/api/ps` reports what it has loaded.
final class MockResidency: Sendable {
    struct Settings: Sendable {
        /// Models loaded at start.
        var loaded: [String] = []
        /// Time to load a model that is not loaded; 0 loads instantly.
        var loadMs = 0
        /// Models held at once; loading one more unloads the least recently used. 0: no bound.
        var maxLoaded = 0
        /// The context length `/api/ps` and `/api/show` report; 0 reports none.
        var contextLength = 0
        /// Time to process each earlier message of a chat that is not in the prompt cache.
        var promptCacheMissMs = 0
    }

    private struct State {
        /// Least recently used first.
        var loaded: [String]
        var loads = 0
        /// Hashes of the message lists processed, each prefix of each request and its answer.
        var prefixes: Set<String> = []
        var prefixOrder: [String] = []
        var cacheHits = 0
        var cacheMisses = 0
    }

    let settings: Settings
    private let state: Mutex<State>
    static let prefixCapacity = 4_096

    init(settings: Settings) {
        self.settings = settings
        self.state = Mutex(State(loaded: settings.loaded))
    }

    var loaded: [String] { state.withLock { $0.loaded } }

    /// `/api/ps`: the loaded models, most recently used first.
    var psJSON: JSONValue {
        let models = state.withLock { $0.loaded }.reversed().map { name -> JSONValue in
            var entry: [String: JSONValue] = [
                "name": .string(name), "model": .string(name), "size": .int(1_000_000), "size_vram": .int(1_000_000),
                "expires_at": "2099-01-01T00:00:00Z",
            ]
            if settings.contextLength > 0 { entry["context_length"] = .int(settings.contextLength) }
            return .object(entry)
        }
        return ["models": .array(models)]
    }

    /// Zeroes the counters `/mock/stats` reports; what is loaded and cached stays, as on a real server.
    func resetCounters() {
        state.withLock {
            $0.loads = 0
            $0.cacheHits = 0
            $0.cacheMisses = 0
        }
    }

    var statsJSON: JSONValue {
        state.withLock { ["loads": .int($0.loads), "prompt_cache_hits": .int($0.cacheHits), "prompt_cache_misses": .int($0.cacheMisses)] }
    }

    /// Loads `model` if it is not loaded, taking `loadMs`, and marks it most recently used.
    func use(_ model: String) async throws {
        let cold = state.withLock { state -> Bool in
            guard let i = state.loaded.firstIndex(of: model) else { return true }
            state.loaded.append(state.loaded.remove(at: i))
            return false
        }
        guard cold else { return }
        if settings.loadMs > 0 { try await Task.sleep(for: .milliseconds(settings.loadMs)) }
        state.withLock { state in
            state.loaded.removeAll { $0 == model }
            state.loaded.append(model)
            state.loads += 1
            if settings.maxLoaded > 0, state.loaded.count > settings.maxLoaded { state.loaded.removeFirst(state.loaded.count - settings.maxLoaded) }
        }
    }

    /// Processes a chat's prompt: the earlier messages not in the prompt cache take `promptCacheMissMs` each.
    func processPrompt(_ messages: [(role: String, content: String)]) async throws {
        let hashes = Self.prefixHashes(messages)
        let missing = state.withLock { state -> Int in
            // The longest cached prefix of everything before the new message.
            let earlier = max(0, messages.count - 1)
            var cached = 0
            for k in stride(from: earlier, to: 0, by: -1) where state.prefixes.contains(hashes[k - 1]) {
                cached = k
                break
            }
            if earlier > 0 {
                if cached == earlier { state.cacheHits += 1 } else { state.cacheMisses += 1 }
            }
            return earlier - cached
        }
        if missing > 0, settings.promptCacheMissMs > 0 { try await Task.sleep(for: .milliseconds(missing * settings.promptCacheMissMs)) }
    }

    /// Keeps the chat and its answer in the prompt cache, as a server does after generating.
    func remember(_ messages: [(role: String, content: String)], answer: String) {
        let hashes = Self.prefixHashes(messages + [("assistant", answer)])
        state.withLock { state in
            for hash in hashes where state.prefixes.insert(hash).inserted {
                state.prefixOrder.append(hash)
            }
            if state.prefixOrder.count > Self.prefixCapacity {
                let dropped = state.prefixOrder.prefix(state.prefixOrder.count - Self.prefixCapacity)
                for hash in dropped { state.prefixes.remove(hash) }
                state.prefixOrder.removeFirst(dropped.count)
            }
        }
    }

    /// The hash of each prefix of the messages: element k is the hash of messages[0...k].
    static func prefixHashes(_ messages: [(role: String, content: String)]) -> [String] {
        var running = ""
        return messages.map { message in
            running += message.role + "\u{1}" + message.content + "\u{2}"
            return SHA256Words(hashing: running).hex
        }
    }
}
