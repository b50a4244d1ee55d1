import Foundation

/// OpenAI requests rewritten as Ollama native requests.
public enum OllamaRequestTranslation {
    public static func generate(_ request: CompletionRequest) throws(APIError) -> Ollama.GenerateRequest {
        let prompts = request.prompt.values
        guard prompts.count == 1 else {
            throw .invalidValue("prompt", "Ollama upstreams take exactly one prompt per request.")
        }
        var out = Ollama.GenerateRequest(model: request.model, prompt: prompts[0], stream: request.isStreaming)
        out.suffix = request.suffix
        let options = options(
            temperature: request.temperature, topP: request.topP, seed: request.seed, stop: request.stop,
            maxTokens: request.maxTokens, presencePenalty: request.presencePenalty,
            frequencyPenalty: request.frequencyPenalty)
        out.options = options.isEmpty ? nil : options
        return out
    }

    public static func embed(_ request: EmbeddingsRequest) -> Ollama.EmbedRequest {
        var out = Ollama.EmbedRequest(model: request.model, input: request.input)
        out.dimensions = request.dimensions
        return out
    }

    static func options(
        temperature: Double?, topP: Double?, seed: Int?, stop: StopSequences?, maxTokens: Int?,
        presencePenalty: Double?, frequencyPenalty: Double?
    ) -> Ollama.Options {
        var options = Ollama.Options()
        options.temperature = temperature
        options.topP = topP
        options.seed = seed
        options.stop = stop?.values
        options.numPredict = maxTokens
        options.presencePenalty = presencePenalty
        options.frequencyPenalty = frequencyPenalty
        return options
    }
}
