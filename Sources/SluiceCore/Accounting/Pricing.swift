/// The list price of one model, in US dollars per million tokens.
///
/// Decodes from `{input: 2.5, output: 10}` so the config file's `prices` section maps onto it directly.
public struct ModelPrice: Sendable, Hashable, Codable {
    /// USD per million prompt (input) tokens.
    public var inputPerMillion: Double
    /// USD per million completion (output) tokens.
    public var outputPerMillion: Double
    /// USD per million prompt tokens read from the provider's prompt cache; nil prices them as plain input.
    public var cachedInputPerMillion: Double?
    /// USD per million prompt tokens written to the provider's prompt cache (Anthropic); nil prices them as input.
    public var cacheWritePerMillion: Double?

    public init(inputPerMillion: Double, outputPerMillion: Double, cachedInputPerMillion: Double? = nil, cacheWritePerMillion: Double? = nil) {
        self.inputPerMillion = inputPerMillion
        self.outputPerMillion = outputPerMillion
        self.cachedInputPerMillion = cachedInputPerMillion
        self.cacheWritePerMillion = cacheWritePerMillion
    }

    enum CodingKeys: String, CodingKey {
        case inputPerMillion = "input"
        case outputPerMillion = "output"
        case cachedInputPerMillion = "cached_input"
        case cacheWritePerMillion = "cache_write"
    }

    /// False for negative, NaN or infinite prices, which configuration validation should reject.
    public var isValid: Bool {
        [inputPerMillion, outputPerMillion, cachedInputPerMillion ?? 0, cacheWritePerMillion ?? 0].allSatisfy { $0.isFinite && $0 >= 0 }
    }

    /// What the given token counts cost at this price. `cachedTokens` and `cacheWriteTokens` are part of
    /// `promptTokens` and are priced at their own rates where the price has them.
    public func cost(promptTokens: Int, completionTokens: Int, cachedTokens: Int = 0, cacheWriteTokens: Int = 0) -> Double {
        let cached = min(max(0, cachedTokens), max(0, promptTokens))
        let written = min(max(0, cacheWriteTokens), max(0, promptTokens) - cached)
        let plain = max(0, promptTokens) - cached - written
        let input =
            Double(plain) * inputPerMillion + Double(cached) * (cachedInputPerMillion ?? inputPerMillion)
            + Double(written) * (cacheWritePerMillion ?? inputPerMillion)
        return (input + Double(max(0, completionTokens)) * outputPerMillion) / 1_000_000
    }
}

