import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import InferenceAPI
import TestSupport
import Testing

/// Issue 4's hang scenario on four pods: the pod answers nothing, as a SIGSTOP'd process.
extension FleetEndToEnd {
@Suite(.serialized) struct HangScenarioTests {
    @Test func aHungPodIsRoutedAroundAndItsRequestsEndWithinTheTimeout() async throws {
        let spec = try KillScenarioTests.fourPods(gateway: ", upstreamTimeoutSeconds: 1")
        let fleet = try await Fleet.start(spec, profiles: FleetTests.profiles)
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        let port = fleet.gateway.port
        let victim = fleet.list()[2]

        // On the pod that will hang: a stream whose tokens are flowing, and a completion that
        // would take about 0.7 s.
        let stream = try await KillScenarioTests.open(
            port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Story", "max_tokens": 1500, "ignore_eos": true, "stream": true}"#,
            onlyTo: victim.address)
        let completion = Task {
            try await KillScenarioTests.post(
                port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Essay", "max_tokens": 400, "ignore_eos": true}"#, onlyTo: victim.address)
        }
        // Both are on the pod before it hangs, as the gateway's scrapes show.
        #expect(try await eventually {
            (store.candidates(now: store.now).first { $0.endpoint.address == victim.address }?.metrics.map { $0.runningRequestsSize + $0.waitingQueueSize } ?? 0) >= 2
        })
        try await fleet.perform(.hang(pod: victim.name))
        let hungAt = store.now

        // Its scrapes hang too: its metrics go stale (200 ms) and by 500 ms after the hang, on
        // the gateway's clock, it is no longer a candidate, however slow this machine is.
        while store.now < hungAt + 0.5 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!store.candidates(now: store.now).map(\.endpoint.address).contains(victim.address))
        for index in 0..<12 {
            let answer = try await KillScenarioTests.post(port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "After \#(index)", "max_tokens": 4}"#)
            #expect(answer.status == 200)
            #expect(answer.servedBy != victim.address)
        }
        // What was stuck on it ends with a clear error once the upstream timeout (1 s) passes.
        let stuck = try await completion.value
        #expect(stuck.status == 504)
        #expect(stuck.body.contains("upstream request timeout"))
        let cut = try await stream.value
        #expect(cut.status == 200)
        #expect(cut.body.contains(#""code":504"#) && cut.body.hasSuffix("data: [DONE]\n\n"))

        try await fleet.perform(.restore(pod: victim.name))
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        await fleet.stop()
    }

    /// The kubelet's probes, faster than GIE's one second so the test is short: a hung pod turns
    /// unready, then its liveness probe fails five times and it is restarted, as Kubernetes would.
    @Test func aPodHungForLongFailsItsProbesAndIsRestarted() async throws {
        let spec = try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: probed}
            spec:
              gateway: {port: 0, metricsPort: 0}
              firstPodPort: 0
              pools:
              - {name: fast, accelerator: instant, model: meta-llama/Meta-Llama-3-8B, replicas: 2, labels: {app: llama}, startupSeconds: 0,
                 probes: {periodSeconds: 0.2, timeoutSeconds: 0.2}}
            """, file: "probed.yaml")
        let fleet = try await Fleet.start(spec, profiles: FleetTests.profiles, backoff: RestartBackoff(initial: 0.5, maximum: 5))
        #expect(try await eventually { fleet.list().allSatisfy(\.isReady) })
        try await fleet.perform(.hang(pod: "fast-0"))
        #expect(try await eventually { fleet.list()[0].phase.status == "Running" && !fleet.list()[0].isReady })
        #expect(try await eventually { fleet.list()[0].phase.status == "CrashLoopBackOff" })
        // Restarted fresh: Ready again, its hang gone with the old process.
        #expect(try await eventually { fleet.list()[0].isReady })
        #expect(fleet.list()[0].restarts == 1 && fleet.list()[1].restarts == 0)
        #expect(await fleet.faults(of: "fast-0").isEmpty)
        await fleet.stop()
    }
}
}
