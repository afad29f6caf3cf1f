import AsyncHTTPClient
import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import NIOCore
import NIOHTTP1
import NIOPosix
import TestSupport
import Testing

/// What GIE's picker decides, seen end to end: real FakeVLLM pods behind the gateway, real
/// HTTP clients, decisions read from the served-endpoint header and from what the pods received.
extension EndToEnd {
@Suite struct GatewayRoutingTests {
    static let model = "meta-llama/Meta-Llama-3-8B"

    func completion(_ model: String, _ prompt: String, maxTokens: Int, stream: Bool = false) -> String {
        var body = ByteBuffer()
        body.writeJSON(.object([
            "model": .string(model), "prompt": .string(prompt), "max_tokens": .integer(maxTokens), "stream": .bool(stream),
        ]))
        return String(buffer: body)
    }

    @Test func loRARequestsGoToThePodWithTheAdapterLoaded() async throws {
        let config = """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha1
            kind: EndpointPickerConfig
            plugins:
            - type: queue-scorer
            - type: kv-cache-utilization-scorer
            - type: lora-affinity-scorer
            - type: max-score-picker
            schedulingProfiles:
            - name: default
              plugins:
              - pluginRef: queue-scorer
              - pluginRef: kv-cache-utilization-scorer
              - pluginRef: lora-affinity-scorer
              - pluginRef: max-score-picker
            """
        // Emulated H100s, so an adapter stays in the running batch long enough to be scraped.
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + config) { _, pod in
            pod.accelerator = "h100-sxm"
            pod.timeScale = 2
            pod.enableLoRA = true
            pod.maxLoras = 2
            pod.loraModules = ["sql-lora", "chat-lora", "code-lora"].map { LoRAModule(name: $0, path: "/adapters/\($0)") }
        }
        defer { Task { await stack.stop() } }
        // A long request puts sql-lora in one pod's running batch.
        let long = Task { try await stack.post("/v1/completions", completion("sql-lora", "SELECT", maxTokens: 600)) }
        let holder = try await eventuallyActive("sql-lora", stack)
        var served: [String] = []
        for index in 0..<6 {
            let response = try await stack.post("/v1/completions", completion("sql-lora", "Query \(index)", maxTokens: 4))
            #expect(response.status == 200)
            served.append(response.servedBy ?? "")
        }
        #expect(served.allSatisfy { $0 == holder }, "sql-lora requests went to \(served), the adapter is loaded on \(holder)")
        #expect(try await long.value.status == 200)
    }

    /// The pod whose scraped metrics list `adapter` as running.
    func eventuallyActive(_ adapter: String, _ stack: GatewayStack) async throws -> String {
        let store = stack.gateway.picker.datastore
        func holder() -> String? {
            store.candidates(now: store.now).first { $0.metrics?.activeAdapters.contains(adapter) == true }?.endpoint.address
        }
        guard try await eventually({ holder() != nil }), let address = holder() else {
            throw GatewayStartError("\(adapter) never showed as running")
        }
        return address
    }

    @Test func aSharedPrefixStaysOnOnePodAndHitsItsCache() async throws {
        let stack = try await GatewayStack.start { _, pod in pod.enablePromptTokensDetails = true }
        defer { Task { await stack.stop() } }
        let system = String(repeating: "You are a careful assistant who answers in full sentences. ", count: 12)
        var served: Set<String> = []
        var cached: [Int] = []
        for question in 0..<8 {
            let response = try await stack.post("/v1/completions", completion(Self.model, system + "Question \(question)?", maxTokens: 3))
            #expect(response.status == 200)
            served.insert(response.servedBy ?? "")
            cached.append(response.json?["usage"]?["prompt_tokens_details"]?["cached_tokens"]?.int ?? -1)
        }
        #expect(served.count == 1, "the shared prefix went to \(served)")
        #expect(cached.dropFirst().allSatisfy { $0 > 0 }, "cached_tokens per request: \(cached)")
    }