/// Model prices: a built-in table of common hosted models, with configured overrides on top.
///
/// A name is found by exact match, else by the longest known name it starts with at a `-`, `:`, `@` or `_`
/// boundary (so `gpt-4o-mini-2024-07-18` prices as `gpt-4o-mini` and `claude-3-5-haiku-latest` as
/// `claude-3-5-haiku`), case-insensitively; a provider prefix such as `openai/` is ignored when nothing else matches.
public struct PriceTable: Sendable {
    /// List prices of common hosted models, USD per million input/output tokens.
    ///
    /// Taken from the providers' public price pages in June 2025 (standard tier, no batch discounts, Gemini at its
    /// ≤128k/≤200k-token prompt tier). Cached input is the providers' cached-input price where they list one;
    /// Anthropic's cache writes are its 5-minute rate (1.25× input). Prices change: the config file's `prices`
    /// section overrides any entry here and adds new ones.
    public static let builtIn: [String: ModelPrice] = [
        // OpenAI
        "gpt-4o": .init(inputPerMillion: 2.50, outputPerMillion: 10.00, cachedInputPerMillion: 1.25),
        // The first gpt-4o snapshot kept its launch price.
        "gpt-4o-2024-05-13": .init(inputPerMillion: 5.00, outputPerMillion: 15.00),
        "gpt-4o-mini": .init(inputPerMillion: 0.15, outputPerMillion: 0.60, cachedInputPerMillion: 0.075),
        "chatgpt-4o-latest": .init(inputPerMillion: 5.00, outputPerMillion: 15.00),
        "gpt-4.1": .init(inputPerMillion: 2.00, outputPerMillion: 8.00, cachedInputPerMillion: 0.50),
        "gpt-4.1-mini": .init(inputPerMillion: 0.40, outputPerMillion: 1.60, cachedInputPerMillion: 0.10),
        "gpt-4.1-nano": .init(inputPerMillion: 0.10, outputPerMillion: 0.40, cachedInputPerMillion: 0.025),
        "gpt-4-turbo": .init(inputPerMillion: 10.00, outputPerMillion: 30.00),
        "gpt-4": .init(inputPerMillion: 30.00, outputPerMillion: 60.00),
        "gpt-3.5-turbo": .init(inputPerMillion: 0.50, outputPerMillion: 1.50),
        "o1": .init(inputPerMillion: 15.00, outputPerMillion: 60.00, cachedInputPerMillion: 7.50),
        "o1-mini": .init(inputPerMillion: 1.10, outputPerMillion: 4.40, cachedInputPerMillion: 0.55),
        "o3": .init(inputPerMillion: 2.00, outputPerMillion: 8.00, cachedInputPerMillion: 0.50),
        "o3-pro": .init(inputPerMillion: 20.00, outputPerMillion: 80.00),
        "o3-mini": .init(inputPerMillion: 1.10, outputPerMillion: 4.40, cachedInputPerMillion: 0.55),
        "o4-mini": .init(inputPerMillion: 1.10, outputPerMillion: 4.40, cachedInputPerMillion: 0.275),
        "text-embedding-3-small": .init(inputPerMillion: 0.02, outputPerMillion: 0),
        "text-embedding-3-large": .init(inputPerMillion: 0.13, outputPerMillion: 0),
        "text-embedding-ada-002": .init(inputPerMillion: 0.10, outputPerMillion: 0),
        // Anthropic
        "claude-3-5-sonnet": .init(
            inputPerMillion: 3.00, outputPerMillion: 15.00, cachedInputPerMillion: 0.30, cacheWritePerMillion: 3.75),
        "claude-3-7-sonnet": .init(
            inputPerMillion: 3.00, outputPerMillion: 15.00, cachedInputPerMillion: 0.30, cacheWritePerMillion: 3.75),
        "claude-sonnet-4": .init(
            inputPerMillion: 3.00, outputPerMillion: 15.00, cachedInputPerMillion: 0.30, cacheWritePerMillion: 3.75),
        "claude-3-5-haiku": .init(
            inputPerMillion: 0.80, outputPerMillion: 4.00, cachedInputPerMillion: 0.08, cacheWritePerMillion: 1.00),
        "claude-3-haiku": .init(
            inputPerMillion: 0.25, outputPerMillion: 1.25, cachedInputPerMillion: 0.03, cacheWritePerMillion: 0.30),
        "claude-3-opus": .init(
            inputPerMillion: 15.00, outputPerMillion: 75.00, cachedInputPerMillion: 1.50, cacheWritePerMillion: 18.75),
        "claude-opus-4": .init(
            inputPerMillion: 15.00, outputPerMillion: 75.00, cachedInputPerMillion: 1.50, cacheWritePerMillion: 18.75),
        // Google
        "gemini-1.5-pro": .init(inputPerMillion: 1.25, outputPerMillion: 5.00),
        "gemini-1.5-flash": .init(inputPerMillion: 0.075, outputPerMillion: 0.30),
        "gemini-2.0-flash": .init(inputPerMillion: 0.10, outputPerMillion: 0.40),
        "gemini-2.5-pro": .init(inputPerMillion: 1.25, outputPerMillion: 10.00),
        "gemini-2.5-flash": .init(inputPerMillion: 0.30, outputPerMillion: 2.50),
        // Mistral
        "mistral-large": .init(inputPerMillion: 2.00, outputPerMillion: 6.00),
        "mistral-medium": .init(inputPerMillion: 0.40, outputPerMillion: 2.00),
        "mistral-small": .init(inputPerMillion: 0.10, outputPerMillion: 0.30),
        "codestral": .init(inputPerMillion: 0.30, outputPerMillion: 0.90),
        // DeepSeek
        "deepseek-chat": .init(inputPerMillion: 0.27, outputPerMillion: 1.10, cachedInputPerMillion: 0.07),
        "deepseek-reasoner": .init(inputPerMillion: 0.55, outputPerMillion: 2.19, cachedInputPerMillion: 0.14),
    ]

    /// Every entry, keyed by lowercased name.
    public let entries: [String: ModelPrice]
    /// Names longest first, so the first prefix hit is the most specific one.
    private let namesByLength: [String]

    /// The built-in table (unless `includeBuiltIn` is false) with `overrides` replacing or adding entries.
    public init(overrides: [String: ModelPrice] = [:], includeBuiltIn: Bool = true) {
        var entries: [String: ModelPrice] = [:]
        if includeBuiltIn {
            for (name, price) in Self.builtIn { entries[name.lowercased()] = price }
        }
        for (name, price) in overrides { entries[name.lowercased()] = price }
        self.entries = entries
        // Ties broken by name only so lookups never depend on dictionary order.
        self.namesByLength = entries.keys.sorted { $0.utf8.count != $1.utf8.count ? $0.utf8.count > $1.utf8.count : $0 < $1 }
    }

    /// The price of `model`, or nil when neither its name nor a prefix of it is known.
    public func price(for model: String) -> ModelPrice? {
        let name = model.lowercased()
        if let price = lookup(name) { return price }
        // Routers such as OpenRouter spell models `provider/model`; the model part carries the price.
        if let slash = name.lastIndex(of: "/") {
            return lookup(String(name[name.index(after: slash)...]))
        }
        return nil
    }

