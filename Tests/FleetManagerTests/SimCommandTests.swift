import Foundation
import Load
import Testing
import TestSupport

/// `understudy sim --refresh-metrics-interval`: how stale the picker's view of the pods is, as
/// GIE's endpoint picker flag of that name sets it.
struct SimCommandTests {
    /// The gateway picks among pods scraped in the last 200 ms (docs/gateway.md): scraped every
    /// 50 ms, every request is served; scraped every second, most find no candidate (503).
    @Test func theRefreshIntervalDecidesHowFreshThePickersViewIs() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("refresh-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var stages: [String: StageSummary] = [:]
        for interval in ["50ms", "1s"] {
            let out = directory.appendingPathComponent(interval)
            let run = try await runUnderstudy(
                ["sim", "profiles/fleets/demo.yaml", "--rate", "20", "--duration", "10", "--refresh-metrics-interval", interval, "--out", out.path],
                timeout: 300)
            #expect(run.status == 0, "\(run.output)")
            stages[interval] = try #require(try BenchOutput.read(from: out).first?.stages.first)
        }
        let fresh = try #require(stages["50ms"]), stale = try #require(stages["1s"])
        #expect(fresh.sent > 100 && fresh.succeeded == fresh.sent, "\(fresh.errors)")
        // Fresh for 200 ms of every second: about four in five requests find no candidate.
        let refused = stale.errors["HTTP 503"] ?? 0
        #expect(stale.sent == fresh.sent && refused > stale.sent / 2 && refused < stale.sent && stale.succeeded == stale.sent - refused, "\(stale.errors)")
    }

    @Test func refusesARefreshIntervalWithoutAUnitOrOutOfRange() async throws {
        for bad in ["50", "0ms", "2m", "90s"] {
            let run = try await runUnderstudy(["sim", "profiles/fleets/demo.yaml", "--rate", "1", "--duration", "1", "--refresh-metrics-interval", bad])
            #expect(run.status != 0 && run.output.contains("--refresh-metrics-interval: a duration from 1ms to 60s"), "\(bad): \(run.output)")
        }
    }
}
