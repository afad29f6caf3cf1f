import FleetManager
import Foundation
import Gateway
import Testing

@Suite struct FleetSpecTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theDemoFleetLoads() throws {
        let fleet = try FleetSpec.load(file: Self.root.appendingPathComponent("profiles/fleets/demo.yaml").path)
        #expect(fleet.name == "demo")
        #expect(fleet.pools.map(\.name) == ["llama3-h100", "llama3-a100"])
        #expect(fleet.pools.map(\.accelerator) == ["h100-sxm", "a100-80g"])
        #expect(fleet.pools[0].adapters.map(\.name) == ["sql-lora", "chat-lora", "code-lora"])
        #expect(fleet.pools[0].adapters.first?.preload == true && fleet.pools[0].adapters.last?.runtimeOnly == true)
        #expect(fleet.pools[0].engineArgs.map(\.name) == ["enable-prompt-tokens-details", "max-loras"])
        // The generated InferencePool selects what both pools share.
        #expect(fleet.resources.pools.map(\.name) == ["demo"])
        #expect(fleet.resources.pools[0].selector == ["app": "vllm-llama3-8b"])
        #expect(fleet.resources.objectives.map(\.name) == ["critical", "sheddable"])
        #expect(fleet.gateway == .init(host: "127.0.0.1", port: 8080, metricsPort: 9090))
        #expect(fleet.admin.port == 8070 && fleet.firstPodPort == 8000)
    }

    func fleet(_ pools: String) -> String {
        """
        apiVersion: understudy.dev/v1alpha1
        kind: Fleet
        metadata: {name: f}
        spec:
          pools:
        \(pools)
        """
    }

    @Test func outlierDetectionIsReadFromTheGatewaySection() throws {
        let pools = "  - {name: a, accelerator: h100-sxm, model: m, replicas: 1, labels: {app: x}}"
        let plain = try FleetSpec.parse(fleet(pools), file: "fleet.yaml")
        #expect(plain.dataPlane.outlierDetection == nil, "off unless asked for, as in GIE")
        let text = fleet(pools).replacingOccurrences(
            of: "spec:\n", with: "spec:\n  gateway: {outlierDetection: {consecutive5xx: 2, baseEjectionSeconds: 5}}\n")
        let detection = try #require(try FleetSpec.parse(text, file: "fleet.yaml").dataPlane.outlierDetection)
        #expect(detection.consecutive5xx == 2 && detection.baseEjectionTime == 5 && detection.maxEjectionTime == 300)
        let bad = fleet(pools).replacingOccurrences(of: "spec:\n", with: "spec:\n  gateway: {outlierDetection: {consecutive5XX: 2}}\n")
        #expect(throws: ConfigError.self) { try FleetSpec.parse(bad, file: "fleet.yaml") }
    }

    @Test(arguments: [
        ("  - {name: a, accelerator: h100-sxm, model: m, replicas: -1, labels: {app: x}}",
         #"fleet.yaml: document 1: The Fleet "f" is invalid: spec.pools[0].replicas: Invalid value: -1: spec.pools[0].replicas in body should be greater than or equal to 0"#),
        ("  - {name: a, accelerator: h100-sxm, model: m, replicas: 1, labels: {app: x}, engineArgs: {max-nums-seqs: 4}}",
         "spec.pools[0].engineArgs.max-nums-seqs: Unsupported value"),
        ("  - {name: a, accelerator: h100-sxm, model: m, replicas: 1, labels: {app: x}, replica: 2}",
         "spec.pools[0].replica: field not declared in schema"),
        ("  - {name: a, accelerator: h100-sxm, model: m, replicas: 1}",
         "spec.pools: no label common to every pool"),
        ("  - {name: a, accelerator: h100-sxm, model: m, replicas: 1, labels: {app: x}}\n  - {name: a, accelerator: l4, model: m, replicas: 1, labels: {app: x}}",
         #"spec.pools[1].name: Duplicate value: "a""#),
        ("  - {name: a, model: m, replicas: 1, labels: {app: x}}",
         "spec.pools[0].accelerator: Required value"),
    ])
    func aBadFleetIsRefusedNamingTheField(_ pools: String, _ expected: String) {
        do {
            _ = try FleetSpec.parse(fleet(pools), file: "fleet.yaml")
            Issue.record("accepted: \(pools)")
        } catch {
            #expect(error.description.contains(expected), "\(error)")
        }
    }
}
