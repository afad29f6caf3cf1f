import AsyncHTTPClient
import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import InferenceAPI
import NIOCore
import TestSupport
import Testing

/// Partition, KV pressure and drain: what the pod, the gateway and clients see.
extension FleetEndToEnd {
@Suite(.serialized) struct ChaosActionTests {
    @Test func actionsAreParsedAlikeEverywhereAndBadParametersAreNamed() throws {
        #expect(try ChaosAction.pod("p", verb: "kv-pressure", [:]) == .kvPressure(pod: "p", usable: 0.1))
        #expect(try ChaosAction.pod("p", verb: "errors", ["rate": "0.5", "kind": "cut"]) == .errors(pod: "p", FaultInjection(rate: 0.5, kind: .cutStream)))
        #expect(throws: FleetError.self) { try ChaosAction.pod("p", verb: "slow", [:]) }
        do {
            _ = try ChaosAction.pod("p", verb: "errors", ["rate": "2", "status": "500"])
            Issue.record("a rate above 1 is refused")
        } catch {
            #expect(error.description == "errors: rate must be a number within 0.0…1.0, got 2")
        }
        do {
            _ = try ChaosAction.pod("p", verb: "explode", [:])
            Issue.record("an unknown verb is refused")
        } catch {
            #expect(error.description.hasPrefix("no action explode; actions: kill, hang, slow, errors, partition, kv-pressure, drain, restore"))
        }
    }

    @Test func aPartitionedPodIsCutOffButKeepsRunningAndComesBackOnRestore() async throws {
        let fleet = try await Fleet.start(try KillScenarioTests.fourPods(), profiles: FleetTests.profiles)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        let port = fleet.gateway.port
        let victim = fleet.list()[1]
        let stream = try await KillScenarioTests.open(
            port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Story", "max_tokens": 1500, "ignore_eos": true, "stream": true}"#,
            onlyTo: victim.address)
        try await fleet.perform(.partition(pod: victim.name))

        // The stream in flight ends with the gateway's error event; the next scrape is refused
        // and the pod leaves the candidates; nobody reaches it, not even directly.
        let cut = try await stream.value
        #expect(cut.body.contains(#""code":502"#) && cut.body.hasSuffix("data: [DONE]\n\n"))
        #expect(try await eventually { !store.candidates(now: store.now).map(\.endpoint.address).contains(victim.address) })
        await #expect(throws: (any Error).self) {
            _ = try await HTTPClient.forTests.get(url: "http://\(victim.address)/health").get()
        }
        for index in 0..<8 {
            let answer = try await KillScenarioTests.post(port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "During \#(index)", "max_tokens": 4}"#)
            #expect(answer.status == 200 && answer.servedBy != victim.address)
        }
        // Unlike a kill, the pod did not crash: it still runs, with no restart, and is Ready (the
        // gateway drops it because its own scrapes fail; the kubelet's probes, from the node,
        // still pass: `PartitionTests`, and in virtual time `VirtualFleetTests`).
        let listed = try #require(fleet.list().first { $0.name == victim.name })
        #expect(listed.phase.status == "Running" && listed.isReady && listed.restarts == 0)
        #expect(await fleet.faults(of: victim.name) == ["partition"])

        try await fleet.perform(.restore(pod: victim.name))
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        #expect(try await KillScenarioTests.post(port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Back", "max_tokens": 4}"#, onlyTo: victim.address).status == 200)
        await fleet.stop()
    }

    /// `vllm:kv_cache_usage_perc` as the pod reports it.
    static func kvUsage(_ address: String) async throws -> Double? {
        let response = try await HTTPClient.forTests.get(url: "http://\(address)/metrics").get()
        let page = String(buffer: response.body ?? ByteBuffer())
        let line = page.split(separator: "\n").first { $0.hasPrefix("vllm:kv_cache_usage_perc{") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    @Test func kvPressureShowsInThePodsMetricsAndTheGatewayRoutesAway() async throws {
        let fleet = try await Fleet.start(try FleetTests.spec(startup: 0), profiles: FleetTests.profiles)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 2 })
        let pressed = fleet.list()[0]
        #expect(try await Self.kvUsage(pressed.address) == 0)

        try await fleet.perform(.kvPressure(pod: pressed.name, usable: 0.05))
        let usage = try #require(try await Self.kvUsage(pressed.address))
        #expect(usage > 0.94 && usage < 0.96, "95% of the cache is held: \(usage)")
        #expect(await fleet.faults(of: pressed.name) == ["kv-pressure 5% usable"])
        // Once the gateway has scraped it, its KV-cache scorer sends everything elsewhere.
        #expect(try await eventually {
            store.candidates(now: store.now).first { $0.endpoint.address == pressed.address }?.metrics.map { $0.kvCacheUsage > 0.9 } == true
        })
        for _ in 0..<10 { #expect(try await FleetTests().complete(fleet).servedBy != pressed.address) }

        try await fleet.perform(.restore(pod: pressed.name))
        #expect(try await Self.kvUsage(pressed.address) == 0)
        await fleet.stop()
    }

    @Test func aDrainedPodFinishesItsStreamWhileAReplacementStarts() async throws {
        let fleet = try await Fleet.start(try KillScenarioTests.fourPods(), profiles: FleetTests.profiles, gracePeriod: 20)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        let drained = fleet.list()[0]
        let stream = try await KillScenarioTests.open(
            fleet.gateway.port,
            #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Story", "max_tokens": 300, "ignore_eos": true, "stream": true}"#,
            onlyTo: drained.address)
        try await fleet.perform(.drain(pod: drained.name))

        #expect(fleet.list().first { $0.name == drained.name }?.phase.status == "Terminating")
        #expect(!store.candidates(now: store.now).map(\.endpoint.address).contains(drained.address))
        // The stream finishes whole; the Deployment's replacement, gpu-4, starts and joins.
        let finished = try await stream.value
        #expect(finished.status == 200 && !finished.body.contains(#""error""#) && finished.body.hasSuffix("data: [DONE]\n\n"))
        #expect(try await eventually { fleet.list().map(\.name) == ["gpu-1", "gpu-2", "gpu-3", "gpu-4"] })
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        await fleet.stop()
    }
}
}
