import Foundation
import SluiceCore
import SluiceStore
import Testing

/// The stored-responses part of the store contract. An extension of ``StoreContractTests`` so that it runs in that
/// serialised suite: the PostgreSQL cases share one database, which each test empties first.
extension StoreContractTests {
    /// One response as the Responses route would save it; the JSON is opaque to the store.
    static func storedResponse(
        _ id: String, key: String?, createdAt: Double = day0, expiresAt: Double = day1, model: String = "llama3.2"
    ) -> StoredResponse {
        StoredResponse(
            id: id, keyID: key, createdAt: createdAt, expiresAt: expiresAt, model: model,
            inputItems: #"[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi from \#(id)"}]}]"#,
            outputItems: #"[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hello"}]}]"#,
            response: #"{"id":"\#(id)","object":"response","model":"\#(model)","status":"completed"}"#)
    }

    /// A database made before stored responses gains the table and keeps what it held.
    @Test(arguments: Backend.available)
    func upgradesToStoredResponses(_ backend: Backend) async throws {
        let previous = try #require(Migration.all.last { $0.name.contains("Responses") }).version - 1
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore(migrate: false) { store in
                try await store.migrate(through: previous)
                try await database.insertOldKey("key_old")
                try await database.insertOldUsage("u1", key: "key_old", cost: 0.5)
                await #expect(throws: StoreError.self) {
                    try await store.response(id: "resp_1", keyID: "key_old", now: day0)
                }
            }
            try await database.withStore { store in
                #expect(try await store.appliedMigrations() == Migration.all.map(\.version))
                #expect(try await store.listKeys().map(\.id) == ["key_old"])
                #expect(try await store.spend(keyID: "key_old") == 0.5)
                #expect(try await store.response(id: "resp_1", keyID: "key_old", now: day0) == nil)
                #expect(try await store.deleteExpiredResponses(before: .greatestFiniteMagnitude, limit: 10) == 0)
                let stored = Self.storedResponse("resp_1", key: "key_old")
                try await store.saveResponse(stored)
                #expect(try await store.response(id: "resp_1", keyID: "key_old", now: day0) == stored)
            }
        }
    }

    @Test(arguments: Backend.available)
    func storedResponseRoundTrips(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                // A long conversation with text outside ASCII and JSON escapes, exactly as written.
                var keyed = Self.storedResponse("resp_keyed", key: "key_a", createdAt: day0 + 0.25, expiresAt: day1 + 0.5)
                let turn = #"{"type":"message","role":"user","content":[{"type":"input_text","text":"héllo ☃ \"quoted\" \\n \u0000"}]}"#
                keyed.inputItems = "[" + Array(repeating: turn, count: 2_000).joined(separator: ",") + "]"
                let anonymous = Self.storedResponse("resp_anon", key: nil, model: "gpt-4o-mini")
                try await store.saveResponse(keyed)
                try await store.saveResponse(anonymous)

                #expect(try await store.response(id: "resp_keyed", keyID: "key_a", now: day0 + 1) == keyed)
                #expect(try await store.response(id: "resp_anon", keyID: nil, now: day0 + 1) == anonymous)
                #expect(try await store.response(id: "resp_unknown", keyID: "key_a", now: day0 + 1) == nil)
                #expect(try await store.response(id: "resp_unknown", keyID: nil, now: day0 + 1) == nil)
                // Another instance reads what this one stored.
                let seenElsewhere = try await database.withStore { other in
                    try await other.response(id: "resp_keyed", keyID: "key_a", now: day0 + 1)
                }
                #expect(seenElsewhere == keyed)
            }
        }
    }

    /// The id is the gateway's; a second save under it is a bug and must not replace another key's conversation.
    @Test(arguments: Backend.available)
    func savingAnExistingResponseIDFails(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let original = Self.storedResponse("resp_1", key: "key_a")
                try await store.saveResponse(original)
                await #expect(throws: StoreError.self) {
                    try await store.saveResponse(Self.storedResponse("resp_1", key: "key_b", model: "other"))
                }
                #expect(try await store.response(id: "resp_1", keyID: "key_a", now: day0) == original)
                #expect(try await store.response(id: "resp_1", keyID: "key_b", now: day0) == nil)
            }
        }
    }

    @Test(arguments: Backend.available)
    func anotherKeyNeitherReadsNorDeletesAResponse(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let stored = Self.storedResponse("resp_1", key: "key_a")
                try await store.saveResponse(stored)

                #expect(try await store.response(id: "resp_1", keyID: "key_b", now: day0) == nil)
                #expect(try await store.response(id: "resp_1", keyID: nil, now: day0) == nil)
                #expect(try await store.response(id: "resp_1", keyID: "", now: day0) == nil)
                #expect(try await store.deleteResponse(id: "resp_1", keyID: "key_b") == false)
                #expect(try await store.deleteResponse(id: "resp_1", keyID: nil) == false)
                #expect(try await store.response(id: "resp_1", keyID: "key_a", now: day0) == stored)

                #expect(try await store.deleteResponse(id: "resp_1", keyID: "key_a") == true)
                #expect(try await store.response(id: "resp_1", keyID: "key_a", now: day0) == nil)
                #expect(try await store.deleteResponse(id: "resp_1", keyID: "key_a") == false)
                #expect(try await store.deleteResponse(id: "resp_unknown", keyID: "key_a") == false)
            }
        }
    }

    /// With authentication off callers have no key: their responses are theirs alone, not any key's, and theirs
    /// cannot see any key's.
    @Test(arguments: Backend.available)
    func anonymousResponsesAreIsolatedFromKeys(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let anonymous = Self.storedResponse("resp_anon", key: nil)
                let keyed = Self.storedResponse("resp_keyed", key: "key_a")
                try await store.saveResponse(anonymous)
                try await store.saveResponse(keyed)

                #expect(try await store.response(id: "resp_anon", keyID: "key_a", now: day0) == nil)
                #expect(try await store.response(id: "resp_anon", keyID: "", now: day0) == nil)
                #expect(try await store.response(id: "resp_keyed", keyID: nil, now: day0) == nil)
                #expect(try await store.deleteResponse(id: "resp_anon", keyID: "key_a") == false)
                #expect(try await store.deleteResponse(id: "resp_keyed", keyID: nil) == false)

                #expect(try await store.response(id: "resp_anon", keyID: nil, now: day0) == anonymous)
                #expect(try await store.deleteResponse(id: "resp_anon", keyID: nil) == true)
                #expect(try await store.response(id: "resp_anon", keyID: nil, now: day0) == nil)
                #expect(try await store.response(id: "resp_keyed", keyID: "key_a", now: day0) == keyed)
            }
        }
    }

    @Test(arguments: Backend.available)
    func anExpiredResponseIsNotReturned(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                let stored = Self.storedResponse("resp_1", key: "key_a", createdAt: day0, expiresAt: day0 + 100)
                try await store.saveResponse(stored)

                #expect(try await store.response(id: "resp_1", keyID: "key_a", now: day0 + 99.5) == stored)
                // Expired from its expiry time on, before retention has deleted it.
                #expect(try await store.response(id: "resp_1", keyID: "key_a", now: day0 + 100) == nil)
                #expect(try await store.response(id: "resp_1", keyID: "key_a", now: day1) == nil)
                // Its owner may still delete it, so a DELETE racing the sweep does not fail.
                #expect(try await store.deleteResponse(id: "resp_1", keyID: "key_a") == true)
            }
        }
    }

    @Test(arguments: Backend.available)
    func deleteExpiredResponsesRemovesOnlyExpiredInBoundedBatches(_ backend: Backend) async throws {
        try await TestDatabase.withFresh(backend) { database in
            try await database.withStore { store in
                // Seven expired (keyed and anonymous, ids not in expiry order) and three that have not.
                let now = day0 + 1_000
                let expired = (0..<7).map { i in
                    Self.storedResponse("resp_\(9 - i)", key: i.isMultiple(of: 2) ? "key_a" : nil, expiresAt: day0 + Double(i))
                }
                let live = (7..<10).map { i in
                    Self.storedResponse("resp_\(9 - i)", key: i.isMultiple(of: 2) ? "key_a" : nil, expiresAt: now + Double(i))
                }
                for stored in (expired + live).shuffled() { try await store.saveResponse(stored) }

                #expect(try await store.deleteExpiredResponses(before: now, limit: 0) == 0)
                #expect(try await store.deleteExpiredResponses(before: now, limit: 3) == 3)
                // The soonest-expired go first: read at a time when all were still live.
                for (index, stored) in expired.enumerated() {
                    let found = try await store.response(id: stored.id, keyID: stored.keyID, now: day0 - 1)
                    #expect((found != nil) == (index >= 3), "\(stored.id)")
                }
                #expect(try await store.deleteExpiredResponses(before: now, limit: 3) == 3)
                #expect(try await store.deleteExpiredResponses(before: now, limit: 3) == 1)
                #expect(try await store.deleteExpiredResponses(before: now, limit: 3) == 0)

                for stored in expired {
                    #expect(try await store.response(id: stored.id, keyID: stored.keyID, now: day0 - 1) == nil)
                }
                for stored in live {
                    #expect(try await store.response(id: stored.id, keyID: stored.keyID, now: now) == stored)
                }
            }
        }
    }
}
