import Foundation

/// Ollama native answers rewritten as OpenAI responses.
public enum OllamaResponseTranslation {
    public static func completion(_ response: Ollama.GenerateResponse, model: String, identity: ResponseIdentity) -> CompletionResponse {
        CompletionResponse(
            id: identity.id, created: identity.created, model: model,
            choices: [.init(text: response.response, index: 0, finishReason: finishReason(response.doneReason, hasToolCalls: false))],
            usage: usage(prompt: response.promptEvalCount, completion: response.evalCount))
    }

    public static func embeddings(_ response: Ollama.EmbedResponse, model: String, encodingFormat: String?) -> EmbeddingsResponse {
        EmbeddingsResponse(
            data: response.embeddings.enumerated().map { .init(index: $0.offset, embedding: .init($0.element, encodingFormat: encodingFormat)) },
            model: model,
            usage: .init(promptTokens: response.promptEvalCount ?? 0))
    }

    public static func models(_ tags: Ollama.TagsResponse, created: Int) -> ModelList {
        ModelList(data: tags.models.map { Model(id: $0.name, created: created, ownedBy: "ollama") })
    }

    static func usage(prompt: Int?, completion: Int?) -> Usage? {
        guard prompt != nil || completion != nil else { return nil }
        return Usage(promptTokens: prompt ?? 0, completionTokens: completion ?? 0)
    }

    /// OpenAI's finish reason for Ollama's `done_reason`.
    static func finishReason(_ doneReason: String?, hasToolCalls: Bool) -> String {
        if hasToolCalls { return "tool_calls" }
        return doneReason == "length" ? "length" : "stop"
    }

    static func toolCallID(_ identity: ResponseIdentity, _ index: Int) -> String {
        "call_\(identity.id.suffix(12))_\(index)"
    }
}
