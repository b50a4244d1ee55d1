import Foundation

/// OpenAI requests rewritten as Ollama native requests.
public enum OllamaRequestTranslation {
    public static func chat(_ request: ChatCompletionRequest) throws(APIError) -> Ollama.ChatRequest {
        var toolNames: [String: String] = [:]
        var messages: [Ollama.Message] = []
        messages.reserveCapacity(request.messages.count)
        for (i, message) in request.messages.enumerated() {
            var images: [String] = []
            if case .parts(let parts) = message.content {
                for (j, part) in parts.enumerated() where part.type == "image_url" {
                    guard let url = part.imageURL?.url else {
                        throw .missingField("messages[\(i)].content[\(j)].image_url.url")
                    }
                    guard let base64 = dataURLPayload(url) else {
                        throw .invalidValue(
                            "messages[\(i)].content[\(j)].image_url.url",
                            "Ollama upstreams take images as base64 data: URLs only.")
                    }
                    images.append(base64)
                }
            }
            var toolCalls: [Ollama.ToolCall]?
            if let calls = message.toolCalls {
                toolCalls = calls.map { call in
                    toolNames[call.id] = call.function.name
                    let arguments = (try? JSONDecoder().decode(JSONValue.self, from: Data(call.function.arguments.utf8)))
                        ?? .object([:])
                    return Ollama.ToolCall(function: .init(name: call.function.name, arguments: arguments))
                }
            }
            let role = message.role == "developer" ? "system" : message.role
            messages.append(
                Ollama.Message(
                    role: role,
                    content: message.content?.text ?? "",
                    images: images.isEmpty ? nil : images,
                    toolCalls: toolCalls,
                    toolName: message.toolCallID.flatMap { toolNames[$0] }
                ))
        }
        var out = Ollama.ChatRequest(model: request.model, messages: messages, stream: request.isStreaming)
        out.tools = request.tools
        out.format = format(request.responseFormat)
        let options = options(
            temperature: request.temperature, topP: request.topP, seed: request.seed, stop: request.stop,
            maxTokens: request.tokenLimit, presencePenalty: request.presencePenalty,
            frequencyPenalty: request.frequencyPenalty)
        out.options = options.isEmpty ? nil : options
        return out
    }

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
        Ollama.EmbedRequest(model: request.model, input: request.input)
    }

    static func format(_ responseFormat: ResponseFormat?) -> JSONValue? {
        switch responseFormat?.type {
        case "json_object": return "json"
        case "json_schema": return responseFormat?.jsonSchema?["schema"] ?? "json"
        default: return nil
        }
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

    /// The base64 payload of a `data:…;base64,` URL.
    static func dataURLPayload(_ url: String) -> String? {
        guard url.hasPrefix("data:"), let comma = url.firstIndex(of: ","),
            url[..<comma].hasSuffix(";base64")
        else { return nil }
        return String(url[url.index(after: comma)...])
    }
}
