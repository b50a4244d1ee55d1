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
                    // A tool result whose call is not in the history still says which tool answered.
                    toolName: message.toolCallID.flatMap { toolNames[$0] } ?? (message.role == "tool" ? message.name : nil)
                ))
        }
        // One upstream call answers one choice: more would be n calls for one request, which a client can make itself.
        if let n = request.n, n > 1 {
            throw .invalidValue("n", "Ollama upstreams answer one choice per request; send n separate requests.")
        }
        // Ollama has no token probabilities or biases: a request that asks for them must not get an answer without.
        if request.logprobs == true || request.topLogprobs != nil {
            throw .invalidValue(request.logprobs == true ? "logprobs" : "top_logprobs", "token log probabilities are not available on Ollama upstreams.")
        }
        if let bias = request.logitBias, !bias.isEmpty {
            throw .invalidValue("logit_bias", "is not available on Ollama upstreams.")
        }
        for (i, message) in request.messages.enumerated() {
            guard case .parts(let parts)? = message.content else { continue }
            for (j, part) in parts.enumerated() where part.type != "text" && part.type != "image_url" && part.type != "refusal" {
                throw .invalidValue("messages[\(i)].content[\(j)].type", "'\(part.type)' parts are not available on Ollama upstreams.")
            }
        }
        var out = Ollama.ChatRequest(model: request.model, messages: messages, stream: request.isStreaming)
        out.tools = try tools(request.tools, choice: request.toolChoice)
        out.format = format(request.responseFormat)
        out.think = request.think ?? think(request.reasoningEffort)
        out.keepAlive = request.keepAlive
        var options = options(
            temperature: request.temperature, topP: request.topP, seed: request.seed, stop: request.stop,
            maxTokens: request.tokenLimit, presencePenalty: request.presencePenalty,
            frequencyPenalty: request.frequencyPenalty)
        options.extra = request.options ?? [:]
        out.options = options.isEmpty ? nil : options
        return out
    }

    /// The tools Ollama is offered: none for `tool_choice: "none"` (Ollama would still call one), only the named
    /// one for a named choice (the closest Ollama comes to forcing it), else all.
    static func tools(_ tools: [Tool]?, choice: JSONValue?) throws(APIError) -> [Tool]? {
        switch choice {
        case .string("none"): return nil
        case .object(let object):
            guard let name = object["function"]?["name"]?.stringValue else { return tools }
            let named = (tools ?? []).filter { $0.function.name == name }
            guard !named.isEmpty else { throw .invalidValue("tool_choice", "names '\(name)', which is not in tools.") }
            return named
        default: return tools
        }
    }

    /// `reasoning_effort` as Ollama's `think`: `none` turns thinking off, an effort asks for that much.
    static func think(_ effort: String?) -> JSONValue? {
        switch effort {
        case nil: nil
        case "none": .bool(false)
        case "minimal": .string("low")
        case let effort?: .string(effort)
        }
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
        var out = Ollama.EmbedRequest(model: request.model, input: request.input)
        out.dimensions = request.dimensions
        return out
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
