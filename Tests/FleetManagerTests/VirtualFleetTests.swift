import FakeVLLM
@testable import FleetManager
import Load
import Testing

/// The fleet's faults in virtual time, as clients see them in the scenario report.
@Suite struct VirtualFleetTests {
    static func scenario(_ timeline: [TimedAction], duration: Double = 12, stream: Bool = true, retryOnReset: Bool = false) throws -> ScenarioSpec {
        let fleet = try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: small}
            spec:
              gateway: {retryOnReset: \(retryOnReset)}
              pools:
              - {name: gpu, accelerator: h100-sxm, model: meta-llama/Meta-Llama-3-8B, replicas: 3, labels: {app: llama}, startupSeconds: 1}
            """, file: "small.yaml")
        return ScenarioSpec(
            name: "s", fleet: fleet, duration: duration, seed: 2,
            load: [LoadSpec(name: "chat", rate: 6, promptTokens: 128, maxTokens: 128, stream: stream)], timeline: timeline)
    }

    @Test func aPartitionedPodLeavesTheGatewayButNotItsNodeAndComesBackWithoutARestart() throws {
        let report = try ScenarioSimulation.run(
            try Self.scenario([TimedAction(at: 3, .partition(pod: "gpu-1")), TimedAction(at: 8, .restore(pod: "gpu-1"))]),
            profiles: FleetTests.profiles)
        let partition = try #require(report.faults.first)
        #expect(partition.stoppedRouting.map { $0 <= 0.05 } == true, "its next scrape is refused")
        // The kubelet's probes pass throughout (no restart, which would take a 10 s back-off):
        // routable again as soon as the restore lets a scrape through.
        let back = try #require(partition.routableAgain)
        #expect(back > 5 && back < 5.2, "\(back)")
        #expect(partition.clientFailures > 0, "the streams in flight were cut")
        let during = report.records.filter { $0.sent > 3.01 && $0.sent < 8 }
        #expect(!during.isEmpty && during.allSatisfy { $0.outcome.isSuccess }, "nothing sent during it failed")
    }

    @Test func aHungPodIsRestartedByItsLivenessProbe() throws {
        let report = try ScenarioSimulation.run(try Self.scenario([TimedAction(at: 2, .hang(pod: "gpu-0"))], duration: 20), profiles: FleetTests.profiles)
        let hang = try #require(report.faults.first)
        // Stale after 200 ms; five failed probes (1 s each) kill it; 10 s back-off, 1 s load.
        #expect(hang.stoppedRouting.map { $0 <= 0.2 } == true)
        let back = try #require(hang.routableAgain)
        #expect(back > 15 && back < 18, "\(back)")
        #expect(report.records.contains { $0.outcome == .streamError(502) }, "its held streams ended when it was killed")
    }

    /// A pod that resets connections before answering (chaos `errors kind: cut` on whole
    /// responses) costs its clients a 503, as Envoy without a retry policy answers; with
    /// `retryOnReset` the gateway tries the next endpoint instead, as the live data plane does.
    @Test(arguments: [false, true]) func aResetBeforeTheHeadIsA503UnlessTheGatewayRetriesIt(retryOnReset: Bool) throws {
        let cut = TimedAction(at: 2, .errors(pod: "gpu-0", FaultInjection(rate: 1, kind: .cutStream)))
        let report = try ScenarioSimulation.run(try Self.scenario([cut], stream: false, retryOnReset: retryOnReset), profiles: FleetTests.profiles)
        let after = report.records.filter { $0.sent > 2.2 }
        let failed = after.filter { !$0.outcome.isSuccess }
        if retryOnReset {
            #expect(failed.isEmpty, "\(failed.count) of \(after.count) failed")
            #expect(after.contains { $0.attempts == 2 && $0.servedBy != nil }, "some were cut on gpu-0 and answered by the next pod")
        } else {
            #expect(!failed.isEmpty && failed.allSatisfy { $0.outcome == .status(503) }, "\(failed.map(\.outcome))")
        }
    }
}
