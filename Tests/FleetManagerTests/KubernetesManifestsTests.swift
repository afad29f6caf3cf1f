import AsyncHTTPClient
import FakeVLLM
import FleetManager
import Foundation
import Gateway
import InferenceAPI
import TestSupport
import Testing
import Yams

/// `understudy manifests`: the fleet for a Kubernetes cluster, validated offline.
struct KubernetesManifestsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Core kinds by kubernetes-validate (strict, Kubernetes 1.33), GIE's kinds and HTTPRoute by
    /// their CRDs' schemas (GIE v1.5.0, Gateway API v1.5.1), the picker's config by the picker.
    @Test func theDemoFleetsManifestsValidate() async throws {
        let rendered = try await runUnderstudy(["manifests", Self.root.appendingPathComponent("profiles/fleets/demo.yaml").path])
        #expect(rendered.status == 0, "\(rendered.output)")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-manifests-\(UUID().uuidString).yaml")
        try rendered.output.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        _ = try toolPath("kubernetes-validate")
        let result = try runTool("python3", [
            Self.root.appendingPathComponent("Tests/python/validate_manifests.py").path, file.path,
            Self.root.appendingPathComponent("Tests/crds").path, "1.33.0",
        ])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("16 objects: 12 core kinds"), "\(result.output)")

        let documents = try Yams.load_all(yaml: rendered.output).compactMap { $0 as? [String: Any] }
        let kinds = documents.compactMap { $0["kind"] as? String }
        #expect(kinds.filter { $0 == "Deployment" }.count == 3, "a Deployment per pod pool and the picker's: \(kinds)")
        for kind in ["InferencePool", "HTTPRoute", "ConfigMap", "ServiceAccount"] { #expect(kinds.contains(kind)) }
        #expect(kinds.filter { $0 == "InferenceObjective" }.count == 2)
        // The picker's EndpointPickerConfig is one the picker reads.
        let config = documents.first { $0["kind"] as? String == "ConfigMap" }.flatMap { ($0["data"] as? [String: String])?["default-plugins.yaml"] }
        var resources = GatewayResources()
        try ManifestLoader.load(try #require(config), file: "default-plugins.yaml", into: &resources)
        #expect(resources.pickerConfig?.profiles.first?.plugins.map(\.pluginRef).prefix(3) == ["queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"])
        // The model servers run `understudy serve` with the pool's flags, and GIE's vLLM probes.
        let server = documents.first { $0["kind"] as? String == "Deployment" }
        let container = ((((server?["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])?["containers"] as? [[String: Any]])?.first
        #expect((container?["args"] as? [String])?.starts(with: ["--host", "0.0.0.0", "--port", "8000", "--model", "meta-llama/Meta-Llama-3-8B"]) == true)
        #expect(((container?["startupProbe"] as? [String: Any])?["failureThreshold"] as? Int) == 600)
    }

    /// GIE v1.5.0's own emulated fleet (`config/manifests/vllm/sim-deployment.yaml`) runs with only
    /// its image replaced: `understudy serve` takes its arguments as written (the port aside).
    @Test func gieSimDeploymentsArgumentsServeAsWritten() async throws {
        let port = try freeLoopbackPort()
        let serve = try UnderstudyProcess(["serve", "--model", "Qwen/Qwen3-32B", "--port", "\(port)", "--max-loras", "2", "--lora-modules", #"{"name": "food-review-1"}"#])
        defer { serve.stop() }
        #expect(try await serve.waitForLine(within: 30) { $0.contains("listening on") } != nil, "\(serve.output)")
        let response = try await HTTPClient.forTests.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/models"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        let models = try JSONValue.parse(body)["data"]?.array?.compactMap { $0["id"]?.string }
        #expect(models == ["Qwen/Qwen3-32B", "food-review-1"])
    }
}
