import AsyncHTTPClient
import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import InferenceAPI
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// The admin API against a running fleet: listing, and chaos that clients can see.
extension FleetEndToEnd {
@Suite(.serialized) struct AdminServerTests {
    func call(_ port: Int, _ method: HTTPMethod, _ path: String, headers: [(String, String)] = []) async throws -> (status: Int, json: JSONValue?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        let response = try await HTTPClient.forTests.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), try? JSONValue.parse(body))
    }

    @Test func podsAreListedAndAHungPodIsRoutedAround() async throws {
        let fleet = try await Fleet.start(try FleetTests.spec(startup: 0), profiles: FleetTests.profiles)
        let admin = try await AdminServer.start(fleet: fleet, host: "127.0.0.1", port: 0)
        let port = admin.localAddress!.port!
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 2 })

        let listing = try await call(port, .GET, "/pods")
        #expect(listing.status == 200)
        let pods = try #require(listing.json?.array)
        #expect(pods.map { $0["name"]?.string } == ["fast-0", "fast-1"])
        #expect(pods.first?["state"]?.string == "Running" && pods.first?["labels"]?["app"]?.string == "llama")

        let hung = try await call(port, .POST, "/pods/fast-0/hang")
        #expect(hung.json?.array?.first?["faults"]?.array?.first?.string == "hang")
        // Its scrapes hang too, so it goes stale and leaves the candidates; requests go to fast-1.
        #expect(try await eventually { store.candidates(now: store.now).map(\.endpoint.podName) == ["fast-1"] })
        let address = fleet.list()[1].address
        for _ in 0..<5 { #expect(try await FleetTests().complete(fleet).servedBy == address) }
        _ = try await call(port, .POST, "/pods/fast-0/restore")
        #expect(try await eventually { store.candidates(now: store.now).count == 2 })

        #expect(try await call(port, .POST, "/pods/nope/kill").status == 404)
        #expect(try await call(port, .POST, "/pods/fast-1/slow").status == 400)
        try await admin.close()
        await fleet.stop()
    }
}
}

extension FleetEndToEnd.AdminServerTests {
    @Test func injectedErrorsAreWhatClientsSeeThroughTheGateway() async throws {
        let fleet = try await Fleet.start(try FleetTests.spec(startup: 0), profiles: FleetTests.profiles)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 2 })
        let port = fleet.gateway.port
        let faulty = fleet.list()[0].address
        let body = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hi", "max_tokens": 8, "ignore_eos": true}"#
        let stream = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hi", "max_tokens": 8, "ignore_eos": true, "stream": true}"#

        // An HTTP error is an answer: relayed as the pod gave it, not retried.
        try await fleet.perform(.errors(pod: "fast-0", FaultInjection(rate: 1, kind: .status(500))))
        let failed = try await KillScenarioTests.post(port, body, onlyTo: faulty)
        #expect(failed.status == 500)
        #expect(try JSONValue.parse(failed.body)["error"]?["message"]?.string == "Injected fault (understudy chaos).")

        // A cut connection: a stream ends with the gateway's error event; a whole response that
        // never came is Envoy's 503 for a reset, not retried (GIE's Envoy config has no retry policy).
        try await fleet.perform(.errors(pod: "fast-0", FaultInjection(rate: 1, kind: .cutStream)))
        let cut = try await KillScenarioTests.post(port, stream, onlyTo: faulty)
        #expect(cut.status == 200)
        #expect(cut.body.contains(#""code":502"#) && cut.body.hasSuffix("data: [DONE]\n\n"))
        let reset = try await KillScenarioTests.post(port, body, onlyTo: faulty)
        #expect(reset.status == 503)
        #expect(reset.servedBy == faulty)
        #expect(reset.body.contains("disconnect/reset before headers. reset reason: connection termination"))

        try await fleet.perform(.restore(pod: "fast-0"))
        // A cut before any byte also counts as a connection failure: the pod is out until its next scrape.
        #expect(try await eventually { store.candidates(now: store.now).count == 2 })
        #expect(try await KillScenarioTests.post(port, body, onlyTo: faulty).status == 200)
        await fleet.stop()
    }
}

