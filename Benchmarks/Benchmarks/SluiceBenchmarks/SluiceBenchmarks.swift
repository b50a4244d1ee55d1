import Benchmark
import NIOCore
import SluiceCore
import SluiceServer

/// The pure functions every API request runs through, measured for time and allocations.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 100,
        scalingFactor: .kilo,
        maxDuration: .seconds(2)
    )

    let chatBody = ByteBuffer(
        string: #"""
            {"model":"llama3.2","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"benchmark prompt"}],
             "max_tokens":16,"temperature":0.2,"top_p":0.9,"stream":false}
            """#)

    Benchmark("Decode and validate a chat request") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try RequestDecoding.decodeValidated(ChatCompletionRequest.self, from: chatBody))
        }
    }

    Benchmark("Cache key of a chat request") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try CacheKey.make(family: "chat", upstream: "default", body: chatBody))
        }
    }

    // Twenty content chunks and the final stats line, as Ollama streams them.
    let ollamaLines: [ByteBuffer] =
        (0..<20).map { i in
            ByteBuffer(
                string: #"{"model":"llama3.2","created_at":"2026-11-23T10:00:00Z","message":{"role":"assistant","content":"word\#(i) "},"done":false}"#
                    + "\n")
        } + [
            ByteBuffer(
                string: #"{"model":"llama3.2","created_at":"2026-11-23T10:00:01Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":20}"#
                    + "\n")
        ]
    let identity = ResponseIdentity(id: "chatcmpl-benchmark", created: 1_790_000_000)

    Benchmark("Translate a 21-chunk Ollama chat stream to OpenAI SSE") { benchmark in
        var output = ByteBuffer()
        for _ in benchmark.scaledIterations {
            var translator = CanonicalStreamTranslator(
                decoder: OllamaChat.StreamDecoder(identity: identity),
                encoder: OpenAIChat.StreamEncoder(model: "llama3.2", identity: identity, includeUsage: true))
            for line in ollamaLines {
                output.clear()
                try translator.translate(line, into: &output)
            }
            try translator.finish(into: &output)
            blackHole(output)
        }
    }

    // A 200-chunk answer, the same words three ways: Ollama NDJSON through the chat lane, and canonical deltas
    // through the Anthropic and Responses encoders. Each iteration is one whole answer; divide by 200 for per chunk.
    let answerLines: [ByteBuffer] =
        (0..<199).map { i in
            ByteBuffer(
                string: #"{"model":"llama3.2","created_at":"2026-11-23T10:00:00Z","message":{"role":"assistant","content":"word\#(i) "},"done":false}"#
                    + "\n")
        } + [
            ByteBuffer(
                string: #"{"model":"llama3.2","created_at":"2026-11-23T10:00:01Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":199}"#
                    + "\n")
        ]
    let answerDeltas: [Generation.Delta] =
        [.messageStart(id: "msg_benchmark", model: "llama3.2", usage: nil)] + (0..<199).map { .text("word\($0) ") }
        + [.finish(.endTurn, stopSequence: nil, usage: .init(promptTokens: 12, completionTokens: 199))]

    Benchmark("200-chunk answer: Ollama NDJSON to OpenAI chat SSE (decode + encode)") { benchmark in
        var output = ByteBuffer()
        for _ in benchmark.scaledIterations {
            var translator = CanonicalStreamTranslator(
                decoder: OllamaChat.StreamDecoder(identity: identity),
                encoder: OpenAIChat.StreamEncoder(model: "llama3.2", identity: identity, includeUsage: true))
            for line in answerLines {
                output.clear()
                try translator.translate(line, into: &output)
            }
            try translator.finish(into: &output)
            blackHole(output)
        }
    }

    Benchmark("200-chunk answer: canonical deltas to Anthropic SSE") { benchmark in
        var output = ByteBuffer()
        for _ in benchmark.scaledIterations {
            var encoder = AnthropicMessages.StreamEncoder(id: "msg_benchmark", model: "llama3.2")
            for delta in answerDeltas {
                output.clear()
                encoder.write(delta, into: &output)
            }
            blackHole(output)
        }
    }

    Benchmark("200-chunk answer: canonical deltas to Responses SSE") { benchmark in
        var output = ByteBuffer()
        for _ in benchmark.scaledIterations {
            var encoder = OpenAIResponses.StreamEncoder(id: "resp_benchmark", model: "llama3.2", createdAt: 1_790_000_000)
            for delta in answerDeltas {
                output.clear()
                encoder.write(delta, into: &output)
            }
            blackHole(output)
        }
    }

    Benchmark("200-chunk answer: Ollama NDJSON to Anthropic SSE (decode + encode)") { benchmark in
        var output = ByteBuffer()
        var deltas: [Generation.Delta] = []
        for _ in benchmark.scaledIterations {
            var decoder = OllamaChat.StreamDecoder(identity: identity)
            var encoder = AnthropicMessages.StreamEncoder(id: "msg_benchmark", model: "llama3.2")
            for line in answerLines {
                output.clear()
                deltas.removeAll(keepingCapacity: true)
                try decoder.decode(line, into: &deltas)
                for delta in deltas { encoder.write(delta, into: &output) }
            }
            blackHole(output)
        }
    }

    let limiter = RateLimiter(globalRPS: 0, globalBurst: 0, ipRPM: 600_000, now: 0)
    let key = APIKeyRecord(id: "key_bench", name: "bench", hash: "", prefix: "sk-sluice-ben", createdAt: 0, rpm: 600_000, tpm: 10_000_000)
    Benchmark("Rate-limit decision (IP + key requests + key tokens)") { benchmark in
        var now = 1.0
        for _ in benchmark.scaledIterations {
            now += 0.000_001
            blackHole(limiter.admit(clientIP: "127.0.0.1", key: key, now: now))
        }
    }
}
