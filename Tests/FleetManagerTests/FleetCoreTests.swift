@testable import FleetManager
import Testing

/// The fleet's rules in virtual time: no servers, the times given.
@Suite struct FleetCoreTests {
    static func core(replicas: Int = 2, startup: Double = 5, backoff: RestartBackoff = RestartBackoff()) throws -> FleetCore {
        let spec = try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: small}
            spec:
              pools:
              - {name: fast, accelerator: instant, model: meta-llama/Meta-Llama-3-8B, replicas: \(replicas), labels: {app: llama}, startupSeconds: \(startup)}
            """, file: "small.yaml")
        return FleetCore(pools: spec.pools, backoff: backoff, gracePeriod: 30)
    }

    /// Carries out a batch as a driver would: launches counted, terminated pods forgotten.
    static func carryOut(_ batch: FleetCore.Effects, _ core: inout FleetCore) {
        for (name, effects) in batch {
            if effects.contains(.launch) { _ = core.beginLaunch(name) }
            _ = core.removeIfTerminated(name)
        }
    }

    static func phases(_ core: FleetCore) -> [String] { core.names.map { "\($0) \(core.pods[$0]!.lifecycle.phase.status)" } }

    @Test func aKilledPodBacksOffRestartsLoadsAndIsReadyAgain() throws {
        var core = try Self.core()
        Self.carryOut(core.createPods(now: 0), &core)
        #expect(Self.phases(core) == ["fast-0 Starting", "fast-1 Starting"])
        Self.carryOut(core.tick(now: 5), &core)
        #expect(Self.phases(core) == ["fast-0 Running", "fast-1 Running"])
        #expect(try core.kill("fast-0", now: 10) == [.scheduleRestart(at: 20)])
        #expect(core.nextDeadline == 20)
        #expect(core.tick(now: 19.9).isEmpty)
        let restart = core.tick(now: 20)
        #expect(restart.map(\.pod) == ["fast-0"] && restart[0].effects == [.launch])
        Self.carryOut(restart, &core)
        #expect(core.tick(now: 25).first?.effects == [.markReady])
        #expect(core.pods["fast-0"]!.lifecycle.isReady && core.pods["fast-0"]!.lifecycle.restarts == 1)
        #expect(throws: FleetError.self) { try core.kill("nope", now: 26) }
    }

    @Test func scalingNamesNewPodsAndDeletesTheNewestFirstAndDrainingReplaces() throws {
        var core = try Self.core(startup: 0)
        Self.carryOut(core.createPods(now: 0), &core)
        Self.carryOut(try core.scale("fast", replicas: 4, now: 1), &core)
        #expect(core.names == ["fast-0", "fast-1", "fast-2", "fast-3"])
        let down = try core.scale("fast", replicas: 2, now: 2)
        #expect(down.map(\.pod) == ["fast-3", "fast-2"] && down.allSatisfy { $0.effects == [.stopAccepting] })
        // A terminating pod with nothing in flight goes; names are never reused.
        #expect(core.drained("fast-3", now: 3) == [.kill])
        Self.carryOut([("fast-3", [.kill])], &core)
        let drain = try core.drain("fast-0", now: 4)
        #expect(drain.map(\.pod) == ["fast-0", "fast-4"])
        #expect(try core.drain("fast-0", now: 5).isEmpty, "already on its way out")
        #expect(throws: FleetError.self) { try core.scale("nope", replicas: 1, now: 6) }
        // The grace period ends what did not drain.
        #expect(core.tick(now: 32).map(\.pod) == ["fast-2"])
    }

    /// Found in review, in real time: a pod deleted while backing off never left the list, and
    /// a kill that raced a delete brought the pod back.
    @Test func aPodDeletedWhileBackingOffIsGoneAndStaysGone() throws {
        var core = try Self.core(startup: 0, backoff: RestartBackoff(initial: 0.3, maximum: 1))
        Self.carryOut(core.createPods(now: 0), &core)
        _ = try core.kill("fast-0", now: 1)
        Self.carryOut([("fast-0", try core.delete("fast-0", now: 1.1))], &core)
        #expect(core.names == ["fast-1"])
        #expect(core.tick(now: 2).isEmpty, "past the back-off: no restart")
        #expect(core.names == ["fast-1"])
    }

    @Test func aPodThatFailsItsProbesLeavesTheEndpointsThenIsRestarted() throws {
        var core = try Self.core(startup: 0)
        Self.carryOut(core.createPods(now: 0), &core)
        #expect(core.dueProbes(now: 0).isEmpty, "the first probe comes a period after Ready")
        var now = 1.0
        var probes = core.dueProbes(now: now)
        #expect(probes.map(\.pod) == ["fast-0", "fast-1"])
        #expect(core.dueProbes(now: now).isEmpty, "no second probe while one is out")
        // fast-0 hangs: its probes time out; fast-1 answers.
        var seen: [[PodEffect]] = []
        for _ in 0..<5 {
            for probe in probes {
                let effects = core.probeAnswered(probe.pod, launch: probe.launch, succeeded: probe.pod != "fast-0", now: now + probe.timeout)
                if probe.pod == "fast-0" { seen.append(effects) } else { #expect(effects.isEmpty) }
            }
            now += 1
            probes = core.dueProbes(now: now + 1)
        }
        #expect(seen.first == [.readinessChanged], "one failure makes it unready")
        #expect(seen.last?.first == .kill, "the fifth in a row restarts it")
        #expect(core.pods["fast-0"]!.lifecycle.phase.status == "CrashLoopBackOff")
    }
}

@Suite struct ChaosTimelineTests {
    @Test func actionsComeOutOnceWhenDueInOrder() {
        var timeline = ChaosTimeline([
            TimedAction(at: 5, .restore(pod: "p-0")), TimedAction(at: 2, .hang(pod: "p-0")), TimedAction(at: 2, .kill(pod: "p-1")),
        ])
        #expect(timeline.nextTime == 2)
        #expect(timeline.actions(due: 1.9).isEmpty)
        #expect(Array(timeline.actions(due: 2)).map(\.action) == [.hang(pod: "p-0"), .kill(pod: "p-1")], "equal times keep their order")
        #expect(timeline.actions(due: 3).isEmpty, "each once")
        #expect(timeline.nextTime == 5)
        #expect(Array(timeline.actions(due: 100)).map(\.action) == [.restore(pod: "p-0")])
        #expect(timeline.nextTime == nil)
    }
}
