import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import Testing

/// The data plane against real FakeVLLM pods: what a client of the gateway sees.
@Suite struct GatewayProxyTests {
    @Test func completionsAndChatPassThroughNamingTheEndpoint() async throws {
        let stack = try await GatewayStack.start()
        defer { Task { await stack.stop() } }
        let completion = try await stack.post("/v1/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello there", "max_tokens": 5}"#)
        #expect(completion.status == 200)
        #expect(completion.json?["object"]?.string == "text_completion")
        #expect(completion.json?["model"]?.string == "meta-llama/Meta-Llama-3-8B")
        let served = try #require(completion.servedBy)
        #expect((0..<3).map(stack.address(of:)).contains(served))

        let chat = try await stack.post("/v1/chat/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}"#)
        #expect(chat.status == 200)
        #expect(chat.json?["object"]?.string == "chat.completion")

        // Other paths go to a candidate as they are.
        let models = try await stack.send("/v1/models", method: .GET)
        #expect(models.status == 200)
        #expect(models.json?["data"]?.array?.first?["id"]?.string == "meta-llama/Meta-Llama-3-8B")
    }

    @Test func streamsArriveAsServerSentEvents() async throws {
        let stack = try await GatewayStack.start()
        defer { Task { await stack.stop() } }
        let response = try await stack.post(
            "/v1/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Count", "max_tokens": 6, "stream": true, "stream_options": {"include_usage": true}}"#)
        #expect(response.status == 200)
        #expect(response.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
        let events = response.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.last == "data: [DONE]")
        #expect(events.count >= 7)
        let usage = try JSONValue.parse(String(events[events.count - 2].dropFirst(6)))
        #expect(usage["usage"]?["completion_tokens"]?.int == 6)
    }

    @Test func errorsComeBackInOpenAIsEnvelope() async throws {
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModel
            metadata: {name: base}
            spec: {modelName: meta-llama/Meta-Llama-3-8B, poolRef: {name: pool}}
            """)
        defer { Task { await stack.stop() } }
        let bad = try await stack.post("/v1/completions", #"{"model": "#)
        #expect(bad.status == 400)
        #expect(bad.json?["error"]?["type"]?.string == "BadRequest")
        let missing = try await stack.post("/v1/completions", #"{"prompt": "x"}"#)
        #expect(missing.status == 400)
        #expect(missing.json?["error"]?["message"]?.string == "inference error: BadRequest - model not found in request body")
        let unknown = try await stack.post("/v1/completions", #"{"model": "nope", "prompt": "x"}"#)
        #expect(unknown.status == 404)
        #expect(unknown.json?["error"]?["code"]?.int == 404)
    }

    @Test func aTargetModelSplitRewritesTheBodyAndTheResponseBack() async throws {
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModelRewrite
            metadata: {name: alias}
            spec:
              poolRef: {name: pool}
              rules:
              - matches: [{model: {value: friendly-name}}]
                targets: [{modelRewrite: meta-llama/Meta-Llama-3-8B, weight: 1}]
            """)
        defer { Task { await stack.stop() } }
        let plain = try await stack.post("/v1/completions", #"{"model": "friendly-name", "prompt": "Hi", "max_tokens": 3}"#)
        #expect(plain.status == 200)
        #expect(plain.json?["model"]?.string == "friendly-name")
        let stream = try await stack.post("/v1/chat/completions", #"{"model": "friendly-name", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": true}"#)
        #expect(stream.status == 200)
        #expect(!stream.body.contains("Meta-Llama"))
        #expect(stream.body.contains(#""model":"friendly-name""#))
    }

    @Test func aRequestForADeadEndpointIsRetriedElsewhere() async throws {
        let stack = try await GatewayStack.start(pods: 3)
        defer { Task { await stack.stop() } }
        let body = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "\#(String(repeating: "A long shared system prompt. ", count: 20))", "max_tokens": 2}"#
        let first = try await stack.post("/v1/completions", body)
        let dead = try #require(first.servedBy)
        // The prefix scorer sends the same prompt to the same pod; stop it before its metrics go stale.
        try await stack.pods[(0..<3).first { stack.address(of: $0) == dead }!].stop()
        let again = try await stack.post("/v1/completions", body)
        #expect(again.status == 200)
        #expect(again.servedBy != nil && again.servedBy != dead)
        let attempts = try Prometheus.parse(String(buffer: stack.gateway.picker.metrics.render()))
            .filter { $0.name == "inference_extension_scheduler_attempts_total" && $0.labels["status"] == "success" }
            .map(\.value).reduce(0, +)
        #expect(attempts == 3, "one decision for the first request, two for the retried one")
    }
}
