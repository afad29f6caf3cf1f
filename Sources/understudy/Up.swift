import ArgumentParser
import FakeVLLM
import FleetManager
import Foundation
import InferenceAPI
import Load
import Gateway
import Logging

/// `understudy up`: a fleet of emulated pods and the gateway in front of them, from one command.
struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring up a fleet of emulated vLLM pods and the gateway in front of them (Ctrl-C drains and stops).")

    @Argument(help: "Fleet file (default: profiles/fleets/demo.yaml).") var fleetFile: String?
    @Option(help: "Seconds a stopping pod may take to finish its requests.") var gracePeriod = 30.0
    @Flag(help: "Run each pod as its own process (understudy serve), so kill is SIGKILL and hang is SIGSTOP.") var processes = false
    @Option(help: "The gateway's picker: \(PickerPolicy.names) (default: the fleet's EndpointPickerConfig, else GIE's default).")
    var policy: String?
    @Option(help: "Require Authorization: Bearer TOKEN on the admin API (also UNDERSTUDY_ADMIN_TOKEN; understudy chaos sends it).")
    var adminToken: String?
    @OptionGroup var logging: LogOptions

    func run() async throws {
        logging.bootstrap()
        let profiles = try ProfileStore.locate()
        let path = fleetFile ?? profiles.root.appendingPathComponent("fleets/demo.yaml").path
        var spec: FleetSpec
        do {
            spec = try FleetSpec.load(file: path)
        } catch {
            throw ValidationError(error.description)
        }
        if let policy {
            guard let chosen = PickerPolicy(rawValue: policy) else { throw ValidationError("--policy: no policy \(policy); policies: \(PickerPolicy.names)") }
            spec.resources.pickerConfig = chosen.pickerConfig(configured: spec.resources.pickerConfig)
        }
        let runtime: PodRuntime = processes ? .processes(executable: Self.executable) : .inProcess
        let fleet = try await Fleet.start(spec, profiles: profiles, gracePeriod: gracePeriod, runtime: runtime, logger: Logger(label: "fleet"), gatewayLogger: Logger(label: "gateway"))
        let token = adminToken ?? ProcessInfo.processInfo.environment["UNDERSTUDY_ADMIN_TOKEN"]
        let admin = try await AdminServer.start(fleet: fleet, host: spec.admin.host, port: spec.admin.port, token: token)
        let gateway = "http://\(spec.gateway.host):\(fleet.gateway.port)"
        print("understudy up: fleet \(spec.name), \(fleet.list().count) pods\(processes ? " (one process each)" : ""); gateway \(gateway) (InferencePool \(fleet.gateway.picker.pool.name)\(policy.map { ", policy \($0)" } ?? ""))")
        if let metrics = fleet.gateway.metricsPort { print("  gateway metrics http://\(spec.gateway.host):\(metrics)/metrics") }
        print("  admin API http://\(spec.admin.host):\(admin.localAddress?.port ?? spec.admin.port)/pods (understudy chaos list, kill, hang, slow, errors, partition, kv-pressure, drain, restore, scale)")
        if let warning = OpenFileLimit.warning(soft: OpenFileLimit.current.soft, podsInThisProcess: !processes) { print("  warning: \(warning)") }
        let pools = Dictionary(uniqueKeysWithValues: spec.pools.map { ($0.name, $0) })
        let rows = [["POD", "POOL", "ACCELERATOR", "ADDRESS", "STATUS"]]
            + fleet.list().map { [$0.name, $0.pool, pools[$0.pool]?.accelerator ?? "", $0.address, $0.phase.status] }
        for line in TextTable.lines(rows, indent: "  ") { print(line) }
        print("  try: curl -s \(gateway)/v1/completions -H 'content-type: application/json' -d '{\"model\":\"\(spec.pools[0].model)\",\"prompt\":\"Hello\",\"max_tokens\":16}'")
        fflush(nil)  // print is buffered when stdout is not a terminal

        let started = ContinuousClock.now
        Task {
            while !fleet.list().isEmpty, !fleet.list().allSatisfy(\.isReady) { try await Task.sleep(for: .milliseconds(100)) }
            print("  all \(fleet.list().count) pods Ready after \(started.duration(to: .now).formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1))))")
            fflush(nil)  // print is buffered when stdout is not a terminal
        }
        // Say so when this machine limits what clients see: when it cannot keep the pods' pace
        // (their latencies are then its own), or when this process runs out of descriptors.
        let watchMachine = Task {
            var previousLag = await fleet.emulationLag()
            var previousShortages = OpenFileLimit.shortages
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(10))
                let lag = await fleet.emulationLag()
                // More than 1 % of the pods' time lost.
                if lag - previousLag > 0.01 * 10 * Double(max(fleet.list().count, 1)) {
                    print(String(format: "  warning: the pods fell %.1f s behind real time in the last 10 s (summed over pods): this machine cannot keep their pace, and latencies measured now include its delays", lag - previousLag))
                }
                let shortages = OpenFileLimit.shortages
                if shortages > previousShortages {
                    print("  warning: short of open files \(shortages - previousShortages) times in the last 10 s (limit \(OpenFileLimit.current.soft)): client connections over the gateway's limit were closed or a connection could not be opened; those clients' failures are this machine's, not the fleet's")
                }
                fflush(nil)
                previousLag = lag
                previousShortages = shortages
            }
        }
        defer { watchMachine.cancel() }
        let lifecycle = Logger(label: "fleet")
        try await Draining.run(logger: lifecycle, untilClosed: { try await admin.closeFuture.get() }, drain: {
            lifecycle.info("draining the pods (up to \(Int(gracePeriod)) s; a second signal quits now)")
            do {
                try await admin.close()
            } catch {
                lifecycle.warning("closing the admin API failed: \(error)")
            }
            await fleet.stop()
            lifecycle.info("stopped")
        })
    }

    /// This program's own path, for pods run as `understudy serve` processes.
    static var executable: String {
        // No /proc (not Linux): the path it was started by serves as well.
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
