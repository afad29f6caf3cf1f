import AsyncHTTPClient
import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// What clients see when parts fail, and how endpoints come and go.
extension EndToEnd {
@Suite struct GatewayFailureTests {
    static let body = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello", "max_tokens": 2}"#

    static func pool(failureMode: String, targetPorts: String = "[{number: 8000}]") -> String {
        """
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {name: pool}
        spec:
          selector: {matchLabels: {app: vllm}}
          targetPorts: \(targetPorts)
          endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: \(failureMode)}
        """
    }

    @Test func whenThePickerIsDownFailCloseRefusesAndFailOpenStillServes() async throws {
        let closed = try await GatewayStack.start(pods: 2, manifests: Self.pool(failureMode: "FailClose"))
        defer { Task { await closed.stop() } }
        closed.gateway.picker.isReachable = false
        let refused = try await closed.post("/v1/completions", Self.body)
        #expect(refused.status == 500)
        #expect(refused.json?["error"]?["type"]?.string == "Internal")

        let open = try await GatewayStack.start(pods: 2, manifests: Self.pool(failureMode: "FailOpen"))
        defer { Task { await open.stop() } }
        open.gateway.picker.isReachable = false
        let served = try await open.post("/v1/completions", Self.body)
        #expect(served.status == 200)
        #expect(served.servedBy == open.address(of: 0) || served.servedBy == open.address(of: 1))
    }

    @Test func aStreamWhosePodDiesEndsWithAnErrorEventNotASilentCut() async throws {
        let stack = try await GatewayStack.start(pods: 1) { _, pod in pod.accelerator = "h100-sxm" }
        defer { Task { await stack.stop() } }
        var request = HTTPClientRequest(url: stack.base + "/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Go", "max_tokens": 3000, "stream": true}"#))
        let response = try await GatewayStack.client.execute(request, timeout: .seconds(30))
        #expect(response.status == .ok)
        var chunks = response.body.makeAsyncIterator()
        var text = String(buffer: try #require(try await chunks.next()))  // tokens are flowing
        try await stack.pods[0].stop()
        while let chunk = try await chunks.next() { text += String(buffer: chunk) }
        let events = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.last == "data: [DONE]")
        let error = try JSONValue.parse(String(try #require(events.dropLast().last).dropFirst(6)))
        #expect(error["error"]?["code"]?.int == 502, "\(events.suffix(2))")
    }

    @Test func bodiesOverTheLimitAreRefusedWith413() async throws {
        var dataPlane = DataPlaneConfiguration()
        dataPlane.maxBodyBytes = 1024
        let stack = try await GatewayStack.start(pods: 1, dataPlane: dataPlane)
        defer { Task { await stack.stop() } }
        let big = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "\#(String(repeating: "x", count: 2000))"}"#
        let response = try await stack.post("/v1/completions", big)
        #expect(response.status == 413)
        #expect(response.json?["error"]?["code"]?.int == 413)
        #expect(try await stack.post("/v1/completions", Self.body).status == 200)
    }

    @Test func theSubsetHintLimitsTheChoice() async throws {
        let stack = try await GatewayStack.start(pods: 3)
        defer { Task { await stack.stop() } }
        for _ in 0..<6 {
            let response = try await stack.post("/v1/completions", Self.body, headers: [("x-gateway-destination-endpoint-subset", stack.address(of: 2))])
            #expect(response.servedBy == stack.address(of: 2))
        }
        let none = try await stack.post("/v1/completions", Self.body, headers: [("x-gateway-destination-endpoint-subset", "10.0.0.1:8000")])
        #expect(none.status == 503)
    }

    @Test func discoveredPodsJoinByLabelAndReadinessWithOneEndpointPerTargetPort() async throws {
        let pods = [try await EndToEnd.DatastoreTests.pod(), try await DatastoreTests.pod()]
        defer { Task { for pod in pods { try? await pod.stop() } } }
        let ports = pods.map(\.port)
        // Both pods' ports as two target ports (GIE's data-parallel ranks) of one address.
        var resources = GatewayResources()
        try ManifestLoader.load(Self.pool(failureMode: "FailClose", targetPorts: "[{number: \(ports[0])}, {number: \(ports[1])}]"), file: "pool.yaml", into: &resources)
        let gateway = try await GatewayServer.start(resources: resources, port: 0)
        defer { Task { try? await gateway.stop() } }
        let source = TestPodSource()
        gateway.follow(source)
        source.set([
            DiscoveredPod(name: "vllm-0", ip: "127.0.0.1", labels: ["app": "vllm"], ready: true),
            DiscoveredPod(name: "other", ip: "127.0.0.2", labels: ["app": "other"], ready: true),
        ])
        let store = gateway.picker.datastore
        func names() -> [String] { store.candidates(now: store.now).map(\.endpoint.podName).sorted() }
        for _ in 0..<100 where names().count < 2 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(names() == ["vllm-0-rank-0", "vllm-0-rank-1"])
        source.set([DiscoveredPod(name: "vllm-0", ip: "127.0.0.1", labels: ["app": "vllm"], ready: false)])
        for _ in 0..<100 where !names().isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        #expect(names().isEmpty, "a pod that is not Ready is not a candidate")
    }
}
}

/// An in-memory pod list with watchers, as the fleet manager's registry will serve.
final class TestPodSource: PodSource, Sendable {
    private let state = NIOLockedValueBox<(pods: [DiscoveredPod], watchers: [@Sendable ([DiscoveredPod]) -> Void])>(([], []))

    func set(_ pods: [DiscoveredPod]) {
        let watchers = state.withLockedValue { state in
            state.pods = pods
            return state.watchers
        }
        for watcher in watchers { watcher(pods) }
    }

    func watch(_ onChange: @escaping @Sendable ([DiscoveredPod]) -> Void) async throws {
        let current = state.withLockedValue { state in
            state.watchers.append(onChange)
            return state.pods
        }
        onChange(current)
        try await Task.sleep(for: .seconds(3600))
    }
}
