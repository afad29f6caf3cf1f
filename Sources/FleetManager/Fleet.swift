import FakeVLLM
import Foundation
import Gateway
import Logging
import InferenceAPI
import NIOCore
import NIOPosix

/// A fleet running in this process, in real time: every pod an emulated vLLM server on its own
/// loopback port, driven through `PodLifecycle`, listed in the registry the gateway follows.
public actor Fleet {
    public nonisolated let spec: FleetSpec
    public nonisolated let registry = PodRegistry()
    public nonisolated let gateway: GatewayServer
    private let profiles: ProfileStore
    private let started = ContinuousClock.now
    /// The pods and their lifecycles: the rules this actor carries out with servers.
    private var core: FleetCore
    /// Each pod's running server, with the launch it belongs to.
    private var servers: [String: (server: any PodServer, launch: Int)] = [:]
    /// Each pod's port, kept across restarts as a pod keeps its address; 0 until an ephemeral
    /// port is bound.
    private var ports: [String: Int] = [:]
    private var ticker: Task<Void, Never>?
    /// Grace period for deleted pods (Kubernetes' default terminationGracePeriodSeconds).
    public nonisolated let gracePeriod: Double
    public nonisolated let backoff: RestartBackoff

    /// Where pods run: here, or each in its own process.
    public nonisolated let runtime: PodRuntime
    /// The gateway's socket-free scrapes of in-process pods (nil for process pods).
    private let scrapes: InProcessScrapes?
    /// What happens to the pods: started, Ready, unready, killed, restarting, draining, gone.
    private let logger: Logger

    private init(
        spec: FleetSpec, gateway: GatewayServer, profiles: ProfileStore, gracePeriod: Double, backoff: RestartBackoff, runtime: PodRuntime,
        scrapes: InProcessScrapes?, logger: Logger
    ) {
        self.logger = logger
        self.runtime = runtime
        self.scrapes = scrapes
        self.spec = spec
        self.gateway = gateway
        self.profiles = profiles
        self.gracePeriod = gracePeriod
        self.backoff = backoff
        core = FleetCore(pools: spec.pools, backoff: backoff, gracePeriod: gracePeriod)
    }

    /// Starts the gateway (following the registry) and every pod of every pool. With
    /// `firstPodPort` 0 every pod gets an ephemeral port (tests).
    public static func start(
        _ spec: FleetSpec, profiles: ProfileStore, gracePeriod: Double = 30, backoff: RestartBackoff = RestartBackoff(),
        runtime: PodRuntime = .inProcess, logger: Logger = Logger(label: "fleet", factory: { _ in SwiftLogNoOpLogHandler() }),
        gatewayLogger: Logger = Logger(label: "gateway", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> Fleet {
        // Refuse a fleet whose pods could not start before binding anything.
        for pool in spec.pools {
            var configuration = ServerConfiguration()
            try configure(&configuration, pool: pool, port: 0)
            _ = try EngineSetup(configuration, profiles: profiles)
        }
        // In-process pods are scraped without sockets; process pods over HTTP, as GIE does.
        let scrapes = runtime == .inProcess ? InProcessScrapes() : nil
        var dataPlane = spec.dataPlane
        if runtime == .inProcess, dataPlane.maxConnections == nil {
            // Pods in this process hold the far side of every upstream connection.
            dataPlane.maxConnections = OpenFileLimit.connectionBudget(descriptorsPerConnection: 3)
        }
        let gateway = try await GatewayServer.start(
            resources: spec.resources, host: spec.gateway.host, port: spec.gateway.port, metricsPort: spec.gateway.metricsPort,
            configuration: dataPlane, metricsSource: scrapes, logger: gatewayLogger)
        let fleet = Fleet(
            spec: spec, gateway: gateway, profiles: profiles, gracePeriod: gracePeriod, backoff: backoff, runtime: runtime, scrapes: scrapes,
            logger: logger)
        gateway.follow(fleet.registry)
        await fleet.createPods()
        await fleet.startTicking()
        return fleet
    }

    /// Seconds since the fleet started: the lifecycle's clock.
    private var now: Double {
        let elapsed = started.duration(to: .now)
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    private func createPods() async {
        nextPort = spec.firstPodPort
        await carryOut(core.createPods(now: now))
    }

    /// The port the next new pod listens on (0: an ephemeral one).
    private var nextPort = 0

    /// Carries out effects pod by pod; a pod seen for the first time gets the next port.
    private func carryOut(_ batch: FleetCore.Effects) async {
        for (name, effects) in batch {
            if ports[name] == nil {
                ports[name] = nextPort
                if nextPort != 0 { nextPort = spec.podPort(after: nextPort) }
            }
            await apply(effects, to: name)
        }
    }

    /// Scales a pool, as `kubectl scale deployment`: new pods start (and load) on new ports;
    /// extra pods — the newest first — are deleted gracefully.
    public func scale(_ poolName: String, replicas: Int) async throws {
        let effects = try core.scale(poolName, replicas: replicas, now: now)
        logger.info("pool \(poolName) scaled to \(replicas) replicas")
        await carryOut(effects)
    }

    /// Time-driven transitions (model loads, restarts, grace periods), checked every 50 ms.
    private func startTicking() {
        ticker = Task { [weak self] in
            while !Task.isCancelled {
                // Cancelled means the fleet is stopping: the loop ends, nothing to report.
                try? await Task.sleep(for: .milliseconds(50))
                await self?.tick()
            }
        }
    }

    private func tick() async {
        for name in core.names {
            // The count fails only once the server's event loop is gone: the pod then waits out
            // its grace period, as one that never drains does.
            guard case .terminating? = core.pods[name]?.lifecycle.phase, let server = servers[name]?.server,
                  (try? await server.requestsInFlight()) == 0 else { continue }
            // Read again after the await: the pod may have moved on meanwhile.
            guard case .terminating? = core.pods[name]?.lifecycle.phase else { continue }
            await apply(core.drained(name, now: now), to: name)
        }
        await carryOut(core.tick(now: now))
        await probeDuePods()
    }

    // MARK: Probes

    /// Sends the kubelet's /health probe to every Running pod whose period has passed; one
    /// whose server is gone fails it (nothing answers).
    private func probeDuePods() async {
        for (name, launch, timeout) in core.dueProbes(now: now) {
            guard let server = servers[name]?.server else {
                await probeAnswered(name, launch: launch, succeeded: false)
                continue
            }
            Task {
                let passed = await server.probe(timeout: timeout)
                await self.probeAnswered(name, launch: launch, succeeded: passed)
            }
        }
    }

    private func probeAnswered(_ name: String, launch: Int, succeeded: Bool) async {
        await apply(core.probeAnswered(name, launch: launch, succeeded: succeeded, now: now), to: name)
    }

    private func apply(_ effects: [PodEffect], to name: String) async {
        // Most ticks change nothing; only a transition is published. A pod that ended without
        // an effect (deleted while backing off) still goes.
        guard !effects.isEmpty else {
            if core.pods[name]?.lifecycle.phase == .terminated { remove(name) }
            return
        }
        for effect in effects {
            guard let pod = core.pods[name] else { return }
            switch effect {
            case .launch:
                var configuration = ServerConfiguration()
                // `start` refused every pool this throws for, and pools do not change after.
                try? Self.configure(&configuration, pool: pod.pool, port: ports[name] ?? 0)
                let launch = core.beginLaunch(name)
                let started: any PodServer
                do {
                    switch runtime {
                    case .inProcess: started = try await VLLMServer.start(configuration, profiles: profiles)
                    case .processes(let executable):
                        started = try await ProcessPod.launch(configuration, executable: executable, profiles: profiles) { [weak self] in
                            Task { await self?.serverExited(name, launch: launch) }
                        }
                    }
                } catch {
                    // The port is taken, or the like: the container fails and backs off.
                    logger.error("pod \(name) failed to start: \(error)")
                    guard let effects = core.serverExited(name, launch: launch, now: now) else { return }
                    publish(name)
                    return await apply(effects, to: name)
                }
                // Killed, deleted or relaunched while it started: this server is not wanted.
                guard let current = core.pods[name], current.launch == launch, servers[name] == nil,
                      current.lifecycle.phase != .terminated, !FleetCore.isBackingOff(current.lifecycle.phase) else {
                    await stopServer(started, of: name)
                    return
                }
                servers[name] = (started, launch)
                ports[name] = started.port
                logger.info("pod \(name) started on port \(started.port)\(pod.lifecycle.restarts > 0 ? " (restart \(pod.lifecycle.restarts))" : "")")
                if let server = started as? VLLMServer { scrapes?.serve("127.0.0.1:\(started.port)", by: server) }
                do {
                    try await started.preload(adapters: pod.pool.adapters.filter(\.preload).map(\.name))
                } catch {
                    logger.warning("pod \(name): preloading its adapters failed: \(error)")
                }
            case .markReady:
                do {
                    try await servers[name]?.server.markReady()
                    logger.info("pod \(name) Ready")
                } catch {
                    logger.error("pod \(name) could not be made Ready: \(error)")
                }
            case .stopAccepting:
                logger.info("pod \(name) terminating: finishing its requests (grace period \(Int(gracePeriod)) s)")
                do {
                    try await servers[name]?.server.beginDraining()
                } catch {
                    logger.warning("pod \(name): draining failed: \(error)")
                }
            case .kill:
                // Taken out before awaiting, so a relaunch meanwhile is not mistaken for it.
                let server = servers.removeValue(forKey: name)?.server
                faults[name] = nil
                if let server { retire(server) }
                if core.pods[name]?.lifecycle.phase == .terminated {
                    logger.info("pod \(name) stopped")
                } else {
                    logger.info("pod \(name) killed by the kubelet: its liveness probe failed")
                }
                await stopServer(server, of: name)
            case .scheduleRestart(let at):
                logger.info("pod \(name) CrashLoopBackOff: restarting in \(Self.seconds(at - now))")
            case .readinessChanged:
                logger.info("pod \(name) \(pod.lifecycle.isReady ? "Ready again: its readiness probe passes" : "unready: its readiness probe failed")")
            }
        }
        publish(name)
        if core.pods[name]?.lifecycle.phase == .terminated { remove(name) }
    }

    /// Stops a server that is no longer its pod's; a failure is logged (the pod has moved on).
    private func stopServer(_ server: (any PodServer)?, of name: String) async {
        do {
            try await server?.stop()
        } catch {
            logger.warning("pod \(name): stopping its server failed: \(error)")
        }
    }

    static func seconds(_ value: Double) -> String { "\(Int(max(0, value).rounded())) s" }

    private func remove(_ name: String) {
        logger.info("pod \(name) gone")
        if let server = servers.removeValue(forKey: name)?.server { retire(server) }
        _ = core.removeIfTerminated(name)
        faults[name] = nil
        ports[name] = nil
        registry.remove(name)
    }

    private func publish(_ name: String) {
        guard let pod = core.pods[name] else { return }
        registry.update(PodRecord(
            name: name, pool: pod.pool.name, host: "127.0.0.1", port: ports[name] ?? 0, labels: pod.pool.labels, phase: pod.lifecycle.phase,
            restarts: pod.lifecycle.restarts, isReady: pod.lifecycle.isReady))
    }

    // MARK: Operations (the admin API and chaos call these)

    /// A pod's process ended on its own (crashed, or killed from outside the fleet): as the
    /// kubelet sees a container exit, the pod backs off and restarts. Exits the fleet caused
    /// (kill, drain, stop) find the server already gone from the pod and change nothing.
    private func serverExited(_ name: String, launch: Int) async {
        guard servers[name]?.launch == launch, let effects = core.serverExited(name, launch: launch, now: now) else { return }
        logger.warning("pod \(name): its server exited")
        servers[name] = nil
        faults[name] = nil
        publish(name)
        await apply(effects, to: name)
    }

    /// Ends a pod's server abruptly, as a crash or `kill -9` would; it restarts with back-off.
    public func kill(_ name: String) async throws {
        // The pod's new state is recorded and published before anything is awaited, so nothing
        // that runs meanwhile sees it Ready or acts on an old copy.
        let effects = try core.kill(name, now: now)
        let server = servers.removeValue(forKey: name)?.server
        faults[name] = nil
        publish(name)
        logger.info("pod \(name) killed")
        if let server { retire(server) }
        await stopServer(server, of: name)
        await apply(effects, to: name)
    }

    /// A server leaving its pod is no longer scraped in-process (its address may be taken by a
    /// newer server, which keeps it).
    private func retire(_ server: any PodServer) {
        if let server = server as? VLLMServer { scrapes?.forget("127.0.0.1:\(server.port)", ifServedBy: server) }
    }

    /// Deletes a pod gracefully: it leaves the pool, finishes its requests, then goes.
    public func delete(_ name: String) async throws {
        await apply(try core.delete(name, now: now), to: name)
    }

    /// Evicts a pod gracefully, as `kubectl drain` does: it leaves the pool and finishes its
    /// requests, while its Deployment starts a replacement (a new pod, on a new port).
    public func drain(_ name: String) async throws {
        await carryOut(try core.drain(name, now: now))
    }

    /// Does a chaos action (the admin API, `understudy chaos` and scenarios come here).
    public func perform(_ action: ChaosAction) async throws {
        switch action {
        case .kill(let pod): return try await kill(pod)
        case .drain(let pod): return try await drain(pod)
        case .scale(let pool, let replicas): return try await scale(pool, replicas: replicas)
        default: break
        }
        guard let pod = core.pods[action.target] else { throw FleetError("no pod named \(action.target)") }
        guard let server = servers[action.target]?.server else {
            // Killed or restarted and not yet running again: its faults went with its server.
            if case .restore = action {
                faults[action.target] = nil
                return
            }
            throw FleetError("pod \(action.target) is not running (\(pod.lifecycle.phase.status)); try again once it is")
        }
        try await server.perform(action)
        logger.info("pod \(action.target): \(action.summary)")
        // A kill or a restart while the fault was being applied leaves a new server, without it.
        guard servers[action.target]?.server === server else { return }
        if case .restore = action { faults[action.target] = nil }
        // One fault of each kind at a time: a second `slow` replaces the first.
        if let label = action.faultLabel { faults[action.target, default: [:]][action.verb] = label }
    }

    /// Wall seconds the in-process pods' emulation has fallen behind real time, summed over the
    /// pods (see `VLLMServer.emulationLag`); process pods are not counted.
    public func emulationLag() async -> Double {
        var total = 0.0
        for (server, _) in servers.values {
            // Fails only once a server's event loop is gone: a server that is not running lags nothing.
            if let server = server as? VLLMServer { total += (try? await server.emulationLag()) ?? 0 }
        }
        return total
    }

    /// The faults a pod is under, for listings.
    public func faults(of name: String) -> [String] { faults[name].map { $0.values.sorted() } ?? [] }
    /// Each pod's faults, by kind (hang, slow, errors, …).
    private var faults: [String: [String: String]] = [:]

    /// Drains every pod and stops the gateway (Ctrl-C, SIGTERM).
    public func stop() async {
        ticker?.cancel()
        await carryOut(core.stop(now: now))
        let deadline = now + gracePeriod
        while !core.pods.isEmpty, now < deadline {
            await tick()
            // Cancelled is no failure to report: the grace period still bounds this wait.
            try? await Task.sleep(for: .milliseconds(50))
        }
        for name in core.names {
            await stopServer(servers.removeValue(forKey: name)?.server, of: name)
            registry.remove(name)
        }
        ticker?.cancel()
        do {
            try await gateway.stop()
        } catch {
            logger.warning("stopping the gateway failed: \(error)")
        }
    }

    // MARK: Pod configuration

    /// A pod's server configuration from its pool: model, accelerator, adapters, engine flags.
    static func configure(_ configuration: inout ServerConfiguration, pool: PodPoolSpec, port: Int) throws {
        configuration.host = "127.0.0.1"
        configuration.port = port
        configuration.model = pool.model
        configuration.accelerator = pool.accelerator
        configuration.tensorParallelSize = pool.tensorParallelSize
        // The lifecycle decides when the model has loaded.
        configuration.startupDelay = .infinity
        if !pool.adapters.isEmpty {
            configuration.enableLoRA = true
            configuration.loraModules = pool.adapters.filter { !$0.runtimeOnly }.map { LoRAModule(name: $0.name, path: "/adapters/\($0.name)") }
            configuration.allowRuntimeLoRAUpdating = pool.adapters.contains { $0.runtimeOnly }
        }
        for (flag, value) in pool.engineArgs {
            do {
                try PodFlags.apply(flag, value, to: &configuration)
            } catch {
                throw FleetError("pool \(pool.name): engineArgs.\(flag): \(error)")
            }
        }
    }

    /// The pods, as the registry lists them.
    public nonisolated func list() -> [PodRecord] { registry.list() }
}

/// Where a fleet's pods run.
public enum PodRuntime: Sendable, Equatable {
    /// Every pod an emulated server in this process (hundreds fit).
    case inProcess
    /// Every pod an `understudy serve` process of this executable, supervised by the fleet, so
    /// kill is a real SIGKILL and hang a real SIGSTOP.
    case processes(executable: String)
}

/// Why a fleet operation failed.
public struct FleetError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
