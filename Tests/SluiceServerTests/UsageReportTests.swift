import Logging
import SluiceCore
import SluiceStore
import Testing

@testable import SluiceServer

/// Reports by key name each key, so a reader need not look ids up.
struct UsageReportTests {
    @Test func aReportByKeyNamesTheKeys() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = SQLiteStore(path: ":memory:", logger: logger)
        try await store.migrate()
        try await store.insertKey(APIKeyRecord(id: "key_1", name: "web-app", hash: "h1", prefix: "sk-sluice-a", createdAt: 0))
        var keyed = usageRecord(1)
        keyed.keyID = "key_1"
        var gone = usageRecord(2)
        gone.keyID = "key_deleted"
        try await store.insertUsage([keyed, gone, usageRecord(3)])

        let report = try await UsageReport.make(store: store, query: UsageQuery(since: 0), grouping: .key)
        #expect(Set(report.groups.map { "\($0.group ?? "") \($0.name ?? "-")" }) == ["key_1 web-app", "key_deleted -", " -"])
        let table = report.table()
        #expect(table.contains("web-app (key_1)") && table.contains("key_deleted") && table.contains("(none)"))

        let byModel = try await UsageReport.make(store: store, query: UsageQuery(since: 0), grouping: .model)
        #expect(byModel.groups.allSatisfy { $0.name == nil })
        try await store.close()
    }
}
