import AsyncHTTPClient
import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import GatewayExtProc
import InferenceAPI
import NIOCore
import TestSupport
import Testing
import Yams

/// `understudy up --data-plane envoy` and `--epp`: Envoy in front of a fleet.
@Suite(.serialized) struct EnvoyFrontTests {
    /// Pods as the OpenAI SDK check expects them: a context it can overflow, and tool calling.
    static func spec(replicas: Int) throws -> FleetSpec {
        try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: small}
            spec:
              gateway: {port: 0, metricsPort: 0}
              firstPodPort: 0
              pools:
              - {name: fast, accelerator: instant, model: meta-llama/Meta-Llama-3-8B, replicas: \(replicas), labels: {app: llama}, startupSeconds: 0.2,
                 engineArgs: {max-model-len: 1024, enable-auto-tool-choice: true, tool-call-parser: hermes}}
            """, file: "small.yaml")
    }

    static func waitForReady(_ fleet: Fleet, _ count: Int) async throws {
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == count })
    }

    @Test func theOpenAISDKWorksThroughEnvoyAndUnderstudysPicker() async throws {
        let fleet = try await Fleet.start(try Self.spec(replicas: 2), profiles: EnvoyStack.profiles)
        try await Self.waitForReady(fleet, 2)
        let front = try await EnvoyFront.start(
            fleet: fleet, host: "127.0.0.1", port: 0, picker: .understudy(port: 0, healthPort: 0, security: .selfSigned), maxBodyBytes: 1 << 24,
            logger: .init(label: "test"))
        let result = try await runOpenAISDKCheck(base: "http://127.0.0.1:\(front.envoy.listenerPort)/v1")
        #expect(result.status == 0, "\(result.output)")
        await front.stop()
        await fleet.stop()
    }

    /// `--epp`: Envoy asks a picker that is not the fleet's (here Understudy's own, run apart
    /// over plaintext, as llm-d-router with `--secure-serving=false`), and the fleet's Ready
    /// endpoints are kept in the file llm-d-router's file discovery reads.
    @Test func anExternalPickerRoutesThroughEnvoyAndTheEndpointsFileFollowsTheFleet() async throws {
        let fleet = try await Fleet.start(try Self.spec(replicas: 3), profiles: EnvoyStack.profiles, backoff: RestartBackoff(initial: 0.3, maximum: 1))
        try await Self.waitForReady(fleet, 3)
        // The external picker: a gateway of its own over the same pods, and its ext_proc.
        var resources = GatewayResources()
        try ManifestLoader.load(EnvoyStack.poolYAML.replacingOccurrences(of: "app: vllm", with: "app: llama"), file: "epp.yaml", into: &resources)
        let external = try await GatewayServer.start(resources: resources, port: 0)
        external.follow(fleet.registry)
        let externalExtProc = try await ExtProcServer.start(
            picker: external.picker, host: "127.0.0.1", port: 0, healthPort: 0, security: .plaintext, maxBodyBytes: 1 << 24, logger: .init(label: "test"))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-epp-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("endpoints.yaml").path
        let front = try await EnvoyFront.start(
            fleet: fleet, host: "127.0.0.1", port: 0, picker: .external(address: "127.0.0.1:\(externalExtProc.port)", tls: false, endpointsFile: file),
            maxBodyBytes: 1 << 24, logger: .init(label: "test"))
        let store = external.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 3 })

        var request = HTTPClientRequest(url: "http://127.0.0.1:\(front.envoy.listenerPort)/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hi", "max_tokens": 2}"#))
        let response = try await HTTPClient.forTests.execute(request, timeout: .seconds(30))
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "x-went-into-resp-headers") == "true", "the external picker saw the response")

        // The file, by llm-d-router's rules: IPv4 addresses, ports as strings, unique names.
        func entries() throws -> [[String: Any]] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8), let document = try Yams.load(yaml: text) as? [String: Any] else { return [] }
            return document["endpoints"] as? [[String: Any]] ?? []
        }
        #expect(try await eventually { try entries().count == 3 })
        let pods = fleet.list()
        for entry in try entries() {
            let address = entry["address"] as? String ?? ""
            #expect(address.split(separator: ".").count == 4 && address.split(separator: ".").allSatisfy { UInt8($0) != nil }, "\(entry)")
            #expect(entry["port"] is String, "the port is a quoted string: \(entry)")
            #expect(pods.contains { $0.name == entry["name"] as? String && $0.address == "\(address):\(entry["port"] as? String ?? "")" })
            #expect(entry["namespace"] as? String == "default")
            #expect((entry["labels"] as? [String: String])?["app"] == "llama")
        }
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.contains(#"port: ""#), "\(text)")
        // A killed pod leaves the file at once and comes back once Ready again.
        try await fleet.kill(pods[1].name)
        #expect(try await eventually { try entries().count == 2 && !entries().contains { $0["name"] as? String == pods[1].name } })
        #expect(try await eventually { try entries().count == 3 })

        await front.stop()
        await externalExtProc.stop()
        try? await external.stop()
        await fleet.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    @Test func theEndpointsFileListsReadyEndpointsWithRankNamesAndIsReplacedWhole() throws {
        let endpoints = [
            DiscoveredEndpoint(endpoint: Endpoint(address: "10.0.0.1:8000", podName: "llama-0-rank-0"), labels: ["app": "llama"], ready: true),
            DiscoveredEndpoint(endpoint: Endpoint(address: "10.0.0.1:8002", podName: "llama-0-rank-1"), labels: ["app": "llama"], ready: true),
            DiscoveredEndpoint(endpoint: Endpoint(address: "10.0.0.2:8000", podName: "llama-1"), labels: [:], ready: false),
        ]
        let document = try Yams.load(yaml: FileDiscovery.yaml(endpoints, namespace: "inference")) as? [String: Any]
        let entries = document?["endpoints"] as? [[String: Any]] ?? []
        #expect(entries.map { $0["name"] as? String } == ["llama-0-rank-0", "llama-0-rank-1"])
        #expect(entries.map { $0["port"] as? String } == ["8000", "8002"])
        #expect(entries.allSatisfy { $0["namespace"] as? String == "inference" && $0["address"] as? String == "10.0.0.1" })
        let none = try Yams.load(yaml: FileDiscovery.yaml([endpoints[2]], namespace: "default")) as? [String: Any]
        #expect((none?["endpoints"] as? [Any])?.isEmpty == true)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-fd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("endpoints.yaml").path
        try FileDiscovery.write(endpoints, namespace: "default", to: path)
        let before = try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? Int
        try FileDiscovery.write(Array(endpoints.prefix(1)), namespace: "default", to: path)
        let after = try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? Int
        #expect(before != after, "a new file renamed over the old (a new inode), not the old rewritten in place")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["endpoints.yaml"])
        try? FileManager.default.removeItem(at: directory)
    }
}
