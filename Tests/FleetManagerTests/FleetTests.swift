import AsyncHTTPClient
import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import NIOCore
import TestSupport
import Testing

/// A fleet in this process: pods, registry, gateway, lifecycle, in real time.
extension FleetEndToEnd {
@Suite(.serialized) struct FleetTests {
    static let profiles = ProfileStore(root: FleetSpecTests.root.appendingPathComponent("profiles"))

    static func spec(replicas: Int = 2, startup: Double = 0.3) throws -> FleetSpec {
        try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: small}
            spec:
              gateway: {port: 0, metricsPort: 0}
              firstPodPort: 0
              pools:
              - {name: fast, accelerator: instant, model: meta-llama/Meta-Llama-3-8B, replicas: \(replicas), labels: {app: llama}, startupSeconds: \(startup)}
            """, file: "small.yaml")
    }

    func complete(_ fleet: Fleet) async throws -> (status: Int, servedBy: String?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(fleet.gateway.port)/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hi", "max_tokens": 2}"#))
        let response = try await HTTPClient.forTests.execute(request, timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), response.headers.first(name: "x-gateway-destination-endpoint-served"))
    }

    @Test func podsStartLoadBecomeReadyAndServeThroughTheGateway() async throws {
        let fleet = try await Fleet.start(try Self.spec(), profiles: Self.profiles)
        // Loading: Starting, not Ready, so the gateway has nothing to route to.
        #expect(fleet.list().map(\.phase.status) == ["Starting", "Starting"])
        #expect(try await complete(fleet).status == 503)
        #expect(try await eventually { fleet.list().allSatisfy(\.isReady) })
        #expect(try await eventually { fleet.gateway.picker.datastore.candidates(now: fleet.gateway.picker.datastore.now).count == 2 })
        let response = try await complete(fleet)
        #expect(response.status == 200)
        #expect(fleet.list().map(\.address).contains(response.servedBy ?? ""))
        await fleet.stop()
        #expect(fleet.list().isEmpty)
    }

    @Test func aKilledPodBacksOffRestartsAndRejoins() async throws {
        let fleet = try await Fleet.start(try Self.spec(), profiles: Self.profiles, backoff: RestartBackoff(initial: 1, maximum: 5))
        #expect(try await eventually { fleet.gateway.picker.datastore.candidates(now: fleet.gateway.picker.datastore.now).count == 2 })
        let victim = fleet.list()[0]
        try await fleet.kill(victim.name)
        #expect(fleet.list()[0].phase.status == "CrashLoopBackOff")
        // While it backs off, requests go on, to the other pod.
        for _ in 0..<10 where fleet.list()[0].phase.status == "CrashLoopBackOff" {
            let response = try await complete(fleet)
            #expect(response.status == 200)
            if fleet.list()[0].phase.status == "CrashLoopBackOff" { #expect(response.servedBy != victim.address) }
        }
        // Back-off, start, load, Ready again at the same address, and a candidate again.
        #expect(try await eventually { fleet.list()[0].isReady })
        #expect(fleet.list()[0].restarts == 1 && fleet.list()[0].address == victim.address)
        #expect(try await eventually { fleet.gateway.picker.datastore.candidates(now: fleet.gateway.picker.datastore.now).count == 2 })
        await fleet.stop()
    }
}
}

extension FleetEndToEnd.FleetTests {
    @Test func scalingAddsPodsThatJoinAndDrainsTheNewestFirst() async throws {
        let fleet = try await Fleet.start(try Self.spec(), profiles: Self.profiles, gracePeriod: 5)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 2 })
        try await fleet.scale("fast", replicas: 3)
        #expect(fleet.list().map(\.name) == ["fast-0", "fast-1", "fast-2"])
        #expect(try await eventually { store.candidates(now: store.now).count == 3 })
        try await fleet.scale("fast", replicas: 1)
        // The two newest leave the pool at once and go when their (no) requests are done.
        #expect(store.candidates(now: store.now).map(\.endpoint.podName) == ["fast-0"])
        #expect(try await eventually { fleet.list().map(\.name) == ["fast-0"] })
        #expect(try await complete(fleet).status == 200)
        await #expect(throws: FleetError.self) { try await fleet.scale("nope", replicas: 1) }
        await fleet.stop()
    }
}

extension FleetEndToEnd.FleetTests {
    @Test func podPortsMayNotRunPastTheLastPort() {
        #expect(throws: ConfigError.self) {
            _ = try FleetSpec.parse("""
                apiVersion: understudy.dev/v1alpha1
                kind: Fleet
                metadata: {name: f}
                spec:
                  firstPodPort: 65500
                  pools:
                  - {name: a, accelerator: instant, model: m, replicas: 100, labels: {app: x}}
                """, file: "f.yaml")
        }
    }
}
