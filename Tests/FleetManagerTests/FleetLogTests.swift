import AsyncHTTPClient
import Foundation
import NIOCore
import TestSupport
import Testing

/// What `understudy up` prints as its pods live and die: a line per lifecycle event.
extension FleetEndToEnd {
@Suite(.serialized) struct FleetLogTests {
    @Test func upPrintsWhenAPodIsKilledAndWhenItRestarts() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-log-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("fleet.yaml")
        try """
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: small}
            spec:
              gateway: {port: 0, metricsPort: 0}
              admin: {port: 0}
              firstPodPort: 0
              pools:
              - {name: fast, accelerator: instant, model: meta-llama/Meta-Llama-3-8B, replicas: 2, labels: {app: llama}, startupSeconds: 0.2}
            """.write(to: file, atomically: true, encoding: .utf8)
        let up = try UnderstudyProcess(["up", file.path, "--grace-period", "1"])
        defer { up.stop() }
        #expect(try await up.waitForLine(within: 60) { $0.contains("pod fast-0 Ready") } != nil, "\(up.output)")
        let adminLine = try #require(try await up.waitForLine(within: 10) { $0.contains("admin API http://") }, "\(up.output)")
        let admin = try #require(adminLine.split(separator: " ").first { $0.hasPrefix("http://") }).replacingOccurrences(of: "/pods", with: "")

        var kill = HTTPClientRequest(url: admin + "/pods/fast-0/kill")
        kill.method = .POST
        let response = try await HTTPClient.forTests.execute(kill, timeout: .seconds(10))
        #expect(response.status == .ok)
        #expect(try await up.waitForLine(within: 10) { $0.contains("pod fast-0 killed") } != nil, "\(up.output)")
        #expect(try await up.waitForLine(within: 10) { $0.contains("pod fast-0 CrashLoopBackOff: restarting in 10 s") } != nil, "\(up.output)")
        // Kubernetes' first back-off is 10 s; then the pod starts again and loads.
        #expect(try await up.waitForLine(within: 30) { $0.contains("pod fast-0 started on port") && $0.contains("(restart 1)") } != nil, "\(up.output)")
        let readyLines = try await up.waitForLine(within: 10) { _ in up.output.components(separatedBy: "pod fast-0 Ready").count > 2 }
        #expect(readyLines != nil, "Ready again after the restart: \(up.output)")
        #expect(up.output.contains("INFO"), "lines in vLLM's format")
    }
}
}
