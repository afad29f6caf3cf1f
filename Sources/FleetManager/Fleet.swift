import FakeVLLM
import Foundation
import Gateway
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
    private var pods: [String: RunningPod] = [:]
    private var launches = 0
    /// Set by `stop()`: no pod is created or restarted after it.
    private var stopping = false
    private var ticker: Task<Void, Never>?
    /// Grace period for deleted pods (Kubernetes' default terminationGracePeriodSeconds).
    public nonisolated let gracePeriod: Double

    struct RunningPod {
        var lifecycle: PodLifecycle
        let pool: PodPoolSpec
        /// Kept across restarts, as a pod keeps its address; 0 until an ephemeral port is bound.
        var port: Int
        var server: (any PodServer)?
        /// Which launch the server belongs to: a launch overtaken by a kill or delete is dropped.
        var launch = 0
    }

    public nonisolated let backoff: RestartBackoff

    /// Where pods run: here, or each in its own process.
    public nonisolated let runtime: PodRuntime
    /// The gateway's socket-free scrapes of in-process pods (nil for process pods).
    private let scrapes: InProcessScrapes?

    private init(
        spec: FleetSpec, gateway: GatewayServer, profiles: ProfileStore, gracePeriod: Double, backoff: RestartBackoff, runtime: PodRuntime,
        scrapes: InProcessScrapes?
    ) {
        self.runtime = runtime
        self.scrapes = scrapes
        self.spec = spec
        self.gateway = gateway
        self.profiles = profiles
        self.gracePeriod = gracePeriod
        self.backoff = backoff
    }

    /// Starts the gateway (following the registry) and every pod of every pool. With
    /// `firstPodPort` 0 every pod gets an ephemeral port (tests).
    public static func start(
        _ spec: FleetSpec, profiles: ProfileStore, gracePeriod: Double = 30, backoff: RestartBackoff = RestartBackoff(),
        runtime: PodRuntime = .inProcess
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
            configuration: dataPlane, metricsSource: scrapes)
        let fleet = Fleet(
            spec: spec, gateway: gateway, profiles: profiles, gracePeriod: gracePeriod, backoff: backoff, runtime: runtime, scrapes: scrapes)
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
        var created: [String] = []
        for pool in spec.pools {
            created += (0..<pool.replicas).map { addPod(pool, index: $0) }
        }
        for name in created { await apply(pods[name]!.lifecycle.start(now: now), to: name) }
    }

    /// The port the next new pod listens on (0: an ephemeral one).
    private var nextPort = 0
    /// Replicas created per pool so far, for names that are never reused.
    private var created: [String: Int] = [:]

    private func addPod(_ pool: PodPoolSpec, index: Int? = nil) -> String {
        let number = index ?? created[pool.name, default: 0]
        created[pool.name] = max(created[pool.name, default: 0], number + 1)
        let name = "\(pool.name)-\(number)"
        pods[name] = RunningPod(
            lifecycle: PodLifecycle(name: name, startupSeconds: pool.startupSeconds, backoff: backoff, probes: pool.probes), pool: pool,
            port: nextPort, server: nil)
        if nextPort != 0 { nextPort = spec.podPort(after: nextPort) }
        publish(name)
        return name
    }

    /// Scales a pool, as `kubectl scale deployment`: new pods start (and load) on new ports;
    /// extra pods — the newest first — are deleted gracefully.
    public func scale(_ poolName: String, replicas: Int) async throws {
        guard replicas >= 0 else { throw FleetError("replicas must be ≥ 0, got \(replicas)") }
        guard !stopping else { throw FleetError("the fleet is stopping") }
        guard let pool = spec.pools.first(where: { $0.name == poolName }) else { throw FleetError("no pool named \(poolName)") }
        // Counted again after every step: another scale may run while this one awaits.
        func current() -> [String] {
            pods.filter { $0.value.pool.name == poolName && !Self.isLeaving($0.value.lifecycle.phase) }
                .keys.sorted { Self.ordinal($0) < Self.ordinal($1) }
        }
        while current().count < replicas, !stopping {
            let name = addPod(pool)
            await apply(pods[name]!.lifecycle.start(now: now), to: name)
        }
        while current().count > replicas, let newest = current().last {
            try await delete(newest)
        }
    }

    private static func isLeaving(_ phase: PodPhase) -> Bool {
        if case .terminating = phase { return true }
        return phase == .terminated
    }

    /// The number at the end of a pod's name (`pool-12` → 12).
    private static func ordinal(_ name: String) -> Int { Int(name.split(separator: "-").last ?? "") ?? 0 }

    /// Time-driven transitions (model loads, restarts, grace periods), checked every 50 ms.
    private func startTicking() {
        ticker = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(50))
                await self?.tick()
            }
        }
    }

    private func tick() async {
        for name in pods.keys.sorted() {
            if case .terminating? = pods[name]?.lifecycle.phase, let server = pods[name]?.server,
               (try? await server.requestsInFlight()) == 0 {
                // Read again after the await: the pod may have moved on meanwhile.
                guard var pod = pods[name], case .terminating = pod.lifecycle.phase else { continue }
                let effects = pod.lifecycle.drained(now: now)
                pods[name] = pod
                await apply(effects, to: name)
                continue
            }
            // Most pods have nothing due: leave them uncopied.
            guard let deadline = pods[name]?.lifecycle.nextDeadline, deadline <= now, var pod = pods[name] else { continue }
            if stopping, Self.isBackingOff(pod.lifecycle.phase) { continue }
            let effects = pod.lifecycle.tick(now: now)
            pods[name] = pod
            await apply(effects, to: name)
        }
        if !stopping { probeDuePods() }
    }

    // MARK: Probes

    /// When each Running pod is next probed; a pod with a probe out is not probed again.
    private var nextProbe: [String: Double] = [:]
    private var probing: Set<String> = []

    /// Sends the kubelet's /health probe to every Running pod whose period has passed; the
    /// first comes a period after the pod became Ready.
    private func probeDuePods() {
        for (name, pod) in pods where pod.lifecycle.phase == .ready && !probing.contains(name) {
            guard let server = pod.server else { continue }
            let period = pod.pool.probes.periodSeconds
            guard let due = nextProbe[name] else {
                nextProbe[name] = now + period
                continue
            }
            guard now >= due else { continue }
            nextProbe[name] = max(due + period, now)
            probing.insert(name)
            let launch = pod.launch
            let timeout = pod.pool.probes.timeoutSeconds
            Task {
                let passed = await server.probe(timeout: timeout)
                await self.probeAnswered(name, launch: launch, succeeded: passed)
            }
        }
    }

    private func probeAnswered(_ name: String, launch: Int, succeeded: Bool) async {
        probing.remove(name)
        // A probe of an earlier run of the pod says nothing about this one.
        guard var pod = pods[name], pod.launch == launch else { return }
        let effects = pod.lifecycle.probed(succeeded: succeeded, now: now)
        pods[name] = pod
        await apply(effects, to: name)
    }

    private func apply(_ effects: [PodEffect], to name: String) async {
        // Most ticks change nothing; only a transition is published. A pod that ended without
        // an effect (deleted while backing off) still goes.
        guard !effects.isEmpty else {
            if pods[name]?.lifecycle.phase == .terminated { remove(name) }
            return
        }
        for effect in effects {
            guard let pod = pods[name] else { return }
            switch effect {
            case .launch:
                var configuration = ServerConfiguration()
                try? Self.configure(&configuration, pool: pod.pool, port: pod.port)
                launches += 1
                let launch = launches
                nextProbe[name] = nil
                pods[name]?.launch = launch
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
                    guard pods[name]?.launch == launch else { return }
                    let effects = pods[name]?.lifecycle.crashed(now: now) ?? []
                    publish(name)
                    return await apply(effects, to: name)
                }
                // Killed, deleted or relaunched while it started: this server is not wanted.
                guard let current = pods[name], current.launch == launch, current.server == nil,
                      current.lifecycle.phase != .terminated, !Self.isBackingOff(current.lifecycle.phase) else {
                    try? await started.stop()
                    return
                }
                pods[name]?.server = started
                pods[name]?.port = started.port
                if let server = started as? VLLMServer { scrapes?.serve("127.0.0.1:\(started.port)", by: server) }
                try? await started.preload(adapters: pod.pool.adapters.filter(\.preload).map(\.name))
            case .markReady:
                try? await pod.server?.markReady()
            case .stopAccepting:
                try? await pod.server?.beginDraining()
            case .kill:
                // Taken out before awaiting, so a relaunch meanwhile is not mistaken for it.
                let server = pods[name]?.server
                pods[name]?.server = nil
                faults[name] = nil
                if let server { retire(server) }
                try? await server?.stop()
            case .scheduleRestart, .readinessChanged:
                break
            }
        }
        publish(name)
        if pods[name]?.lifecycle.phase == .terminated {
            remove(name)
        }
    }

    private func remove(_ name: String) {
        if let server = pods[name]?.server { retire(server) }
        pods[name] = nil
        faults[name] = nil
        nextProbe[name] = nil
        registry.remove(name)
    }

    private static func isBackingOff(_ phase: PodPhase) -> Bool {
        if case .crashLoopBackOff = phase { return true }
        return false
    }

    private func publish(_ name: String) {
        guard let pod = pods[name] else { return }
        registry.update(PodRecord(
            name: name, pool: pod.pool.name, host: "127.0.0.1", port: pod.port, labels: pod.pool.labels, phase: pod.lifecycle.phase,
            restarts: pod.lifecycle.restarts, isReady: pod.lifecycle.isReady))
    }

    // MARK: Operations (the admin API and chaos call these)

    /// A pod's process ended on its own (crashed, or killed from outside the fleet): as the
    /// kubelet sees a container exit, the pod backs off and restarts. Exits the fleet caused
    /// (kill, drain, stop) find the server already gone from the pod and change nothing.
    private func serverExited(_ name: String, launch: Int) async {
        guard var pod = pods[name], pod.launch == launch, pod.server != nil else { return }
        switch pod.lifecycle.phase {
        case .starting, .ready: break
        default: return
        }
        pod.server = nil
        let effects = pod.lifecycle.crashed(now: now)
        pods[name] = pod
        faults[name] = nil
        publish(name)
        await apply(effects, to: name)
    }

    /// Ends a pod's server abruptly, as a crash or `kill -9` would; it restarts with back-off.
    public func kill(_ name: String) async throws {
        guard var pod = pods[name] else { throw FleetError("no pod named \(name)") }
        // The pod's new state is recorded and published before anything is awaited, so nothing
        // that runs meanwhile sees it Ready or acts on an old copy.
        let server = pod.server
        pod.server = nil
        let effects = pod.lifecycle.crashed(now: now)
        pods[name] = pod
        faults[name] = nil
        publish(name)
        if let server { retire(server) }
        try? await server?.stop()
        await apply(effects, to: name)
    }

    /// A server leaving its pod is no longer scraped in-process (its address may be taken by a
    /// newer server, which keeps it).
    private func retire(_ server: any PodServer) {
        if let server = server as? VLLMServer { scrapes?.forget("127.0.0.1:\(server.port)", ifServedBy: server) }
    }

    /// Deletes a pod gracefully: it leaves the pool, finishes its requests, then goes.
    public func delete(_ name: String) async throws {
        guard var pod = pods[name] else { throw FleetError("no pod named \(name)") }
        let effects = pod.lifecycle.delete(now: now, grace: gracePeriod)
        pods[name] = pod
        await apply(effects, to: name)
    }

    /// Evicts a pod gracefully, as `kubectl drain` does: it leaves the pool and finishes its
    /// requests, while its Deployment starts a replacement (a new pod, on a new port).
    public func drain(_ name: String) async throws {
        guard let pod = pods[name] else { throw FleetError("no pod named \(name)") }
        // Already on its way out (drained, scaled down): it was replaced, or is not wanted.
        guard !Self.isLeaving(pod.lifecycle.phase) else { return }
        let pool = pod.pool
        try await delete(name)
        guard !stopping else { return }
        let replacement = addPod(pool)
        await apply(pods[replacement]!.lifecycle.start(now: now), to: replacement)
    }

    /// Does a chaos action (the admin API, `understudy chaos` and scenarios come here).
    public func perform(_ action: ChaosAction) async throws {
        switch action {
        case .kill(let pod): return try await kill(pod)
        case .drain(let pod): return try await drain(pod)
        case .scale(let pool, let replicas): return try await scale(pool, replicas: replicas)
        default: break
        }
        guard let pod = pods[action.target] else { throw FleetError("no pod named \(action.target)") }
        guard let server = pod.server else {
            // Killed or restarted and not yet running again: its faults went with its server.
            if case .restore = action {
                faults[action.target] = nil
                return
            }
            throw FleetError("pod \(action.target) is not running (\(pod.lifecycle.phase.status)); try again once it is")
        }
        try await server.perform(action)
        // A kill or a restart while the fault was being applied leaves a new server, without it.
        guard pods[action.target]?.server === server else { return }
        if case .restore = action { faults[action.target] = nil }
        // One fault of each kind at a time: a second `slow` replaces the first.
        if let label = action.faultLabel { faults[action.target, default: [:]][action.verb] = label }
    }

    /// Wall seconds the in-process pods' emulation has fallen behind real time, summed over the
    /// pods (see `VLLMServer.emulationLag`); process pods are not counted.
    public func emulationLag() async -> Double {
        var total = 0.0
        for pod in pods.values {
            if let server = pod.server as? VLLMServer { total += (try? await server.emulationLag()) ?? 0 }
        }
        return total
    }

    /// The faults a pod is under, for listings.
    public func faults(of name: String) -> [String] { faults[name].map { $0.values.sorted() } ?? [] }
    /// Each pod's faults, by kind (hang, slow, errors, …).
    private var faults: [String: [String: String]] = [:]

    /// Drains every pod and stops the gateway (Ctrl-C, SIGTERM).
    public func stop() async {
        stopping = true
        ticker?.cancel()
        for name in pods.keys.sorted() { try? await delete(name) }
        let deadline = now + gracePeriod
        while !pods.isEmpty, now < deadline {
            await tick()
            try? await Task.sleep(for: .milliseconds(50))
        }
        for name in pods.keys.sorted() {
            try? await pods[name]?.server?.stop()
            pods[name] = nil
            registry.remove(name)
        }
        ticker?.cancel()
        try? await gateway.stop()
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
            func int() throws -> Int {
                guard let number = Int(value) else { throw FleetError("pool \(pool.name): engineArgs.\(flag): not an integer: \(value)") }
                return number
            }
            func double() throws -> Double {
                guard let number = Double(value) else { throw FleetError("pool \(pool.name): engineArgs.\(flag): not a number: \(value)") }
                return number
            }
            func bool() throws -> Bool {
                guard let flag = Bool(value.lowercased()) else { throw FleetError("pool \(pool.name): engineArgs.\(flag): not true or false: \(value)") }
                return flag
            }
            switch flag {
            case "max-model-len": configuration.maxModelLen = try int()
            case "max-num-seqs": configuration.maxNumSeqs = try int()
            case "max-num-batched-tokens": configuration.maxNumBatchedTokens = try int()
            case "block-size":
                configuration.blockSize = try int()
                guard configuration.blockSize > 0 else { throw FleetError("pool \(pool.name): engineArgs.block-size must be positive") }
            case "gpu-memory-utilization": configuration.gpuMemoryUtilization = try double()
            case "quantization": configuration.quantization = value
            case "kv-cache-dtype": configuration.kvCacheDtype = value
            case "enable-prefix-caching": configuration.enablePrefixCaching = try bool()
            case "max-loras": configuration.maxLoras = try int()
            case "max-cpu-loras": configuration.maxCPULoras = try int()
            case "max-lora-rank": configuration.maxLoRARank = try int()
            case "seed":
                guard let seed = UInt64(exactly: try int()) else { throw FleetError("pool \(pool.name): engineArgs.seed must be ≥ 0") }
                configuration.seed = seed
            case "enable-prompt-tokens-details": configuration.enablePromptTokensDetails = try bool()
            case "enable-server-load-tracking": configuration.enableServerLoadTracking = try bool()
            case "time-scale":
                configuration.timeScale = try double()
                guard configuration.timeScale > 0, configuration.timeScale.isFinite else {
                    throw FleetError("pool \(pool.name): engineArgs.time-scale must be a positive number")
                }
            case "served-model-name": configuration.servedModelNames = [value]
            case "dtype":
                guard ["auto", "half", "float16", "bfloat16", "float", "float32"].contains(value) else {
                    throw FleetError("pool \(pool.name): engineArgs.dtype must be auto, half, float16, bfloat16, float or float32")
                }
                configuration.dtype = value
            case "enable-auto-tool-choice": configuration.enableAutoToolChoice = try bool()
            case "tool-call-parser":
                guard ToolCallFormat(parser: value) != nil else { throw FleetError("pool \(pool.name): engineArgs.tool-call-parser: invalid tool call parser: \(value)") }
                configuration.toolCallParser = value
            case "tokenizer": configuration.tokenizer = value
            default: throw FleetError("pool \(pool.name): engineArgs.\(flag) is not a flag the fleet sets")
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