    @Test func aWeightedSplitHoldsWithinThreePercentOverTwoThousandRequests() async throws {
        let split = """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModel
            metadata: {name: canary}
            spec:
              modelName: assistant
              poolRef: {name: pool}
              targetModels:
              - {name: assistant-v1, weight: 90}
              - {name: assistant-v2, weight: 10}
            """
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + split) { _, pod in
            pod.enableLoRA = true
            pod.maxLoras = 2
            pod.loraModules = ["assistant-v1", "assistant-v2"].map { LoRAModule(name: $0, path: "/adapters/\($0)") }
        }
        defer { Task { await stack.stop() } }
        let total = 2000
        let wrongModel = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var wrong = 0
                    for index in stride(from: worker, to: total, by: 8) {
                        let response = try await stack.post("/v1/completions", completion("assistant", "Hi \(index)", maxTokens: 1))
                        if response.status != 200 || response.json?["model"]?.string != "assistant" { wrong += 1 }
                    }
                    return wrong
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrongModel == 0, "every response names the model the client asked for")
        var received: [String: Int] = [:]
        for pod in stack.pods { received.merge(try await pod.acceptedRequests(), uniquingKeysWith: +) }
        #expect(received["assistant-v1", default: 0] + received["assistant-v2", default: 0] == total)
        let share = Double(received["assistant-v1", default: 0]) / Double(total)
        #expect(abs(share - 0.9) <= 0.03, "assistant-v1 got \(share) of the requests")
    }

    @Test func underSaturationOnlySheddableRequestsAreRefused() async throws {
        let objectives = GatewayStack.objectives(["critical": 10, "batch": -1])
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + objectives) { _, pod in
            pod.accelerator = "h100-sxm"
            pod.maxNumSeqs = 2
        }
        defer { Task { await stack.stop() } }
        func send(_ objective: String, _ tokens: Int) async throws -> Int {
            try await stack.post(
                "/v1/completions", completion(Self.model, "Work item", maxTokens: tokens),
                headers: [("x-gateway-inference-objective", objective)]).status
        }
        // Not saturated: sheddable traffic is served.
        #expect(try await send("batch", 2) == 200)
        // 36 long critical requests on 3 pods of 2 slots: about 10 waiting on each, for seconds.
        let critical = (0..<36).map { _ in Task { try await send("critical", 200) } }
        _ = try await eventually { stack.gateway.picker.saturation() >= 1 }
        #expect(stack.gateway.picker.saturation() >= 1)
        var sheddable: [Int] = []
        var moreCritical: [Task<Int, Error>] = []
        for _ in 0..<10 {
            sheddable.append(try await send("batch", 2))
            moreCritical.append(Task { try await send("critical", 2) })
        }
        #expect(sheddable.allSatisfy { $0 == 429 }, "sheddable statuses under saturation: \(sheddable)")
        var criticalStatuses: [Int] = []
        for task in critical + moreCritical { criticalStatuses.append(try await task.value) }
        #expect(criticalStatuses.allSatisfy { $0 == 200 }, "critical statuses: \(criticalStatuses)")
    }

    @Test func aStoppedPodLeavesTheCandidatesWithinTheStalenessThresholdAndGetsNoNewRequest() async throws {
        let stack = try await GatewayStack.start()
        defer { Task { await stack.stop() } }
        let store = stack.gateway.picker.datastore
        let stopped = stack.address(of: 1)
        try await stack.pods[1].stop()
        let stoppedAt = store.now
        // Its scrapes are refused from now on: it leaves the candidates (at once, or once its last
        // good metrics are GIE's 200 ms old).
        #expect(try await eventually { !store.candidates(now: store.now).map(\.endpoint.address).contains(stopped) })
        #expect(!store.candidates(now: stoppedAt + 0.2).map(\.endpoint.address).contains(stopped))
        for index in 0..<30 {
            let response = try await stack.post("/v1/completions", completion(Self.model, "After \(index)", maxTokens: 2))
            #expect(response.status == 200)
            #expect(response.servedBy != stopped)
        }
    }

    @Test func aClientThatGoesAwayCancelsTheRequestOnThePod() async throws {
        let stack = try await GatewayStack.start(pods: 1) { _, pod in pod.accelerator = "h100-sxm" }
        defer { Task { await stack.stop() } }
        let request = stack.completionRequest(completion(Self.model, "Tell a long story", maxTokens: 2000, stream: true))
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = client.shutdown() }
        let response = try await client.execute(request, timeout: .seconds(30))
        #expect(response.status == .ok)
        var body = response.body.makeAsyncIterator()
        let firstChunk = try await body.next()  // the pod is generating
        #expect(firstChunk != nil)
        #expect(try await running(on: stack.pods[0]) == 1)
        try await client.shutdown()  // closes the connection mid-stream
        var remaining = 1.0
        _ = try await eventually {
            remaining = try await running(on: stack.pods[0])
            return remaining == 0
        }
        #expect(remaining == 0, "the pod still runs the abandoned request")
        withExtendedLifetime(body) {}
    }

    func running(on pod: VLLMServer) async throws -> Double {
        let response = try await HTTPClient.forTests.execute(HTTPClientRequest(url: "http://127.0.0.1:\(pod.port)/metrics"), timeout: .seconds(5))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 22))
        return try Prometheus.parse(text).first { $0.name == "vllm:num_requests_running" }?.value ?? -1
    }

    @Test func aSilentUpstreamEndsWithGatewayTimeout() async throws {
        let silent = try await SilentModelServer.start()
        defer { Task { try? await silent.close() } }
        var dataPlane = DataPlaneConfiguration()
        dataPlane.upstreamTimeout = .milliseconds(300)
        let stack = try await GatewayStack.start(pods: 0, dataPlane: dataPlane, extraEndpoints: ["127.0.0.1:\(silent.localAddress!.port!)"])
        defer { Task { await stack.stop() } }
        let response = try await stack.post("/v1/completions", completion(Self.model, "Hello", maxTokens: 2))
        #expect(response.status == 504)
        #expect(response.json?["error"]?["message"]?.string == "upstream request timeout")
    }
}
}

/// A model server that reports healthy, idle metrics and never answers anything else: a hung
/// pod whose scrape endpoint still works.
enum SilentModelServer {
    static func start() async throws -> Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeMetricsHandler { _ in })
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }
}
