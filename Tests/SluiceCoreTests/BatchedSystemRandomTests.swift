import Testing
@testable import SluiceCore

struct BatchedSystemRandomTests {
    @Test func wordsAreFreshAcrossRefills() {
        var rng = BatchedSystemRandom()
        // Three refills' worth: a refill that handed out the same block twice, or zeros, would repeat words.
        let words = (0..<1600).map { _ in rng.next() }
        #expect(Set(words).count == words.count)
        #expect(words.filter { $0 == 0 }.count <= 1)
        // Ids drawn from it stay unique too.
        let ids = Set((0..<2000).map { _ in ResponseIdentity.randomID(prefix: "chatcmpl-") })
        #expect(ids.count == 2000)
    }
}