extension FleetEndToEnd.AdminServerTests {
    /// What a web page in a browser on this machine could send, and what a token keeps out.
    @Test func crossOriginFormAndForeignHostRequestsAreRefusedAndScaleIsCapped() async throws {
        let fleet = try await Fleet.start(try FleetTests.spec(startup: 0), profiles: FleetTests.profiles)
        let admin = try await AdminServer.start(fleet: fleet, host: "127.0.0.1", port: 0)
        let port = admin.localAddress!.port!
        let crossOrigin = try await call(port, .POST, "/pods/fast-0/kill", headers: [("origin", "http://attacker.example")])
        #expect(crossOrigin.status == 403)
        #expect(crossOrigin.json?["error"]?["message"]?.string?.hasPrefix("cross-origin requests are refused") == true)
        #expect(try await call(port, .POST, "/pods/fast-0/kill", headers: [("content-type", "application/x-www-form-urlencoded")]).status == 415)
        #expect(try await call(port, .POST, "/pods/fast-0/kill", headers: [("host", "attacker.example:8070")]).status == 403)
        // Names that only look like loopback addresses (anyone can point them anywhere).
        #expect(try await call(port, .POST, "/pods/fast-0/kill", headers: [("host", "127.0.0.1.attacker.example:8070")]).status == 403)
        #expect(try await call(port, .POST, "/pods/fast-0/kill", headers: [("origin", "http://127.0.0.1.attacker.example")]).status == 403)
        #expect(try await call(port, .POST, "/pods/fast-0/kill", headers: [("origin", "http://127.0.0.1@attacker.example")]).status == 403)
        #expect(try await call(port, .POST, "/pods/fast-0/kill", headers: [("origin", "null")]).status == 403)
        #expect(fleet.list()[0].restarts == 0 && fleet.list()[0].isReady, "no refused request reached the fleet")
        // The fleet's own tools and pages on loopback still get through.
        #expect(try await call(port, .GET, "/pods", headers: [("origin", "http://localhost:3000")]).status == 200)
        let scale = try await call(port, .POST, "/pools/fast/scale?replicas=100000")
        #expect(scale.status == 400)
        #expect(scale.json?["error"]?["message"]?.string == "scale needs ?replicas=N with 0 ≤ N ≤ \(AdminServer.maxReplicas)")
        #expect(fleet.list().count == 2)

        // restore works on a pod that is not running (killed, backing off): its faults went with it.
        #expect(try await call(port, .POST, "/pods/fast-0/hang").status == 200)
        try await fleet.kill("fast-0")
        let restored = try await call(port, .POST, "/pods/fast-0/restore")
        #expect(restored.status == 200)
        #expect(restored.json?.array?.first?["faults"]?.array?.isEmpty == true)
        try await admin.close()

        let guarded = try await AdminServer.start(fleet: fleet, host: "127.0.0.1", port: 0, token: "s3cret")
        let guardedPort = guarded.localAddress!.port!
        #expect(try await call(guardedPort, .GET, "/pods").status == 401)
        #expect(try await call(guardedPort, .GET, "/pods", headers: [("authorization", "Bearer wrong!")]).status == 401)
        #expect(try await call(guardedPort, .GET, "/pods", headers: [("authorization", "Bearer s3cret")]).status == 200)
        try await guarded.close()
        await fleet.stop()
    }
}

extension FleetEndToEnd.AdminServerTests {
    /// A real Prometheus, discovering the fleet's pods through the admin API's `/sd`, scrapes a
    /// pod that `scale` added on a port nobody told it about.
    @Test func aRealPrometheusFindsAScaledUpPodThroughServiceDiscovery() async throws {
        let prometheus = try toolPath("prometheus")
        let fleet = try await Fleet.start(try FleetTests.spec(startup: 0), profiles: FleetTests.profiles)
        let admin = try await AdminServer.start(fleet: fleet, host: "127.0.0.1", port: 0)
        let adminPort = admin.localAddress!.port!
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-prometheus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("prometheus.yml")
        try Data("""
            global: {scrape_interval: 1s, scrape_timeout: 1s}
            scrape_configs:
            - job_name: understudy-pods
              http_sd_configs: [{url: "http://127.0.0.1:\(adminPort)/sd", refresh_interval: 1s}]
              relabel_configs:
              - {source_labels: [__meta_understudy_pod_label_app], target_label: app}
            """.utf8).write(to: config)
        let webPort = try freeLoopbackPort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: prometheus)
        process.arguments = [
            "--config.file=\(config.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:\(webPort)",
        ]
        let log = directory.appendingPathComponent("prometheus.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: directory)
        }

