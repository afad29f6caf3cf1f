import FakeVLLM
import Foundation
import Load
import Testing
import TestSupport

/// `--dataset azure-code`: the shipped Azure trace replayed at its times, by `understudy bench`
/// against a live pod and by `understudy sim` in virtual time — the same requests either way.
struct TraceReplayTests {
    /// The trace's first 80 s, sent in 4 s.
    static let slice = ["--dataset", "azure-code", "--time-scale", "0.05", "--duration", "4"]

    @Test func benchAndSimReplayTheSameSliceOfTheTrace() async throws {
        let file = FleetTests.profiles.root.appendingPathComponent("workloads/azure-llm-2023-code.csv")
        let trace = try RequestTrace.azure(String(contentsOf: file, encoding: .utf8), name: "azure-code").timeScaled(by: 0.05)
        let expected = trace.entries(before: 4)
        #expect(expected.count > 20)
        let meanOutput = Double(expected.reduce(0) { $0 + $1.outputTokens }) / Double(expected.count)
        let meanInput = Double(expected.reduce(0) { $0 + $1.inputTokens }) / Double(expected.count)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = "meta-llama/Meta-Llama-3-8B"
        let server = try await ServeProcess.start(["--model", model, "--accelerator", "instant"])
        defer { server.stop() }
        let live = directory.appendingPathComponent("live")
        let bench = try await runUnderstudy(["bench", "--target", server.base, "--model", model, "--out", live.path] + Self.slice, timeout: 120)
        #expect(bench.status == 0, "\(bench.output)")
        let simulated = directory.appendingPathComponent("sim")
        let fleet = FleetTests.profiles.root.appendingPathComponent("fleets/demo.yaml").path
        let sim = try await runUnderstudy(["sim", fleet, "--model", model, "--out", simulated.path] + Self.slice, timeout: 120)
        #expect(sim.status == 0, "\(sim.output)")

        for run in [live, simulated] {
            let report = try #require(try BenchOutput.read(from: run).first)
            #expect(report.dataset == "azure-code")
            let stage = try #require(report.stages.first)
            #expect(report.stages.count == 1)
            // Every request of the slice, with the trace's lengths (all fit Llama 3's 8k context).
            #expect(stage.sent == expected.count && stage.succeeded == stage.sent, "\(run.lastPathComponent): \(stage.sent) sent, \(stage.succeeded) ok")
            #expect(abs(try #require(stage.meanOutputTokens) - meanOutput) < 1e-6, "\(run.lastPathComponent): \(stage.meanOutputTokens!) vs \(meanOutput)")
            #expect(abs(try #require(stage.meanInputTokens) - meanInput) < 1e-6, "\(run.lastPathComponent): \(stage.meanInputTokens!) vs \(meanInput)")
            #expect(abs(stage.rate - Double(expected.count) / 4) < 1e-9)
        }
    }

    @Test func aTraceTakesNoRateAndOnlyATraceTakesATimeScale() async throws {
        let withRate = try await runUnderstudy(["sim", "profiles/fleets/demo.yaml", "--dataset", "azure-conv", "--rate", "5"])
        #expect(withRate.status != 0 && withRate.output.contains("sends at its own times"), "\(withRate.output)")
        let scaled = try await runUnderstudy(["sim", "profiles/fleets/demo.yaml", "--rate", "5", "--duration", "1", "--time-scale", "2"])
        #expect(scaled.status != 0 && scaled.output.contains("--time-scale applies to a trace"), "\(scaled.output)")
    }

    @Test func simRatesAsFractionsOfTheCapacityItFindsFirst() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("capacity-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let fleet = directory.appendingPathComponent("one.yaml")
        try """
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: one}
            spec:
              pools:
              - {name: gpu, accelerator: l4, model: meta-llama/Meta-Llama-3-8B, replicas: 1, labels: {app: llama}}
            """.write(to: fleet, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("report")
        let run = try await runUnderstudy(["sim", fleet.path, "--rate", "0.5x,1x", "--duration", "5", "--out", out.path], timeout: 300)
        #expect(run.status == 0, "\(run.output)")
        let line = try #require(run.output.split(separator: "\n").first { $0.hasPrefix("capacity: ") }, "\(run.output)")
        let capacity = try #require(Double(line.dropFirst("capacity: ".count).prefix { $0 != " " }))
        // The search's stages, doubling, are printed before it.
        #expect(run.output.contains("offered 1 req/s: served") && run.output.contains("offered 2 req/s: served"))
        let rates = try #require(try BenchOutput.read(from: out).first).stages.map(\.rate)
        #expect(rates.count == 2 && abs(rates[1] - capacity) < 0.01 && abs(rates[0] * 2 - rates[1]) < 1e-9, "\(rates) at capacity \(capacity)")
    }
}
