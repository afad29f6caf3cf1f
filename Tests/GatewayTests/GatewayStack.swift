import AsyncHTTPClient
import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// The suites that start pods and gateways. They run one test at a time: together they would
/// load this 2-core machine so much that scrapes lag past GIE's 200 ms staleness threshold and
/// the pods leave the candidate set, which would test the machine rather than the gateway.
@Suite(.serialized) enum EndToEnd {}

/// FakeVLLM pods and a gateway in front of them, all on ephemeral loopback ports.
struct GatewayStack {
    var pods: [VLLMServer]
    let gateway: GatewayServer
    var base: String { "http://127.0.0.1:\(gateway.port)" }

    static let poolYAML = """
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {name: pool}
        spec:
          selector: {matchLabels: {app: vllm}}
          targetPorts: [{number: 8000}]
          endpointPickerRef: {name: epp, port: {number: 9002}}
        """

    /// InferenceObjectives of the pool, by name and priority.
    static func objectives(_ priorities: KeyValuePairs<String, Int>) -> String {
        priorities.map { name, priority in
            """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceObjective
            metadata: {name: \(name)}
            spec: {priority: \(priority), poolRef: {name: pool}}
            """
        }.joined()
    }

    /// A POST of `body` to the gateway's /v1/completions, for tests that read the response as it comes.
    func completionRequest(_ body: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: base + "/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        return request
    }

    static func start(
        pods count: Int = 3, manifests: String = poolYAML, dataPlane: DataPlaneConfiguration = DataPlaneConfiguration(),
        extraEndpoints: [String] = [], metricsPort: Int? = nil, pod configure: (Int, inout ServerConfiguration) -> Void = { _, _ in }
    ) async throws -> GatewayStack {
        var pods: [VLLMServer] = []
        for index in 0..<count {
            pods.append(try await EndToEnd.DatastoreTests.pod { configure(index, &$0) })
        }
        var resources = GatewayResources()
        try ManifestLoader.load(manifests, file: "test.yaml", into: &resources)
        let endpoints = pods.enumerated().map { index, pod in
            DiscoveredEndpoint(endpoint: Endpoint(address: "127.0.0.1:\(pod.port)", podName: "pod-\(index)"))
        } + extraEndpoints.map { DiscoveredEndpoint(endpoint: Endpoint(address: $0, podName: $0)) }
        let gateway = try await GatewayServer.start(
            resources: resources, endpoints: endpoints, port: 0, metricsPort: metricsPort, configuration: dataPlane, seed: 7)
        let stack = GatewayStack(pods: pods, gateway: gateway)
        try await stack.waitForCandidates(count + extraEndpoints.count)
        return stack
    }

    func address(of pod: Int) -> String { "127.0.0.1:\(pods[pod].port)" }

    func stop() async {
        try? await gateway.stop()
        for pod in pods { try? await pod.stop() }
    }

    /// Waits until the picker sees `count` candidates (first scrapes done).
    func waitForCandidates(_ count: Int) async throws {
        let store = gateway.picker.datastore
        guard try await eventually({ store.candidates(now: store.now).count == count }) else {
            throw GatewayStartError("timed out waiting for \(count) candidates")
        }
    }

    /// A client that opens as many connections as the test has requests in flight (the shared
    /// client stops at 8 per host and would queue the rest).
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: String
        var json: JSONValue? { try? JSONValue.parse(body) }
        var servedBy: String? { headers.first(name: ProxyExchange.servedHeader) }
    }

    func post(_ path: String, _ body: String, headers: [(String, String)] = [], timeout: TimeAmount = .seconds(60)) async throws -> Response {
        try await send(path, method: .POST, body: body, headers: headers, timeout: timeout)
    }

    func send(_ path: String, method: HTTPMethod, body: String? = nil, headers: [(String, String)] = [], timeout: TimeAmount = .seconds(60)) async throws -> Response {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "content-type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await Self.client.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return Response(status: Int(response.status.code), headers: response.headers, body: String(buffer: bytes))
    }
}