    private func lookup(_ name: String) -> ModelPrice? {
        if let price = entries[name] { return price }
        // Bytes rather than Characters: this runs for every priced request.
        let bytes = name.utf8
        for known in namesByLength where bytes.count > known.utf8.count && bytes.starts(with: known.utf8) {
            // Requiring a separator keeps `gpt-4` from pricing `gpt-4o` and `o3` from pricing `o3x`.
            let next = bytes[bytes.index(bytes.startIndex, offsetBy: known.utf8.count)]
            if Self.separators.contains(next) { return entries[known] }
        }
        return nil
    }

    private static let separators: [UInt8] = Array("-:@_".utf8)
}

/// Fills a usage record's `costUSD` and `savedUSD` from a price table.
///
/// Local (Ollama) answers cost nothing and save what the reference model would have cost for the same tokens;
/// hosted answers cost their model's price; cache hits cost nothing and save what the call would have cost.
public struct CostCalculator: Sendable {
    /// What pricing one record found.
    public struct Outcome: Sendable, Equatable {
        public var costUSD: Double
        public var savedUSD: Double
        /// The model that had tokens to price but no price (the hosted model, or the reference model for a
        /// local one), so a report can say "unpriced" rather than show a misleading zero.
        public var unpricedModel: String?

        public init(costUSD: Double = 0, savedUSD: Double = 0, unpricedModel: String? = nil) {
            self.costUSD = costUSD
            self.savedUSD = savedUSD
            self.unpricedModel = unpricedModel
        }

        public var isPriced: Bool { unpricedModel == nil }
    }

    public var prices: PriceTable
    /// The hosted model local answers are compared with; nil claims no savings for local answers.
    public var referenceModel: String?

    /// Prices of upstreams that charge their own rate whatever the model (hosted `overflow` upstreams), by name.
    public var upstreamPrices: [String: ModelPrice] = [:]
    /// Hosted overflow prices and the models each serves (empty: any). A local answer of a model one of them serves
    /// saves what it would have charged, instead of the reference model's price: that upstream is where the call would
    /// otherwise have gone. Models no overflow serves keep the reference model.
    public var localComparisonPrices: [(models: [String], price: ModelPrice)] = []

    public init(prices: PriceTable = PriceTable(), referenceModel: String? = "gpt-4o-mini") {
        self.prices = prices
        self.referenceModel = referenceModel
    }

    /// Prices `record` as served by a local upstream (`isLocalUpstream`) or a hosted one.
    public func outcome(for record: UsageRecord, isLocalUpstream: Bool) -> Outcome {
        let prompt = max(0, record.promptTokens)
        let completion = max(0, record.completionTokens)
        // Nothing was consumed (errors, /v1/models), so there is nothing to price and nothing to flag.
        guard prompt + completion > 0, let model = record.model else { return Outcome() }
        let own = record.upstream.flatMap { upstreamPrices[$0] }
        let comparison = isLocalUpstream ? localComparisonPrices.first { UpstreamChooser.serves($0.models, model: model) }?.price : nil
        if let fixed = own ?? comparison {
            let value = fixed.cost(promptTokens: prompt, completionTokens: completion)
            return record.cacheHit || own == nil ? Outcome(costUSD: 0, savedUSD: value) : Outcome(costUSD: value, savedUSD: 0)
        }

        // The price the tokens would have been charged at had they gone to a paid API.
        let pricedModel: String
        if isLocalUpstream {
            guard let referenceModel else { return Outcome() }
            pricedModel = referenceModel
        } else {
            pricedModel = model
        }
        guard let price = prices.price(for: pricedModel) else { return Outcome(unpricedModel: pricedModel) }
        // A local server's prompt cache is free, so only a hosted call prices cache reads and writes apart.
        let value =
            isLocalUpstream
            ? price.cost(promptTokens: prompt, completionTokens: completion)
            : price.cost(promptTokens: prompt, completionTokens: completion, cachedTokens: record.cachedTokens, cacheWriteTokens: record.cacheWriteTokens)

        if record.cacheHit || isLocalUpstream {
            return Outcome(costUSD: 0, savedUSD: value)
        }
        return Outcome(costUSD: value, savedUSD: 0)
    }

    /// Sets `record.costUSD` and `record.savedUSD`, returning the outcome for its `unpricedModel`.
    @discardableResult
    public func price(_ record: inout UsageRecord, isLocalUpstream: Bool) -> Outcome {
        let outcome = outcome(for: record, isLocalUpstream: isLocalUpstream)
        record.costUSD = outcome.costUSD
        record.savedUSD = outcome.savedUSD
        return outcome
    }

    /// A copy of `record` with its cost and savings filled in.
    public func priced(_ record: UsageRecord, isLocalUpstream: Bool) -> UsageRecord {
        var record = record
        price(&record, isLocalUpstream: isLocalUpstream)
        return record
    }
}
