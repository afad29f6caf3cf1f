import ArgumentParser
import FakeVLLM
import FleetManager
import Foundation
import Gateway
import Load

/// `understudy sim`: the same fleet, engine and picker in virtual time.
struct SimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Simulate a fleet file in virtual time (same engine, same picker, 50 ms scrapes) under bench's load; same report as bench. Given a scenario file, run the scenario; same report as `understudy scenario`.",
        discussion: """
            No sockets and no clock: a fleet of hundreds of pods and minutes of traffic take seconds. Several \
            policies (--policy default,round-robin) run one after another on the same requests and share one report. \
            A scenario (kind: Scenario) brings its fleet up, sends its load and runs its timeline in virtual time, \
            with the fleet's lifecycle (start-up, probes, back-off) as `understudy up` runs it; --out writes its report.
            """)

    @Argument(help: "Fleet file, or scenario file.") var fleetFile: String
    @Option(help: "Picker policies, comma-separated: \(PickerPolicy.names).") var policy = "default"
    @Option(help: "Seconds from the gateway's decision to the pod's engine: a live stack's socket path (0: none).")
    var pathLatency = 0.0
    @Option(help: "How often the gateway scrapes every pod, as GIE's endpoint picker flag of the same name (10ms, 50ms, 1s); it picks among pods scraped in the last 200 ms.")
    var refreshMetricsInterval = "50ms"
    @OptionGroup var options: PlanOptions

    func run() async throws {
        let profiles = try ProfileStore.locate()
        if UnderstudyDocument.kind(file: fleetFile) == "Scenario" { return try runScenario(profiles: profiles) }
        let spec: FleetSpec
        do {
            spec = try FleetSpec.load(file: fleetFile)
        } catch {
            throw ValidationError(error.description)
        }
        let policies = try policy.split(separator: ",").map { name in
            guard let policy = PickerPolicy(rawValue: String(name)) else { throw ValidationError("--policy: no policy \(name); policies: \(PickerPolicy.names)") }
            return policy
        }
        guard !policies.isEmpty else { throw ValidationError("--policy: at least one of \(PickerPolicy.names)") }
        guard pathLatency >= 0, pathLatency.isFinite else { throw ValidationError("--path-latency must be ≥ 0 seconds") }
        guard let scrapeInterval = GoDuration.seconds(refreshMetricsInterval), (0.001...60).contains(scrapeInterval) else {
            throw ValidationError("--refresh-metrics-interval: a duration from 1ms to 60s, such as 50ms or 1s; got \(refreshMetricsInterval)")
        }
        // One simulation of the fleet under a policy, from start-up.
        func simulation(_ policy: PickerPolicy, seed: UInt64) throws -> FleetSimulation {
            do {
                var simulation = try FleetSimulation(spec, profiles: profiles, policy: policy, seed: seed)
                simulation.pathLatency = pathLatency
                simulation.scrapeInterval = scrapeInterval
                return simulation
            } catch {
                throw ValidationError("\(fleetFile): \(error)")
            }
        }
        // Every policy runs at the same rates: fractions of the capacity under the first.
        let plan = try await options.atCapacityFractions(try options.plan(defaultModel: spec.pools.first?.model), measuredBy: "policy \(policies[0].rawValue)") { probe in
            var fresh = try simulation(policies[0], seed: probe.workload.seed)
            return try fresh.run(probe)[0]
        }
        let pods = spec.pools.reduce(0) { $0 + $1.replicas }
        print("understudy sim: fleet \(spec.name), \(pods) pods, \(plan.rates.count) stages of \(plan.duration.formatted()) s, dataset \(plan.workload.datasetName)")
        fflush(nil)
        var reports: [BenchReport] = []
        for policy in policies {
            var simulation = try simulation(policy, seed: plan.workload.seed)
            let started = ContinuousClock.now
            let bar = ProgressBar(stages: plan.rates.count)
            let stages = try simulation.run(plan) { stage, done in
                bar.show(stage: stage, rate: plan.rates[stage], done: done, detail: "policy \(policy.rawValue)", final: done >= 1)
            }
            let wall = started.duration(to: .now)
            print("  policy \(policy.rawValue): \(wall.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1)))) of wall time")
            reports.append(BenchReport(
                tool: "understudy sim", label: policy.rawValue, target: fleetFile, models: plan.workload.models.map(\.name),
                dataset: plan.workload.datasetName, seed: plan.workload.seed, streaming: plan.streaming, command: PlanOptions.commandLine,
                stages: stages))
        }
        try options.finish(reports)
    }

    private func runScenario(profiles: ProfileStore) throws {
        let scenario = try ScenarioCommand.load(fleetFile, command: "sim", detail: ", in virtual time")
        let started = ContinuousClock.now
        let report: ScenarioReport
        do {
            report = try ScenarioSimulation.run(scenario, profiles: profiles)
        } catch {
            throw ValidationError("\(fleetFile): \(error)")
        }
        let wall = started.duration(to: .now)
        print("  \(wall.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1)))) of wall time")
        try report.print(out: options.out)
    }
}

/// `understudy report DIR...`: several runs' reports side by side.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Combine the reports of several bench or sim runs (their --out directories) into one table and set of charts.")

    @Argument(help: "Directories written by bench or sim --out.") var directories: [String]
    @Option(help: "Rename the runs, comma-separated, in order (e.g. live,sim); runs with the same label are joined into one.")
    var labels: String?
    @Option(help: "Write the combined report here.") var out: String

    func run() throws {
        var reports: [BenchReport] = []
        for directory in directories {
            do {
                reports += try BenchOutput.read(from: URL(fileURLWithPath: directory))
            } catch {
                throw ValidationError("\(directory): no readable report.json (\(error))")
            }
        }
        if let labels {
            let names = labels.split(separator: ",").map(String.init)
            guard names.count == reports.count else { throw ValidationError("--labels: \(reports.count) runs, \(names.count) labels") }
            for index in reports.indices { reports[index].label = names[index] }
        }
        // Runs with the same label are one run in parts (rates measured separately): one line each.
        var merged: [BenchReport] = []
        for report in reports {
            if let index = merged.firstIndex(where: { $0.label == report.label }) {
                merged[index].stages = (merged[index].stages + report.stages).sorted { $0.rate < $1.rate }
            } else {
                merged.append(report)
            }
        }
        try PlanOptions.finish(merged, out: out)
    }
}
