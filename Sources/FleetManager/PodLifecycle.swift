/// Where a pod is in its life, as `kubectl get pods` would tell it.
public enum PodPhase: Sendable, Equatable {
    /// Created, not yet started.
    case pending
    /// Running and loading its model until `readyAt`; its readiness probe (/health) fails.
    case starting(readyAt: Double)
    /// Passing its readiness probe: an endpoint of its pools.
    case ready
    /// Deleted: out of the endpoints, taking no new requests, finishing what it has until
    /// `deadline` (the grace period), then killed.
    case terminating(deadline: Double)
    /// Crashed; restarted at `restartAt` (Kubernetes' back-off: 10 s, doubling, at most 5 min).
    case crashLoopBackOff(restartAt: Double)
    /// Gone.
    case terminated

    /// The status column of `kubectl get pods`.
    public var status: String {
        switch self {
        case .pending: "Pending"
        case .starting: "Starting"
        case .ready: "Running"
        case .terminating: "Terminating"
        case .crashLoopBackOff: "CrashLoopBackOff"
        case .terminated: "Terminated"
        }
    }
}

/// What the driver must do for a pod after a transition.
public enum PodEffect: Sendable, Equatable {
    /// Start the server (a fresh process or in-process instance); it loads its model.
    case launch
    /// The model is loaded: /health turns 200 and the pod joins its pools' endpoints.
    case markReady
    /// Leave the endpoints and refuse new requests; let the ones in flight finish.
    case stopAccepting
    /// End the server now, connections and all.
    case kill
    /// Start over at `restartAt` (the driver calls `tick` then).
    case scheduleRestart(at: Double)
    /// The readiness probe's verdict changed: the pod joins or leaves its pools' endpoints.
    case readinessChanged
}

/// The kubelet's probes of a Running pod, both on vLLM's `GET /health` as GIE's vLLM
/// deployment (config/manifests/vllm/gpu-deployment.yaml) sets them: every second, a 1 s
/// timeout; one failure makes the pod unready, five in a row restart it.
public struct ProbeSettings: Sendable, Equatable {
    public var periodSeconds: Double = 1
    public var timeoutSeconds: Double = 1
    /// Consecutive readiness failures that take the pod out of its endpoints.
    public var readinessFailureThreshold = 1
    /// Consecutive liveness failures that make the kubelet kill and restart it (0: no liveness probe).
    public var livenessFailureThreshold = 5

    public init() {}
}

/// Kubernetes' container restart back-off (kubelet: 10 s initial, doubling, capped at 300 s,
/// reset once a container has run 10 minutes without crashing).
public struct RestartBackoff: Sendable, Equatable {
    public var initial: Double = 10
    public var maximum: Double = 300
    public var resetAfter: Double = 600

    public init(initial: Double = 10, maximum: Double = 300, resetAfter: Double = 600) {
        self.initial = initial
        self.maximum = maximum
        self.resetAfter = resetAfter
    }

    /// The wait before restart number `crashes` (1 for the first crash in a row).
    public func delay(afterCrashes crashes: Int) -> Double {
        min(maximum, initial * Double(1 << min(max(crashes - 1, 0), 30)))
    }
}

/// One pod's lifecycle, pure: events and the time in, the new phase and effects out. The
/// real-time fleet and the virtual-time simulator drive the same machine.
public struct PodLifecycle: Sendable, Equatable {
    public let name: String
    /// The emulated model load, from Starting to Ready.
    public let startupSeconds: Double
    public let backoff: RestartBackoff
    public private(set) var phase: PodPhase = .pending
    /// Restarts after crashes, as `kubectl get pods` counts them.
    public private(set) var restarts = 0
    /// Crashes since the pod last ran `backoff.resetAfter` seconds; sets the next back-off.
    private var crashesInARow = 0
    /// When the current run started (launch time).
    private var runningSince: Double?
    public let probes: ProbeSettings
    /// The readiness probe's verdict while Running (a hung pod fails it).
    public private(set) var passesReadiness = true
    private var readinessFailures = 0
    private var livenessFailures = 0

