import Foundation
import NIOCore
import Testing
@testable import SluiceCore

@Suite struct PricingTests {
    private func record(
        model: String?, prompt: Int, completion: Int, cacheHit: Bool = false, status: Int = 200
    ) -> UsageRecord {
        UsageRecord(
            id: "r1", time: 1_700_000_000, requestID: "req", route: "/v1/chat/completions", model: model,
            status: status, cacheHit: cacheHit, promptTokens: prompt, completionTokens: completion, latencyMs: 10
        )
    }

    private func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-12 }

    @Test func modelPriceCostsPerMillionTokens() {
        let price = ModelPrice(inputPerMillion: 2.5, outputPerMillion: 10)
        #expect(close(price.cost(promptTokens: 1_000_000, completionTokens: 0), 2.5))
        #expect(close(price.cost(promptTokens: 1000, completionTokens: 500), 0.0025 + 0.005))
        #expect(price.cost(promptTokens: -5, completionTokens: 0) == 0)
    }

    /// Prompt-cache reads and writes are part of the prompt tokens and priced at their own rates where known.
    @Test func cachedInputIsPricedAtItsOwnRate() {
        let claude = ModelPrice(inputPerMillion: 3, outputPerMillion: 15, cachedInputPerMillion: 0.3, cacheWritePerMillion: 3.75)
        // 1M prompt tokens: 600k read from the cache, 100k written to it, 300k plain.
        let cost = claude.cost(promptTokens: 1_000_000, completionTokens: 0, cachedTokens: 600_000, cacheWriteTokens: 100_000)
        #expect(close(cost, 0.6 * 0.3 + 0.1 * 3.75 + 0.3 * 3))
        // Without cache rates, cached tokens cost what input does.
        let plain = ModelPrice(inputPerMillion: 2, outputPerMillion: 8)
        #expect(close(plain.cost(promptTokens: 1_000_000, completionTokens: 0, cachedTokens: 500_000), 2))
        // Counts that claim more cached than prompt tokens are clamped, never negative.
        #expect(close(claude.cost(promptTokens: 100, completionTokens: 0, cachedTokens: 1000, cacheWriteTokens: 1000), 100 * 0.3 / 1_000_000))
        #expect(PriceTable().price(for: "gpt-4o")?.cachedInputPerMillion == 1.25)
        #expect(PriceTable().price(for: "claude-sonnet-4-20250514")?.cacheWritePerMillion == 3.75)

        var record = UsageRecord(
            id: "r", time: 0, requestID: "q", route: "/v1/messages", model: "claude-sonnet-4", status: 200, promptTokens: 1_000_000,
            completionTokens: 1000, cachedTokens: 900_000, latencyMs: 1)
        let calculator = CostCalculator(prices: PriceTable(), referenceModel: "claude-sonnet-4")
        #expect(close(calculator.outcome(for: record, isLocalUpstream: false).costUSD, (0.1 * 3 + 0.9 * 0.3 + 0.001 * 15)))
        // A local server's prompt cache is free: savings are the reference model's plain price.
        record.upstream = "local"
        #expect(close(calculator.outcome(for: record, isLocalUpstream: true).savedUSD, 1 * 3 + 0.001 * 15))
    }

    @Test func modelPriceValidity() {
        #expect(ModelPrice(inputPerMillion: 0, outputPerMillion: 0).isValid)
        #expect(!ModelPrice(inputPerMillion: -1, outputPerMillion: 0).isValid)
        #expect(!ModelPrice(inputPerMillion: .nan, outputPerMillion: 0).isValid)
        #expect(!ModelPrice(inputPerMillion: 1, outputPerMillion: .infinity).isValid)
    }

    @Test func modelPriceDecodesConfigShape() throws {
        let price = try JSONDecoder().decode(ModelPrice.self, from: Data(#"{"input": 1.5, "output": 6}"#.utf8))
        #expect(price == ModelPrice(inputPerMillion: 1.5, outputPerMillion: 6))
        let cached = try JSONDecoder().decode(ModelPrice.self, from: Data(#"{"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75}"#.utf8))
        #expect(cached == ModelPrice(inputPerMillion: 3, outputPerMillion: 15, cachedInputPerMillion: 0.3, cacheWritePerMillion: 3.75))
        #expect(!ModelPrice(inputPerMillion: 1, outputPerMillion: 1, cachedInputPerMillion: -1).isValid)
    }

    @Test func builtInTableHasEveryEntryValidAndLowercase() {
        for (name, price) in PriceTable.builtIn {
            #expect(price.isValid, "\(name)")
            #expect(name == name.lowercased(), "\(name)")
        }
        for name in [
            "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o3-mini", "o4-mini", "gpt-3.5-turbo",
            "text-embedding-3-small", "text-embedding-3-large", "claude-3-5-sonnet", "claude-3-5-haiku", "claude-3-opus",
            "gemini-1.5-pro", "gemini-1.5-flash", "mistral-large",
        ] {
            #expect(PriceTable.builtIn[name] != nil, "\(name)")
        }
    }

    @Test func lookupByExactName() {
        let table = PriceTable()
        #expect(table.price(for: "gpt-4o") == PriceTable.builtIn["gpt-4o"])
        #expect(table.price(for: "o3") == PriceTable.builtIn["o3"])
        // An exact snapshot entry wins over the family prefix.
        #expect(table.price(for: "gpt-4o-2024-05-13") == ModelPrice(inputPerMillion: 5, outputPerMillion: 15))
    }

    @Test func lookupByLongestPrefix() {
        let table = PriceTable()
        #expect(table.price(for: "gpt-4o-mini-2024-07-18") == PriceTable.builtIn["gpt-4o-mini"])
        #expect(table.price(for: "gpt-4o-2024-08-06") == PriceTable.builtIn["gpt-4o"])
        #expect(table.price(for: "gpt-4.1-nano-2025-04-14") == PriceTable.builtIn["gpt-4.1-nano"])
        #expect(table.price(for: "o3-mini-2025-01-31") == PriceTable.builtIn["o3-mini"])
        #expect(table.price(for: "claude-3-5-haiku-latest") == PriceTable.builtIn["claude-3-5-haiku"])
        #expect(table.price(for: "gemini-1.5-flash-002") == PriceTable.builtIn["gemini-1.5-flash"])
        #expect(table.price(for: "mistral-large-latest") == PriceTable.builtIn["mistral-large"])
    }

    @Test func prefixMustEndAtASeparator() {
        let table = PriceTable(overrides: ["gpt-4": ModelPrice(inputPerMillion: 30, outputPerMillion: 60)], includeBuiltIn: false)
        #expect(table.price(for: "gpt-4o") == nil)
        #expect(table.price(for: "gpt-4-0613") != nil)
        #expect(PriceTable().price(for: "o3x") == nil)
    }

    @Test func lookupIsCaseInsensitive() {
        let table = PriceTable(overrides: ["My-Model": ModelPrice(inputPerMillion: 1, outputPerMillion: 2)])
        #expect(table.price(for: "GPT-4o-Mini") == PriceTable.builtIn["gpt-4o-mini"])
        #expect(table.price(for: "my-model") == ModelPrice(inputPerMillion: 1, outputPerMillion: 2))
        #expect(table.price(for: "MY-MODEL-v2") == ModelPrice(inputPerMillion: 1, outputPerMillion: 2))
    }

    @Test func providerPrefixIsIgnoredWhenNothingElseMatches() {
        #expect(PriceTable().price(for: "openai/gpt-4o-mini") == PriceTable.builtIn["gpt-4o-mini"])
    }

    @Test func unknownModelHasNoPrice() {
        #expect(PriceTable().price(for: "llama3.1:8b") == nil)
        #expect(PriceTable().price(for: "") == nil)
    }

    @Test func overridesReplaceAndAdd() {
        let cheap = ModelPrice(inputPerMillion: 0.01, outputPerMillion: 0.02)
        let table = PriceTable(overrides: ["gpt-4o": cheap, "acme-1": cheap])
        #expect(table.price(for: "gpt-4o") == cheap)
        #expect(table.price(for: "gpt-4o-2024-08-06") == cheap)
        #expect(table.price(for: "acme-1") == cheap)
        // Other built-ins remain.
        #expect(table.price(for: "gpt-4o-mini") == PriceTable.builtIn["gpt-4o-mini"])
        #expect(PriceTable(overrides: ["acme-1": cheap], includeBuiltIn: false).entries.count == 1)
    }

    @Test func hostedModelCostsItsPrice() {
        let calculator = CostCalculator()
        let outcome = calculator.outcome(for: record(model: "gpt-4o", prompt: 1000, completion: 2000), isLocalUpstream: false)
        #expect(close(outcome.costUSD, 1000 * 2.5 / 1e6 + 2000 * 10 / 1e6))
        #expect(outcome.savedUSD == 0)
        #expect(outcome.isPriced)
    }

    @Test func localModelCostsNothingAndSavesTheReferencePrice() {
        let calculator = CostCalculator(referenceModel: "gpt-4o-mini")
        let outcome = calculator.outcome(for: record(model: "llama3.1:8b", prompt: 1_000_000, completion: 1_000_000), isLocalUpstream: true)
        #expect(outcome.costUSD == 0)
        #expect(close(outcome.savedUSD, 0.15 + 0.60))
        #expect(outcome.isPriced)
    }

    @Test func localModelWithoutReferenceSavesNothing() {
        let calculator = CostCalculator(referenceModel: nil)
        let outcome = calculator.outcome(for: record(model: "llama3.1:8b", prompt: 100, completion: 100), isLocalUpstream: true)
        #expect(outcome == CostCalculator.Outcome())
    }

    @Test func localModelWithUnknownReferenceIsFlagged() {
        let calculator = CostCalculator(referenceModel: "no-such-model")
        let outcome = calculator.outcome(for: record(model: "llama3.1:8b", prompt: 100, completion: 100), isLocalUpstream: true)
        #expect(outcome.costUSD == 0)
        #expect(outcome.savedUSD == 0)
        #expect(outcome.unpricedModel == "no-such-model")
    }

    @Test func hostedCacheHitCostsNothingAndSavesTheModelPrice() {
        let calculator = CostCalculator()
        let outcome = calculator.outcome(
            for: record(model: "gpt-4.1", prompt: 500_000, completion: 250_000, cacheHit: true), isLocalUpstream: false
        )
        #expect(outcome.costUSD == 0)
        #expect(close(outcome.savedUSD, 1.0 + 2.0))
    }

    @Test func localCacheHitSavesTheReferencePrice() {
        let calculator = CostCalculator(referenceModel: "gpt-4o")
        let outcome = calculator.outcome(
            for: record(model: "qwen2.5:7b", prompt: 1_000_000, completion: 0, cacheHit: true), isLocalUpstream: true
        )
        #expect(outcome.costUSD == 0)
        #expect(close(outcome.savedUSD, 2.5))
    }

    @Test func unknownHostedModelCostsNothingAndIsFlagged() {
        let outcome = CostCalculator().outcome(for: record(model: "acme-ultra", prompt: 10, completion: 10), isLocalUpstream: false)
        #expect(outcome.costUSD == 0)
        #expect(outcome.savedUSD == 0)
        #expect(outcome.unpricedModel == "acme-ultra")
        #expect(!outcome.isPriced)
    }

    @Test func nothingToPriceIsNotFlagged() {
        let calculator = CostCalculator()
        #expect(calculator.outcome(for: record(model: "acme-ultra", prompt: 0, completion: 0, status: 502), isLocalUpstream: false) == .init())
        #expect(calculator.outcome(for: record(model: nil, prompt: 10, completion: 0), isLocalUpstream: false) == .init())
    }

    @Test func priceFillsTheRecord() {
        let calculator = CostCalculator()
        var hosted = record(model: "gpt-4o-mini-2024-07-18", prompt: 2_000_000, completion: 1_000_000)
        hosted.savedUSD = 99
        let outcome = calculator.price(&hosted, isLocalUpstream: false)
        #expect(close(hosted.costUSD, 0.30 + 0.60))
        #expect(hosted.savedUSD == 0)
        #expect(outcome.costUSD == hosted.costUSD)

        let local = calculator.priced(record(model: "llama3", prompt: 1_000_000, completion: 0), isLocalUpstream: true)
        #expect(local.costUSD == 0)
        #expect(close(local.savedUSD, 0.15))
    }
}

@Suite("Usage record ids")
struct UsageRecordIDTests {
    @Test func idsAreVersion7UUIDsOrderedByTime() throws {
        let ids = (0..<200).map { UsageRecord.newID(time: 1_790_000_000 + Double($0) * 0.01) }
        #expect(Set(ids).count == ids.count)
        #expect(ids == ids.sorted(), "ids must grow with time so index inserts append")
        for id in ids.prefix(20) {
            let bytes = Array(id.utf8)
            #expect(bytes.count == 36)
            #expect([8, 13, 18, 23].allSatisfy { bytes[$0] == UInt8(ascii: "-") })
            #expect(bytes[14] == UInt8(ascii: "7"))
            #expect("89ab".utf8.contains(bytes[19]))
            #expect(UUID(uuidString: id) != nil)
        }
        // The first 48 bits are the milliseconds.
        let id = UsageRecord.newID(time: 1_790_000_000.125)
        let millis = UInt64(id.replacingOccurrences(of: "-", with: "").prefix(12), radix: 16)
        #expect(millis == 1_790_000_000_125)
    }
}

@Suite struct BodySampleTests {
    @Test func keepsTheFirstBytesAndSaysHowLongTheBodyWas() {
        var sample = BodySample(limit: 8)
        #expect(sample.text == nil)
        sample.append(ByteBuffer(string: "hello "))
        #expect(sample.text == "hello ")
        sample.append(ByteBuffer(string: "world, and more"))
        #expect(sample.totalBytes == 21)
        #expect(sample.text == "hello wo\n[truncated: 21 bytes in total, the first 8 kept]")
        sample.append(ByteBuffer(string: "!"))
        #expect(sample.text?.hasPrefix("hello wo\n[truncated: 22 bytes") == true)
    }

    @Test func aCutThroughACharacterStillGivesText() {
        var sample = BodySample(limit: 2)
        sample.append(ByteBuffer(string: "é!"))  // é is two bytes
        #expect(sample.text == "é\n[truncated: 3 bytes in total, the first 2 kept]")
        var cut = BodySample(limit: 1)
        cut.append(ByteBuffer(string: "é"))
        #expect(cut.text?.hasPrefix("\u{FFFD}") == true)
    }

    @Test func emptyChunksAreNoBody() {
        var sample = BodySample()
        sample.append(ByteBuffer())
        #expect(sample.text == nil)
    }
}