        /// The pods Prometheus scrapes successfully, by their `pod` label, with their `app` label.
        func scrapedPods() async -> [String: String] {
            guard let response = try? await call(webPort, .GET, "/api/v1/targets?state=active"),
                  let targets = response.json?["data"]?["activeTargets"]?.array else { return [:] }
            var pods: [String: String] = [:]
            for target in targets where target["health"]?.string == "up" {
                if let pod = target["labels"]?["pod"]?.string { pods[pod] = target["labels"]?["app"]?.string ?? "" }
            }
            return pods
        }
        func waitFor(_ condition: ([String: String]) -> Bool) async throws -> [String: String] {
            var seen: [String: String] = [:]
            for _ in 0..<300 {
                seen = await scrapedPods()
                if condition(seen) { return seen }
                try await Task.sleep(for: .milliseconds(100))
            }
            Issue.record("Prometheus scraped \(seen); its log:\n\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            return seen
        }

        #expect(try await waitFor { $0.keys.sorted() == ["fast-0", "fast-1"] } == ["fast-0": "llama", "fast-1": "llama"])
        #expect(try await call(adminPort, .POST, "/pools/fast/scale?replicas=3").status == 200)
        let scaled = try await waitFor { $0.count == 3 }
        #expect(scaled.keys.sorted() == ["fast-0", "fast-1", "fast-2"])
        // It scrapes the new pod's vLLM metrics, at the address the fleet gave it.
        let newAddress = try #require(fleet.list().first { $0.name == "fast-2" }?.address)
        let query = try await call(webPort, .GET, "/api/v1/query?query=vllm:num_requests_running%7Bpod=%22fast-2%22%7D")
        let result = try #require(query.json?["data"]?["result"]?.array?.first)
        #expect(result["metric"]?["instance"]?.string == newAddress)
        try await admin.close()
        await fleet.stop()
    }
}

extension FleetEndToEnd.AdminServerTests {
    /// `understudy chaos list` shows readiness as kubectl does: a hung pod stays Running but is
    /// not Ready once its readiness probe fails.
    @Test func chaosListHasAReadyColumn() async throws {
        let fleet = try await Fleet.start(try FleetTests.spec(startup: 0), profiles: FleetTests.profiles)
        let admin = try await AdminServer.start(fleet: fleet, host: "127.0.0.1", port: 0)
        let url = "http://127.0.0.1:\(admin.localAddress!.port!)"
        #expect(try await eventually { fleet.list().allSatisfy(\.isReady) })
        let before = try await runUnderstudy(["chaos", "list", "--admin", url])
        let rows = before.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.first == ["POD", "POOL", "ADDRESS", "READY", "STATE", "RESTARTS", "FAULTS"], "\(before.output)")
        #expect(rows.dropFirst().map { $0[3] } == ["1/1", "1/1"], "\(before.output)")
        _ = try await runUnderstudy(["chaos", "hang", "fast-0", "--admin", url])
        // The readiness probe fails after a few periods; wait for it rather than for a time.
        var hung: [String] = []
        var attempts = 0
        while attempts < 200, hung.count < 4 || hung[3] != "0/1" {
            attempts += 1
            let listing = try await runUnderstudy(["chaos", "list", "--admin", url])
            hung = listing.output.split(separator: "\n").first { $0.hasPrefix("fast-0") }?.split(separator: " ").map(String.init) ?? []
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(hung.count >= 5 && hung[3] == "0/1" && hung[4] == "Running", "\(hung)")
        try await admin.close()
        await fleet.stop()
    }
}
