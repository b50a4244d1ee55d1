/// What to do with a prompt longer than the model's context window, which Ollama would silently truncate.
public enum ContextPolicy: String, Sendable, CaseIterable {
    /// Forward it, with an `x-sluice-warning` header and a log line.
    case warn
    /// Answer 400 `context_length_exceeded`, naming the sizes.
    case reject
    /// Set `num_ctx` large enough, up to the configured maximum.
    case raise
}

/// The context guard's decisions: pure, over a request body already parsed.
public enum ContextGuard {
    /// What the guard does with one request.
    public enum Verdict: Sendable, Equatable {
        case fits
        case warn(String)
        /// Refuse it with this message (``error(_:)`` makes the answer).
        case reject(String)
        /// Send it with `num_ctx` set to this.
        case raise(Int)
    }

    /// The stated estimate of a prompt's tokens: a token per four bytes of its text (the usual figure for English
    /// and code with the tokenizers of current open models), plus four per message for the chat template.
    ///
    /// Ollama has no tokenizing endpoint, so no upstream offers a real count to the gateway before it sends.
    public static func estimatedTokens(_ body: [String: JSONValue]) -> Int {
        var bytes = 0
        var messages = 0
        func walk(_ value: JSONValue) {
            switch value {
            case .string(let text): bytes += text.utf8.count
            case .array(let items): items.forEach(walk)
            case .object(let members):
                // Images are counted by the upstream its own way; their base64 would swamp the estimate.
                for (key, member) in members where key != "images" && key != "image_url" && key != "source" { walk(member) }
            default: break
            }
        }
        for key in ["system", "instructions", "prompt", "suffix", "tools"] { body[key].map(walk) }
        for key in ["messages", "input"] {
            guard let value = body[key] else { continue }
            messages += value.arrayValue?.count ?? 1
            walk(value)
        }
        return (bytes + 3) / 4 + 4 * messages
    }

    /// The tokens the answer may take, reserved when raising: the request's own limit, else this.
    public static let defaultAnswerReserve = 1_024

    /// The answer limit a body asks for, in any shape.
    public static func answerLimit(_ body: [String: JSONValue]) -> Int? {
        body["max_tokens"]?.intValue ?? body["max_completion_tokens"]?.intValue ?? body["max_output_tokens"]?.intValue
            ?? body["options"]?["num_predict"]?.intValue.flatMap { $0 > 0 ? $0 : nil }
    }

    /// Decides for a prompt of `estimate` tokens against a window of `limit` tokens.
    ///
    /// - Parameters:
    ///   - canRaise: whether the body can carry `num_ctx` to the upstream; where it cannot, `raise` warns.
    ///   - maximum: the largest `num_ctx` `raise` may set; a prompt that would need more is rejected.
    public static func decide(
        estimate: Int, limit: Int, model: String, policy: ContextPolicy, answerReserve: Int, canRaise: Bool, maximum: Int
    ) -> Verdict {
        guard estimate > limit else { return .fits }
        let sizes = "about \(estimate) tokens (estimated), more than the \(limit)-token context of model '\(model)'"
        switch policy {
        case .warn:
            return .warn("prompt of \(sizes); the upstream may truncate it")
        case .reject:
            return .reject(exceeded(sizes))
        case .raise:
            guard canRaise else { return .warn("prompt of \(sizes); this route cannot raise num_ctx, the upstream may truncate it") }
            let needed = estimate + answerReserve
            guard needed <= maximum else {
                return .reject(exceeded("\(sizes), and it needs \(needed) with the answer, over the \(maximum) maximum"))
            }
            // Rounded up to a multiple of 1024, so nearby prompts share a loaded context size instead of reloading.
            return .raise(min(maximum, (needed + 1_023) / 1_024 * 1_024))
        }
    }

    static func exceeded(_ sizes: String) -> String {
        "The prompt is \(sizes). Shorten it or use a model with a larger context."
    }

    /// The 400 `context_length_exceeded` a rejected prompt gets.
    /// The 400 for a prompt too long for its model, naming the field that holds the prompt in the request's shape.
    public static func error(_ message: String, shape: RequestShape) -> APIError {
        let param: String
        switch shape {
        case .openAIChat, .ollamaChat, .anthropicMessages: param = "messages"
        case .openAICompletion, .ollamaGenerate: param = "prompt"
        case .openAIResponses: param = "input"
        }
        return APIError(status: 400, type: "invalid_request_error", code: "context_length_exceeded", message: message, param: param)
    }
}
