import FakeVLLM
@testable import FleetManager
import Foundation
import InferenceAPI
import Load
import TestSupport
import Testing

/// The fuzzer, bounded: a few thousand mutated requests against a pod and through a fleet's
/// gateway (scripts/fuzz.sh sends a million to each). Every case is a client's error or a valid
/// request: each must be answered with a 2xx or a 4xx, and everything stays up. A hang here is
/// no answer within 60 s (the script's 5 s would measure this busy test process, which shares
/// its event loops with other suites, more than the servers).
extension FleetEndToEnd {
@Suite(.serialized) struct FuzzTests {
    /// The fuzzer must reach past the first checks: a run answered only with one status would
    /// test little.
    func expectVariety(_ report: FuzzRun.Report) {
        #expect((report.statuses[200] ?? 0) > report.cases / 10, "\(report)")
        #expect((report.statuses[400] ?? 0) > report.cases / 10, "\(report)")
        #expect((report.statuses[404] ?? 0) > 0, "\(report)")
    }

    @Test func aPodAnswersEveryFuzzedRequestWithoutA5xxAHangOrADroppedConnection() async throws {
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.accelerator = "instant"
        configuration.enableLoRA = true
        configuration.loraModules = [LoRAModule(name: "sql-lora", path: "/adapters/sql")]
        configuration.allowRuntimeLoRAUpdating = true
        let pod = try await VLLMServer.start(configuration, profiles: FleetTests.profiles)
        let report = await FuzzRun(cases: 3000, seed: 11, hangAfter: .seconds(60)).run(host: "127.0.0.1", port: pod.port)
        #expect(report.failed == 0, "\(report)\n\(report.failures.joined(separator: "\n"))")
        expectVariety(report)
        try await pod.stop()
    }

    @Test func aFleetsGatewayAnswersEveryFuzzedRequestAndNoPodFalls() async throws {
        let spec = try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: fuzz}
            spec:
              gateway: {port: 0, metricsPort: 0, upstreamTimeoutSeconds: 10}
              firstPodPort: 0
              pools:
              - {name: instant, accelerator: instant, model: meta-llama/Meta-Llama-3-8B, replicas: 3, labels: {app: llama}, startupSeconds: 0,
                 adapters: [{name: sql-lora, preload: true}], engineArgs: {max-loras: 2}}
            """, file: "fuzz.yaml")
        let fleet = try await Fleet.start(spec, profiles: FleetTests.profiles)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 3 })
        let report = await FuzzRun(cases: 2000, seed: 12, hangAfter: .seconds(60)).run(host: "127.0.0.1", port: fleet.gateway.port)
        #expect(report.failed == 0, "\(report)\n\(report.failures.joined(separator: "\n"))")
        expectVariety(report)
        #expect(fleet.list().allSatisfy { $0.isReady && $0.restarts == 0 })
        await fleet.stop()
    }
}
}