    public init(name: String, startupSeconds: Double, backoff: RestartBackoff = RestartBackoff(), probes: ProbeSettings = ProbeSettings()) {
        self.name = name
        self.startupSeconds = startupSeconds
        self.backoff = backoff
        self.probes = probes
    }

    /// Running and passing its readiness probe: one of its pools' endpoints.
    public var isReady: Bool { phase == .ready && passesReadiness }

    /// A probe of a Running pod answered (`succeeded`: /health said 200 within the timeout).
    /// Readiness follows the verdicts; enough liveness failures in a row kill the pod, which
    /// then restarts with back-off, as a crash would.
    public mutating func probed(succeeded: Bool, now: Double) -> [PodEffect] {
        guard phase == .ready else { return [] }
        let wasReady = passesReadiness
        if succeeded {
            readinessFailures = 0
            livenessFailures = 0
            passesReadiness = true
        } else {
            readinessFailures += 1
            livenessFailures += 1
            if readinessFailures >= probes.readinessFailureThreshold { passesReadiness = false }
            if probes.livenessFailureThreshold > 0, livenessFailures >= probes.livenessFailureThreshold {
                return [.kill] + crashed(now: now)
            }
        }
        return wasReady == passesReadiness ? [] : [.readinessChanged]
    }

    /// The next time a transition is due on its own (a model load, a restart, a grace period).
    public var nextDeadline: Double? {
        switch phase {
        case .starting(let readyAt): readyAt
        case .crashLoopBackOff(let restartAt): restartAt
        case .terminating(let deadline): deadline
        case .pending, .ready, .terminated: nil
        }
    }

    /// Pending → Starting.
    public mutating func start(now: Double) -> [PodEffect] {
        guard phase == .pending else { return [] }
        return launch(now: now)
    }

    /// Runs the transitions due by `now`: a model load finishing, a back-off ending, a grace
    /// period running out.
    public mutating func tick(now: Double) -> [PodEffect] {
        switch phase {
        case .starting(let readyAt) where now >= readyAt:
            phase = .ready
            return [.markReady]
        case .crashLoopBackOff(let restartAt) where now >= restartAt:
            restarts += 1
            return launch(now: now)
        case .terminating(let deadline) where now >= deadline:
            phase = .terminated
            return [.kill]
        default:
            return []
        }
    }

    /// The server died (killed, or exited): back off, then start again.
    public mutating func crashed(now: Double) -> [PodEffect] {
        switch phase {
        case .starting, .ready:
            if let since = runningSince, now - since >= backoff.resetAfter { crashesInARow = 0 }
            crashesInARow += 1
            runningSince = nil
            let restartAt = now + backoff.delay(afterCrashes: crashesInARow)
            phase = .crashLoopBackOff(restartAt: restartAt)
            return [.scheduleRestart(at: restartAt)]
        case .terminating:
            phase = .terminated
            return []
        case .pending, .crashLoopBackOff, .terminated:
            return []
        }
    }

    /// Deleted (scale down, drain): stop taking requests and finish within `grace` seconds.
    public mutating func delete(now: Double, grace: Double) -> [PodEffect] {
        switch phase {
        case .pending, .crashLoopBackOff:
            phase = .terminated
            return []
        case .starting, .ready:
            phase = .terminating(deadline: now + grace)
            return [.stopAccepting]
        case .terminating, .terminated:
            return []
        }
    }

    /// Every request in flight finished while terminating: the pod can go before its deadline.
    public mutating func drained(now: Double) -> [PodEffect] {
        guard case .terminating = phase else { return [] }
        phase = .terminated
        return [.kill]
    }

    private mutating func launch(now: Double) -> [PodEffect] {
        runningSince = now
        passesReadiness = true
        readinessFailures = 0
        livenessFailures = 0
        if startupSeconds <= 0 {
            phase = .ready
            return [.launch, .markReady]
        }
        phase = .starting(readyAt: now + startupSeconds)
        return [.launch]
    }
}
