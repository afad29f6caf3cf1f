@testable import FleetManager
import Foundation
import InferenceAPI
import Load
import NIOCore
import Testing

/// Scenario files and the report's arithmetic, without running anything.
@Suite struct ScenarioTests {
    @Test func theExampleScenarioLoads() throws {
        let scenario = try ScenarioSpec.load(file: FleetSpecTests.root.appendingPathComponent("profiles/scenarios/kill-and-hang.yaml").path)
        #expect(scenario.fleet.name == "demo" && scenario.duration == 40)
        #expect(scenario.load.map(\.name) == ["chat", "batch"] && scenario.load[0].stream && scenario.load[1].objective == "sheddable")
        #expect(scenario.timeline.map(\.action) == [.kill(pod: "llama3-h100-0"), .hang(pod: "llama3-a100-1"), .restore(pod: "llama3-a100-1")])
    }

    func scenario(_ body: String) -> String {
        """
        apiVersion: understudy.dev/v1alpha1
        kind: Scenario
        metadata: {name: s}
        spec:
          fleet: \(FleetSpecTests.root.appendingPathComponent("profiles/fleets/demo.yaml").path)
        \(body)
        """
    }

    @Test(arguments: [
        ("  durationSeconds: 10\n  load: [{rate: 0}]", "spec.load[0].rate: Invalid value: 0.0"),
        ("  durationSeconds: 10\n  load: [{rate: 1, model: nope}]", #"spec.load[0].model: Invalid value: "nope": no pool serves it"#),
        ("  durationSeconds: 10\n  load: [{rate: 1}]\n  timeline: [{at: 12, action: kill, pod: llama3-h100-0}]", "spec.timeline[0].at: Invalid value: 12.0"),
        ("  durationSeconds: 10\n  load: [{rate: 1}]\n  timeline: [{at: 1, action: kill, pod: gpu-0}]", #"spec.timeline[0].pod: Invalid value: "gpu-0""#),
        ("  durationSeconds: 10\n  load: [{rate: 1}]\n  timeline: [{at: 1, action: slow, pod: llama3-h100-0}]", "spec.timeline[0]: Invalid value: slow needs factor"),
        ("  durationSeconds: 10\n  load: [{rate: 1}]\n  timeline: [{at: 1, action: melt, pod: llama3-h100-0}]", #"spec.timeline[0].action: Unsupported value: "melt""#),
        ("  load: [{rate: 1}]", "spec.durationSeconds: Required value"),
    ])
    func aBadScenarioIsRefusedNamingTheField(_ body: String, _ expected: String) {
        do {
            _ = try ScenarioSpec.parse(scenario(body), file: "s.yaml")
            Issue.record("accepted: \(body)")
        } catch {
            #expect(error.description.contains(expected), "\(error)")
        }
    }

    func record(sent: Double, finished: Double, _ outcome: Outcome, attempts: Int = 1) -> RequestRecord {
        RequestRecord(stream: "s", scheduled: sent, sent: sent, finished: finished, outcome: outcome, attempts: attempts)
    }

    @Test func theReportCountsPhasesAndWhatEachFaultDid() {
        let records = [
            record(sent: 1, finished: 2, .ok),
            record(sent: 4, finished: 5.2, .streamError(502)),   // in flight at the kill
            record(sent: 5.1, finished: 5.3, .ok, attempts: 2),  // retried elsewhere
            record(sent: 6, finished: 6.5, .status(429)),
            record(sent: 7, finished: 8, .ok),
            record(sent: 11, finished: 12, .ok),
        ]
        let report = ScenarioReport(
            name: "r", duration: 15, records: records,
            actions: [.init(at: 5, action: .kill(pod: "p-0")), .init(at: 10, action: .restore(pod: "p-0"))],
            membership: ["p-0": [.init(at: 0, routable: true), .init(at: 5.004, routable: false), .init(at: 9.5, routable: true)]],
            addresses: ["p-0": "127.0.0.1:8000"])
        #expect(report.sent == 6 && report.succeeded == 4 && report.shed == 1 && report.retried == 1)
        #expect(report.failuresByCause.map(\.cause) == ["stream error event 502"])
        #expect(report.phases.map(\.label) == ["before", "after kill p-0", "after restore p-0"])
        // The stream cut by the kill counts after the kill, though it was sent before.
        #expect(report.phases.map(\.records.count) == [1, 4, 1])
        #expect(report.phases[1].failed == 1)
        let kill = try! #require(report.faults.first)
        #expect(report.faults.count == 1, "restore is not a fault")
        #expect(abs(kill.stoppedRouting! - 0.004) < 1e-9 && kill.routableAgain == 4.5)
        #expect(kill.clientFailures == 1 && abs(kill.lastFailure! - 0.2) < 1e-9)
        #expect(report.render().contains("+4 ms"))
    }

    @Test func phasesAreSplitByStreamAndWrittenAsJSON() throws {
        let records = [
            RequestRecord(stream: "chat", scheduled: 1, sent: 1, finished: 2, outcome: .ok),
            RequestRecord(stream: "batch", scheduled: 1.5, sent: 1.5, finished: 3, outcome: .ok),
            RequestRecord(stream: "batch", scheduled: 6, sent: 6, finished: 6.1, outcome: .status(429)),
            RequestRecord(stream: "chat", scheduled: 4, sent: 4, finished: 5.5, outcome: .streamError(502)),
            // Broken by the kill, ending after the restore: still the kill's.
            RequestRecord(stream: "batch", scheduled: 4.5, sent: 4.5, finished: 7.5, outcome: .status(502)),
        ]
        let report = ScenarioReport(
            name: "r", duration: 10, records: records,
            actions: [.init(at: 5, action: .kill(pod: "p-0")), .init(at: 7, action: .restore(pod: "p-0"))],
            membership: [:], addresses: [:])
        #expect(report.streamNames == ["chat", "batch"])
        let text = report.render()
        // Per phase: a row per stream and a total.
        let after = text.split(separator: "\n").drop { !$0.contains("after kill p-0") }.prefix(3).map { $0.split(separator: " ").joined(separator: " ") }
        #expect(after.count == 3 && after[0].contains("chat 1 0 1 0") && after[1].contains("batch 2 0 1 1") && after[2].contains("all 3 0 2 1"), "\(text)")
        let json = report.json()
        let phases = try #require(json["phases"]?.array)
        #expect(phases.map { $0["label"]?.string } == ["before", "after kill p-0", "after restore p-0"])
        #expect(phases[1]["streams"]?.array?.map { $0["failed"]?.int } == [1, 1])
        #expect(phases[1]["streams"]?.array?.map { $0["shed"]?.int } == [0, 1])
        #expect(phases[2]["sent"]?.int == 0)
        #expect(json["faults"]?.array?.first?["clientFailures"]?.int == 2)
        // The text is valid JSON that reads back the same.
        var buffer = ByteBuffer()
        buffer.writeJSON(json)
        #expect(try JSONValue.parse(String(buffer: buffer)) == json)
    }
}
