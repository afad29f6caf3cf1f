@testable import FleetManager
import Foundation
import Load
import NIOPosix
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

    /// Requests per second the fleet completes when saturated: a flood of sheddable requests
    /// (40 a second, far more than it serves) keeps every pod full — the gateway sheds the rest —
    /// and completions are counted over the 2.5 s after the queues have filled.
    static func capacity(of fleet: Fleet) async -> Double {
        let client = LoadClient(host: "127.0.0.1", port: fleet.gateway.port, group: MultiThreadedEventLoopGroup.singleton)
        defer { client.close() }
        let start = client.now()
        let flood = LoadStream(name: "flood", rate: 40) { index in
            ScenarioRunner.request(sheddable, index: index, defaultModel: "meta-llama/Meta-Llama-3-8B")
        }
        let records = await OpenLoop.run([flood], client: client, from: start, duration: 4)
        let window = (start + 1.5)..<(start + 4)
        return Double(records.count { $0.outcome.isSuccess && window.contains($0.finished) }) / 2.5
    }

    @Test func atThreeTimesCapacitySheddableTrafficIsShedAndCriticalTrafficIsServed() async throws {
        let spec = try Self.fleet()
        let fleet = try await Fleet.start(spec, profiles: FleetTests.profiles)
        let store = fleet.gateway.picker.datastore
        #expect(try await FleetTests().eventually { store.candidates(now: store.now).count == 4 })
        let capacity = await Self.capacity(of: fleet)
        #expect(capacity > 1)

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
