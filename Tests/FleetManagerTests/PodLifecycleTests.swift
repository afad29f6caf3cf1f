import FleetManager
import Testing

@Suite struct PodLifecycleTests {
    @Test func startsLoadsAndBecomesReady() {
        var pod = PodLifecycle(name: "p", startupSeconds: 20)
        #expect(pod.phase == .pending)
        #expect(pod.start(now: 0) == [.launch])
        #expect(pod.phase.status == "Starting" && !pod.isReady)
        #expect(pod.tick(now: 19.9).isEmpty)
        #expect(pod.nextDeadline == 20)
        #expect(pod.tick(now: 20) == [.markReady])
        #expect(pod.isReady && pod.phase.status == "Running")
    }

    @Test func crashesBackOffAsTheKubeletDoes() {
        var pod = PodLifecycle(name: "p", startupSeconds: 0)
        _ = pod.start(now: 0)
        var restartTimes: [Double] = []
        var now = 0.0
        for _ in 0..<7 {
            guard case .scheduleRestart(let at)? = pod.crashed(now: now).first else { Issue.record("no restart scheduled"); return }
            #expect(pod.phase.status == "CrashLoopBackOff" && !pod.isReady)
            restartTimes.append(at - now)
            #expect(pod.tick(now: at) == [.launch, .markReady])
            now = at + 1  // crashes again a second after each start
        }
        #expect(restartTimes == [10, 20, 40, 80, 160, 300, 300])
        #expect(pod.restarts == 7)
        // Ten minutes of good running resets the back-off (not the restart count).
        guard case .scheduleRestart(let at)? = pod.crashed(now: now + 600).first else { Issue.record("no restart"); return }
        #expect(at - (now + 600) == 10)
        #expect(pod.restarts == 7)
    }

    @Test func deletionDrainsWithinTheGracePeriod() {
        var pod = PodLifecycle(name: "p", startupSeconds: 0)
        _ = pod.start(now: 0)
        #expect(pod.delete(now: 5, grace: 30) == [.stopAccepting])
        #expect(pod.phase == .terminating(deadline: 35) && !pod.isReady)
        #expect(pod.drained(now: 9) == [.kill])
        #expect(pod.phase == .terminated)

        var slow = PodLifecycle(name: "q", startupSeconds: 0)
        _ = slow.start(now: 0)
        _ = slow.delete(now: 5, grace: 30)
        #expect(slow.tick(now: 34).isEmpty)
        #expect(slow.tick(now: 35) == [.kill], "requests still running at the deadline are cut")
        // A crash while terminating ends it; a deleted pod in back-off never restarts.
        var crashing = PodLifecycle(name: "r", startupSeconds: 0)
        _ = crashing.start(now: 0)
        _ = crashing.crashed(now: 1)
        #expect(crashing.delete(now: 2, grace: 30).isEmpty)
        #expect(crashing.tick(now: 100).isEmpty && crashing.phase == .terminated)
    }

    @Test func probesTakeAnUnansweringPodOutAndThenRestartIt() {
        var pod = PodLifecycle(name: "p", startupSeconds: 0)
        _ = pod.start(now: 0)
        #expect(pod.probed(succeeded: true, now: 1).isEmpty)
        // GIE's vLLM deployment: one readiness failure makes it unready (still Running)…
        #expect(pod.probed(succeeded: false, now: 2) == [.readinessChanged])
        #expect(!pod.isReady && pod.phase.status == "Running")
        // …a success brings it back, and resets the liveness count.
        #expect(pod.probed(succeeded: true, now: 3) == [.readinessChanged] && pod.isReady)
        for second in 4..<8 { #expect(pod.probed(succeeded: false, now: Double(second)) == (second == 4 ? [.readinessChanged] : [])) }
        // The fifth liveness failure in a row: the kubelet kills it and it backs off.
        #expect(pod.probed(succeeded: false, now: 8) == [.kill, .scheduleRestart(at: 18)])
        #expect(pod.phase.status == "CrashLoopBackOff")
        #expect(pod.tick(now: 18) == [.launch, .markReady] && pod.isReady && pod.restarts == 1)

        var settings = ProbeSettings()
        settings.livenessFailureThreshold = 0
        var unwatched = PodLifecycle(name: "q", startupSeconds: 0, probes: settings)
        _ = unwatched.start(now: 0)
        for second in 1...20 { _ = unwatched.probed(succeeded: false, now: Double(second)) }
        #expect(unwatched.phase == .ready && !unwatched.isReady, "without a liveness probe it stays, unready")
    }
}
