import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import Load
import Testing

/// Issue 5's agreement check, short: a small fleet at a rate this machine holds, measured live
/// by `understudy bench` through the gateway of `understudy up`, and simulated by the same
/// engine and picker in virtual time, agree within 10 %.
///
/// The live side runs the release build (`swift build -c release --product understudy`, which
/// `.ci/run` does first): a debug build's pods cannot keep an H100's step times.
extension FleetEndToEnd {
@Suite(.serialized) struct AgreementTests {
    static let model = "meta-llama/Meta-Llama-3-8B"

    /// `pools` on fixed loopback ports below the ephemeral range (so no other test's sockets
    /// take them), in the order the simulator also gives them: round-robin then sends request
    /// i to the same pod live and simulated.
    static func fleetFile(name: String, pools: String, directory: URL) throws -> URL {
        let file = directory.appendingPathComponent("\(name).yaml")
        try """
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: \(name)}
            spec:
              gateway: {port: 17080, metricsPort: 17090}
              admin: {port: 17070}
              firstPodPort: 17100
              pools:
            \(pools)
            """.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    /// The release `understudy` beside this package's sources.
    static func releaseExecutable() throws -> URL {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let executable = root.appendingPathComponent(".build/release/understudy")
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw FleetError("the release build is missing at \(executable.path): run `swift build -c release --product understudy` (bash .ci/run does)")
        }
        return executable
    }

    /// `understudy up FLEET --policy round-robin`, then `understudy bench` against its gateway;
    /// the bench's summary of its one stage.
    static func live(_ fleet: URL, rate: Double, duration: Double, seed: UInt64, directory: URL) async throws -> StageSummary {
        let executable = try releaseExecutable()
        let up = Process()
        up.executableURL = executable
        up.arguments = ["up", fleet.path, "--policy", "round-robin", "--grace-period", "1"]
        let output = Pipe()
        up.standardOutput = output
        up.standardError = FileHandle.nullDevice
        try up.run()
        defer {
            if up.isRunning {
                up.interrupt()
                up.waitUntilExit()
            }
        }
        // "understudy up: fleet NAME, 4 pods; gateway http://127.0.0.1:PORT (…)", then "all 4 pods Ready".
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while !text.contains("pods Ready after"), Date() < deadline {
            let data = output.fileHandleForReading.availableData
            guard !data.isEmpty else { break }
            text += String(decoding: data, as: UTF8.self)
        }
        guard text.contains("pods Ready after"), let range = text.range(of: "gateway http://"),
              let url = text[range.lowerBound...].split(separator: " ").dropFirst().first else {
            throw FleetError("understudy up did not bring the fleet up: \(text)")
        }
        let out = directory.appendingPathComponent("live-\(fleet.deletingPathExtension().lastPathComponent)")
        let bench = Process()
        bench.executableURL = executable
        bench.arguments = [
            "bench", "--target", String(url), "--model", model, "--rate", "\(rate)", "--duration", "\(duration)", "--streaming", "--seed", "\(seed)",
            "--out", out.path,
        ]
        bench.standardOutput = FileHandle.nullDevice
        bench.standardError = FileHandle.nullDevice
        try bench.run()
        while bench.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        guard bench.terminationStatus == 0 else { throw FleetError("understudy bench failed with status \(bench.terminationStatus)") }
        return try #require(try BenchOutput.read(from: out).first?.stages.first)
    }

    /// Waits, up to three minutes, until this machine's cores are under 30 % busy: the test
    /// suites running beside this one would otherwise be part of the live measurement.
    static func waitForQuietMachine() async throws {
        for _ in 0..<90 {
            guard let before = MachineLoad.sample() else { return }
            try await Task.sleep(for: .seconds(2))
            if let busy = MachineLoad.sample()?.busy(since: before), busy < 0.3 { return }
        }
    }

    @Test func liveBenchAndSimAgreeOnASmallFleet() async throws {
        try await Self.waitForQuietMachine()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agreement-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        // This machine's request path (client → gateway → pod → client): the time to first
        // token of pods whose accelerator takes no time. The simulator adds it to its requests.
        let instant = try Self.fleetFile(
            name: "instant", pools: "  - {name: fast, accelerator: instant, model: \(Self.model), replicas: 4, labels: {app: llama}, startupSeconds: 0.2}",
            directory: directory)
        let path = try #require(try await Self.live(instant, rate: 4, duration: 6, seed: 3, directory: directory).ttft?.p50)

        // Two H100 and two A100 pods of Llama 3 8B, as the demo fleet.
        let file = try Self.fleetFile(
            name: "mixed", pools: """
              - {name: h100, accelerator: h100-sxm, model: \(Self.model), replicas: 2, labels: {app: llama}, startupSeconds: 0.2}
              - {name: a100, accelerator: a100-80g, model: \(Self.model), replicas: 2, labels: {app: llama}, startupSeconds: 0.2}
            """, directory: directory)
        let (rate, duration, seed) = (8.0, 40.0, UInt64(11))
        let live = try await Self.live(file, rate: rate, duration: duration, seed: seed, directory: directory)

        var simulation = try FleetSimulation(try FleetSpec.load(file: file.path), profiles: FleetTests.profiles, policy: .roundRobin, seed: seed)
        simulation.pathLatency = path
        let plan = BenchPlan(
            workload: Workload(source: .synthetic(.shareGPTSynthetic), models: [(Self.model, 1)], seed: seed), rates: [rate], duration: duration,
            streaming: true)
        let simulated = try simulation.run(plan)[0]

        for (name, stage) in [("live", live), ("sim", simulated)] {
            print(String(
                format: "agreement %@: TTFT p50 %.1f p90 %.1f ms, e2e p50 %.2f p90 %.2f s, %.2f req/s, %.0f tok/s (path %.2f ms)", name,
                stage.ttft!.p50 * 1000, stage.ttft!.p90 * 1000, stage.latency!.p50, stage.latency!.p90, stage.requestsPerSecond,
                stage.outputTokensPerSecond, path * 1000))
        }
        #expect(live.unfaithful == nil, "the live stage measured the machine: \(live.unfaithful ?? "")")
        #expect(live.sent == simulated.sent && live.succeeded == live.sent && simulated.succeeded == simulated.sent)
        func agree(_ name: String, _ value: (StageSummary) -> Double?) {
            guard let measured = value(live), let predicted = value(simulated) else {
                Issue.record("\(name) missing")
                return
            }
            #expect(abs(measured - predicted) / predicted <= 0.10, "\(name): live \(measured), sim \(predicted) (path \(path * 1000) ms, machine \(Int((live.machineBusy ?? 0) * 100)) % busy)")
        }
        agree("TTFT p50") { $0.ttft?.p50 }
        agree("TTFT p90") { $0.ttft?.p90 }
        agree("e2e p50") { $0.latency?.p50 }
        agree("e2e p90") { $0.latency?.p90 }
        agree("requests/s") { $0.requestsPerSecond }
        agree("output tokens/s") { $0.outputTokensPerSecond }
    }
}
}
