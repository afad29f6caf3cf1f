import FakeVLLM
@testable import FleetManager
import Foundation
import InferenceAPI
import Load
import NIOCore
import Testing

/// The same scenario live (`understudy scenario`) and in virtual time (`understudy sim`): the
/// clients must see the same thing, phase by phase. As in AgreementTests, the live side runs the
/// release build (a debug build's pods cannot keep an H100's step times).
extension FleetEndToEnd {
@Suite(.serialized) struct ScenarioAgreementTests {
    /// Four H100 pods on fixed loopback ports below the ephemeral range, with round-robin
    /// routing, so that which requests a fault meets depends on the schedule, not on the moment
    /// of a scrape (the picker's own agreement is AgreementTests'). A kill at 4 s, a 2 s hang
    /// from 8 s (shorter than the five failed probes that would restart it: no race with the
    /// kubelet).
    static func files(in directory: URL) throws -> URL {
        try """
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: agree}
            spec:
              gateway: {port: 17280, metricsPort: 17290, upstreamTimeoutSeconds: 60}
              admin: {port: 17270}
              firstPodPort: 17300
              pools:
              - {name: h100, accelerator: h100-sxm, model: meta-llama/Meta-Llama-3-8B, replicas: 4, labels: {app: llama}, startupSeconds: 0.5}
              manifests:
              - inline: |
                  apiVersion: inference.networking.x-k8s.io/v1alpha2
                  kind: InferenceObjective
                  metadata: {name: critical}
                  spec: {priority: 10, poolRef: {name: agree}}
                  ---
                  apiVersion: inference.networking.x-k8s.io/v1alpha2
                  kind: InferenceObjective
                  metadata: {name: sheddable}
                  spec: {priority: -1, poolRef: {name: agree}}
                  ---
                  apiVersion: inference.networking.x-k8s.io/v1alpha1
                  kind: EndpointPickerConfig
                  plugins:
                  - type: round-robin-picker
                  schedulingProfiles:
                  - name: default
                    plugins:
                    - pluginRef: round-robin-picker
            """.write(to: directory.appendingPathComponent("fleet.yaml"), atomically: true, encoding: .utf8)
        let scenario = directory.appendingPathComponent("scenario.yaml")
        try """
            apiVersion: understudy.dev/v1alpha1
            kind: Scenario
            metadata: {name: agree}
            spec:
              fleet: fleet.yaml
              durationSeconds: 14
              seed: 3
              load:
              - {name: chat, rate: 8, objective: critical, promptTokens: 256, maxTokens: 256, stream: true}
              - {name: batch, rate: 4, objective: sheddable, promptTokens: 512, maxTokens: 32}
              timeline:
              - {at: 4, action: kill, pod: h100-0}
              - {at: 8, action: hang, pod: h100-2}
              - {at: 10, action: restore, pod: h100-2}
            """.write(to: scenario, atomically: true, encoding: .utf8)
        return scenario
    }

    /// Counts within 10 %, or one request (a phase holds tens of requests, a fault breaks a few).
    static func close(_ live: Int?, _ simulated: Int?) -> Bool {
        guard let live, let simulated else { return false }
        return abs(live - simulated) <= max(1, Int((0.1 * Double(max(live, simulated))).rounded(.up)))
    }

    static func close(_ live: Double?, _ simulated: Double?) -> Bool {
        guard let live, let simulated else { return live == nil && simulated == nil }
        return abs(live - simulated) <= 0.1 * max(live, simulated)
    }

    @Test func aScenarioLiveAndSimulatedAgreePhaseByPhase() async throws {
        try await AgreementTests.waitForQuietMachine()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("scenario-agreement-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try Self.files(in: directory)

        let scenario = Process()
        scenario.executableURL = try AgreementTests.releaseExecutable()
        scenario.arguments = ["scenario", file.path, "--out", directory.appendingPathComponent("live").path]
        scenario.standardOutput = FileHandle.nullDevice
        scenario.standardError = FileHandle.nullDevice
        try scenario.run()
        while scenario.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(scenario.terminationStatus == 0)
        let live = try JSONValue.parse(ByteBuffer(bytes: try Data(contentsOf: directory.appendingPathComponent("live/report.json"))))
        let simulated = try ScenarioSimulation.run(try ScenarioSpec.load(file: file.path), profiles: FleetTests.profiles).json()
        let reports = "live: \(live)\nsimulated: \(simulated)"

        #expect(live["sent"] == simulated["sent"], "the same seeded schedule")
        #expect(Self.close(live["succeeded"]?.int, simulated["succeeded"]?.int), "succeeded\n\(reports)")
        let livePhases = live["phases"]?.array ?? [], simulatedPhases = simulated["phases"]?.array ?? []
        #expect(livePhases.count == 4 && simulatedPhases.count == 4)
        for (livePhase, simulatedPhase) in zip(livePhases, simulatedPhases) {
            let name = livePhase["label"]?.string ?? "?"
            for key in ["sent", "succeeded", "failed"] {
                #expect(Self.close(livePhase[key]?.int, simulatedPhase[key]?.int), "\(name) \(key)\n\(reports)")
            }
            for p in ["p50", "p90"] {
                #expect(Self.close(livePhase["latency"]?[p]?.number, simulatedPhase["latency"]?[p]?.number), "\(name) e2e \(p)\n\(reports)")
            }
        }
        // The kill broke the streams on its pod, and the fleet took the pod out at once.
        let kill = simulated["faults"]?.array?.first
        #expect(kill?["clientFailures"]?.int ?? 0 > 0 && kill?["stoppedRouting"] == .double(0))
        #expect(live["faults"]?.array?.first?["clientFailures"]?.int ?? 0 > 0)
    }
}
}
