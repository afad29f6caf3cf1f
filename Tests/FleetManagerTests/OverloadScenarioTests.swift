@testable import FleetManager
import Foundation
import FakeVLLM
import Load
import TestSupport
import Testing

/// Issue 4's overload scenario: at three times what the fleet can serve, sheddable requests
/// are refused (429) while critical ones are still served.
extension FleetEndToEnd {
@Suite(.serialized) struct OverloadScenarioTests {
    static func fleet() throws -> FleetSpec {
        try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: busy}
            spec:
              gateway: {port: 0, metricsPort: 0}
              firstPodPort: 0
              pools:
              - {name: gpu, accelerator: h100-sxm, model: meta-llama/Meta-Llama-3-8B, replicas: 4, labels: {app: llama}, startupSeconds: 0.2,
                 engineArgs: {max-num-seqs: 2, time-scale: 0.5}}
              manifests:
              - inline: |
                  apiVersion: inference.networking.x-k8s.io/v1alpha2
                  kind: InferenceObjective
                  metadata: {name: critical}
                  spec: {priority: 10, poolRef: {name: busy}}
                  ---
                  apiVersion: inference.networking.x-k8s.io/v1alpha2
                  kind: InferenceObjective
                  metadata: {name: sheddable}
                  spec: {priority: -1, poolRef: {name: busy}}
            """, file: "busy.yaml")
    }

    static let critical = LoadSpec(name: "critical", rate: 1, objective: "critical", promptTokens: 64, maxTokens: 48)

    static let sheddable = LoadSpec(name: "sheddable", rate: 1, objective: "sheddable", promptTokens: 64, maxTokens: 48)

    /// Requests per second the fleet can complete, from its pods' own engine and cost model:
    /// each pod finishes a full batch (max-num-seqs requests of this size) in the batch's
    /// emulated latency, run faster or slower by the time scale. This is an upper bound — the
    /// measured saturated rate on this machine was about 90 % of it — and, unlike a measurement,
    /// does not depend on how busy the machine is while the test runs.
    static func capacity(of spec: FleetSpec) throws -> Double {
        let pool = spec.pools[0]
        var configuration = ServerConfiguration()
        try Fleet.configure(&configuration, pool: pool, port: 0)
        let setup = try EngineSetup(configuration, profiles: FleetTests.profiles)
        let batch = setup.engineConfig.maxNumSeqs
        let prediction = Prediction.run(
            engineConfig: setup.engineConfig, costModel: setup.costModel, batch: batch, input: critical.promptTokens, output: critical.maxTokens)
        return Double(pool.replicas * batch) / prediction.endToEndLatency * configuration.timeScale
    }

    @Test func atThreeTimesCapacitySheddableTrafficIsShedAndCriticalTrafficIsServed() async throws {
        let spec = try Self.fleet()
        let fleet = try await Fleet.start(spec, profiles: FleetTests.profiles)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        let capacity = try Self.capacity(of: spec)

        // Three times capacity: half of capacity critical, the rest sheddable.
        var critical = Self.critical
        critical.rate = 0.5 * capacity
        var sheddable = Self.sheddable
        sheddable.rate = 2.5 * capacity
        let scenario = ScenarioSpec(name: "overload", fleet: spec, duration: 8, load: [critical, sheddable], timeline: [])
        let report = try await ScenarioRunner.run(scenario, on: fleet)
        await fleet.stop()

        let criticalRecords = report.records.filter { $0.stream == "critical" }
        let sheddableRecords = report.records.filter { $0.stream == "sheddable" }
        let criticalServed = Double(criticalRecords.count { $0.outcome.isSuccess }) / Double(criticalRecords.count)
        let shedShare = Double(sheddableRecords.count { $0.outcome.isShed }) / Double(sheddableRecords.count)
        let summary = "capacity \(capacity) req/s\n" + report.render()
        #expect(criticalRecords.count > 20 && sheddableRecords.count > 100, "\(summary)")
        #expect(criticalServed >= 0.99, "critical requests served: \(criticalServed)\n\(summary)")
        #expect(!criticalRecords.contains { $0.outcome.isShed }, "critical requests are never shed")
        #expect(shedShare >= 0.5, "sheddable requests shed: \(shedShare)\n\(summary)")
        #expect(sheddableRecords.allSatisfy { $0.outcome.isSuccess || $0.outcome.isShed }, "sheddable requests are served or shed, nothing else")
    }
}
}
