import AsyncHTTPClient
@testable import FleetManager
import Foundation
import Load
import NIOPosix
import TestSupport
import Testing

extension FleetEndToEnd {
    /// `understudy up --processes`: every pod an `understudy serve` child; kill is SIGKILL and hang
    /// SIGSTOP.
    @Suite(.serialized) struct ProcessFleetTests {
        /// SIGKILLs this process's `understudy serve` children, as something outside the fleet would.
        static func killChildren(of parent: pid_t) throws {
            let kill = Process()
            kill.executableURL = URL(fileURLWithPath: "/usr/bin/pkill")
            kill.arguments = ["-KILL", "-P", "\(parent)", "-f", "understudy serve --control-stdin"]
            try kill.run()
            kill.waitUntilExit()
            guard kill.terminationStatus == 0 else { throw FleetError("pkill found no understudy serve child to kill") }
        }

        @Test func processPodsServeAndTakeRealSignals() async throws {
            let fleet = try await Fleet.start(
                try FleetTests.spec(startup: 0.3), profiles: FleetTests.profiles, gracePeriod: 5, backoff: RestartBackoff(initial: 0.3, maximum: 1),
                runtime: .processes(executable: try understudyExecutable()))
            let store = fleet.gateway.picker.datastore
            #expect(try await eventually { store.candidates(now: store.now).count == 2 })
            #expect(try await FleetTests().complete(fleet).status == 200)
            let victim = fleet.list()[0]

            // SIGSTOP: the process answers nothing; the gateway routes around it.
            try await fleet.perform(.hang(pod: victim.name))
            #expect(try await eventually { !store.candidates(now: store.now).map(\.endpoint.address).contains(victim.address) })
            for _ in 0..<4 { #expect(try await FleetTests().complete(fleet).servedBy == fleet.list()[1].address) }
            // SIGCONT: back.
            try await fleet.perform(.restore(pod: victim.name))
            #expect(try await eventually { store.candidates(now: store.now).count == 2 })

            // Faults other than hang go over the child's stdin.
            try await fleet.perform(.errors(pod: victim.name, .init(rate: 1, kind: .status(503))))
            var request = HTTPClientRequest(url: "http://\(victim.address)/v1/completions")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(.init(string: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hi", "max_tokens": 2}"#))
            let direct = try await HTTPClient.forTests.execute(request, timeout: .seconds(10))
            #expect(direct.status.code == 503)
            try await fleet.perform(.restore(pod: victim.name))

            // A partition resets the pod's connections, the gateway's scrapes included, but not
            // the kubelet's probes (over the child's control pipe here): Ready, out of the pool.
            try await fleet.perform(.partition(pod: victim.name))
            #expect(try await eventually { !store.candidates(now: store.now).map(\.endpoint.address).contains(victim.address) })
            #expect(fleet.list()[0].isReady && fleet.list()[0].restarts == 0)
            try await fleet.perform(.restore(pod: victim.name))
            #expect(try await eventually { store.candidates(now: store.now).count == 2 })

            // SIGKILL: the process dies, the pod backs off and a new process takes its port.
            try await fleet.kill(victim.name)
            #expect(fleet.list()[0].phase.status == "CrashLoopBackOff")
            #expect(try await eventually { fleet.list()[0].isReady && store.candidates(now: store.now).count == 2 })
            #expect(fleet.list()[0].restarts == 1 && fleet.list()[0].address == victim.address)
            #expect(try await FleetTests().complete(fleet).status == 200)

            // Processes killed from outside the fleet (the OOM killer, a stray kill -9): as the
            // kubelet sees a container exit, both pods back off, restart and rejoin.
            try Self.killChildren(of: getpid())
            #expect(try await eventually { fleet.list().map(\.restarts) == [2, 1] })
            #expect(try await eventually { fleet.list().allSatisfy(\.isReady) && store.candidates(now: store.now).count == 2 })
            #expect(try await FleetTests().complete(fleet).status == 200)
            await fleet.stop()
            // The children are gone with the fleet: nothing listens on their ports.
            let after = LoadClient(host: "127.0.0.1", port: Int(victim.address.split(separator: ":")[1])!, group: MultiThreadedEventLoopGroup.singleton)
            #expect(await after.send(.get("/health", stream: "check")).outcome == .connectionFailed("connection refused"))
        }
    }
}
