/// A fleet's pods as a Deployment controller and kubelet see them, with no clock and no
/// servers: which pods exist and what they are called, each one's `PodLifecycle`, when each
/// is probed, and what scale, drain, delete and kill do. Operations take the time and return
/// the effects a driver must carry out; the live `Fleet` carries them out with servers, the
/// simulator with virtual pods, so both follow the same rules.
public struct FleetCore: Sendable {
    public struct Pod: Sendable {
        public internal(set) var lifecycle: PodLifecycle
        public let pool: PodPoolSpec
        /// Which launch of the pod runs now: a server from an earlier one is not this pod's.
        public internal(set) var launch = 0
    }

    /// Effects for several pods, in the order they are to be carried out.
    public typealias Effects = [(pod: String, effects: [PodEffect])]

    public let pools: [PodPoolSpec]
    public let backoff: RestartBackoff
    /// Grace period for deleted pods (Kubernetes' default terminationGracePeriodSeconds: 30).
    public let gracePeriod: Double
    public private(set) var pods: [String: Pod] = [:] {
        didSet { (deadlinesQuietUntil, probesQuietUntil) = (-.infinity, -.infinity) }
    }
    /// Set by `stop`: no pod is created or restarted after it.
    public private(set) var stopping = false {
        didSet { deadlinesQuietUntil = -.infinity }
    }
    /// Replicas created per pool so far, for names that are never reused.
    private var created: [String: Int] = [:]
    private var launches = 0
    /// When each Running pod is next probed; a pod with a probe out is not probed again.
    private var nextProbe: [String: Double] = [:]
    private var probing: Set<String> = [] {
        didSet { probesQuietUntil = -.infinity }
    }
    /// Until when, unless a pod changes, no deadline falls due and no probe is due: a tick
    /// before then walks no pods (a fleet of a thousand ticks every 50 ms).
    private var deadlinesQuietUntil = -Double.infinity
    private var probesQuietUntil = -Double.infinity

    public init(pools: [PodPoolSpec], backoff: RestartBackoff = RestartBackoff(), gracePeriod: Double = 30) {
        self.pools = pools
        self.backoff = backoff
        self.gracePeriod = gracePeriod
    }

    /// Pod names in the order a listing shows them; kept sorted as pods come and go, as every
    /// tick walks them.
    public private(set) var names: [String] = []

    // MARK: Creating and removing pods

    /// Every pool's replicas, named `<pool>-<n>` as a StatefulSet's would be, started.
    public mutating func createPods(now: Double) -> Effects {
        var names: [String] = []
        for pool in pools { names += (0..<pool.replicas).map { addPod(pool, index: $0) } }
        return names.map { ($0, pods[$0]!.lifecycle.start(now: now)) }
    }

    private mutating func addPod(_ pool: PodPoolSpec, index: Int? = nil) -> String {
        let number = index ?? created[pool.name, default: 0]
        created[pool.name] = max(created[pool.name, default: 0], number + 1)
        let name = "\(pool.name)-\(number)"
        pods[name] = Pod(lifecycle: PodLifecycle(name: name, startupSeconds: pool.startupSeconds, backoff: backoff, probes: pool.probes), pool: pool)
        names.insert(name, at: names.firstIndex { $0 > name } ?? names.endIndex)
        return name
    }

    /// Scales a pool, as `kubectl scale deployment`: new pods start; extra pods — the newest
    /// first — are deleted gracefully.
    public mutating func scale(_ poolName: String, replicas: Int, now: Double) throws(FleetError) -> Effects {
        guard replicas >= 0 else { throw FleetError("replicas must be ≥ 0, got \(replicas)") }
        guard !stopping else { throw FleetError("the fleet is stopping") }
        guard let pool = pools.first(where: { $0.name == poolName }) else { throw FleetError("no pool named \(poolName)") }
        var effects: Effects = []
        var current = staying(in: poolName)
        while current.count < replicas {
            let name = addPod(pool)
            effects.append((name, pods[name]!.lifecycle.start(now: now)))
            current.append(name)
        }
        while current.count > replicas, let newest = current.popLast() {
            effects.append((newest, try delete(newest, now: now)))
        }
        return effects
    }

    /// The pool's pods that are not on their way out, oldest first.
    private func staying(in poolName: String) -> [String] {
        pods.filter { $0.value.pool.name == poolName && !Self.isLeaving($0.value.lifecycle.phase) }
            .keys.sorted { Self.ordinal($0) < Self.ordinal($1) }
    }

    /// Deletes a pod gracefully: it leaves the pool, finishes its requests, then goes.
    public mutating func delete(_ name: String, now: Double) throws(FleetError) -> [PodEffect] {
        guard pods[name] != nil else { throw FleetError("no pod named \(name)") }
        return pods[name]!.lifecycle.delete(now: now, grace: gracePeriod)
    }

    /// Evicts a pod gracefully, as `kubectl drain` does: it leaves the pool and finishes its
    /// requests while its Deployment starts a replacement (a new pod).
    public mutating func drain(_ name: String, now: Double) throws(FleetError) -> Effects {
        guard let pod = pods[name] else { throw FleetError("no pod named \(name)") }
        // Already on its way out (drained, scaled down): it was replaced, or is not wanted.
        guard !Self.isLeaving(pod.lifecycle.phase) else { return [] }
        var effects: Effects = [(name, try delete(name, now: now))]
        guard !stopping else { return effects }
        let replacement = addPod(pod.pool)
        effects.append((replacement, pods[replacement]!.lifecycle.start(now: now)))
        return effects
    }

    /// Ends a pod's server abruptly, as a crash or `kill -9` would; it restarts with back-off.
    public mutating func kill(_ name: String, now: Double) throws(FleetError) -> [PodEffect] {
        guard pods[name] != nil else { throw FleetError("no pod named \(name)") }
        return pods[name]!.lifecycle.crashed(now: now)
    }

    /// A pod's server ended on its own (crashed, or killed from outside the fleet): as the
    /// kubelet sees a container exit, the pod backs off and restarts. Nil when the exit is not
    /// news: an earlier launch's server, or a pod not running.
    public mutating func serverExited(_ name: String, launch: Int, now: Double) -> [PodEffect]? {
        guard let pod = pods[name], pod.launch == launch else { return nil }
        switch pod.lifecycle.phase {
        case .starting, .ready: return pods[name]!.lifecycle.crashed(now: now)
        default: return nil
        }
    }

    /// Deletes every pod (the fleet stops); nothing is created or restarted after this.
    public mutating func stop(now: Double) -> Effects {
        stopping = true
        return names.map { ($0, pods[$0]!.lifecycle.delete(now: now, grace: gracePeriod)) }
    }

    /// A `.launch` effect is being carried out: the launch's number, which its server keeps.
    public mutating func beginLaunch(_ name: String) -> Int {
        launches += 1
        let launch = launches
        pods[name]?.launch = launch
        nextProbe[name] = nil
        return launch
    }

    /// Forgets a pod that has terminated; true if it did.
    public mutating func removeIfTerminated(_ name: String) -> Bool {
        guard pods[name]?.lifecycle.phase == .terminated else { return false }
        pods[name] = nil
        names.removeAll { $0 == name }
        nextProbe[name] = nil
        probing.remove(name)
        return true
    }

    // MARK: Time

    /// Transitions due by `now`: model loads, restarts after back-off (none once stopping),
    /// grace periods.
    public mutating func tick(now: Double) -> Effects {
        guard now >= deadlinesQuietUntil else { return [] }
        var effects: Effects = []
        var quietUntil = Double.infinity
        for name in names {
            guard let deadline = pods[name]?.lifecycle.nextDeadline else { continue }
            if stopping, Self.isBackingOff(pods[name]!.lifecycle.phase) { continue }
            guard deadline <= now else {
                quietUntil = min(quietUntil, deadline)
                continue
            }
            let changes = pods[name]!.lifecycle.tick(now: now)
            if !changes.isEmpty { effects.append((name, changes)) }
            quietUntil = min(quietUntil, pods[name]!.lifecycle.nextDeadline ?? .infinity)
        }
        // After the walk: its own changes reset the mark.
        deadlinesQuietUntil = quietUntil
        return effects
    }

    /// The earliest time a pod's transition falls due, if any.
    public var nextDeadline: Double? {
        pods.values.compactMap { stopping && Self.isBackingOff($0.lifecycle.phase) ? nil : $0.lifecycle.nextDeadline }.min()
    }

    /// A terminating pod finished every request: it goes before its grace period ends.
    public mutating func drained(_ name: String, now: Double) -> [PodEffect] {
        pods[name]?.lifecycle.drained(now: now) ?? []
    }

    /// The kubelet's /health probes due by `now`, one per Running pod whose period has passed
    /// and with no probe out (the first a period after the pod became Ready), each with the
    /// launch it probes and its timeout.
    public mutating func dueProbes(now: Double) -> [(pod: String, launch: Int, timeout: Double)] {
        guard !stopping, now >= probesQuietUntil else { return [] }
        var due: [(pod: String, launch: Int, timeout: Double)] = []
        var quietUntil = Double.infinity
        for name in names where !probing.contains(name) {
            // Read in place: most pods have no probe due, and a pod's copy carries its pool spec.
            guard pods[name]?.lifecycle.phase == .ready, let probes = pods[name]?.pool.probes else { continue }
            guard let next = nextProbe[name] else {
                nextProbe[name] = now + probes.periodSeconds
                quietUntil = min(quietUntil, now + probes.periodSeconds)
                continue
            }
            guard now >= next else {
                quietUntil = min(quietUntil, next)
                continue
            }
            nextProbe[name] = max(next + probes.periodSeconds, now)
            probing.insert(name)
            due.append((name, pods[name]!.launch, probes.timeoutSeconds))
        }
        // After the walk: its own changes reset the mark. A probe out is due again only once
        // answered, which changes `probing`.
        probesQuietUntil = quietUntil
        return due
    }

    /// A probe answered; a probe of an earlier run of the pod says nothing about this one.
    public mutating func probeAnswered(_ name: String, launch: Int, succeeded: Bool, now: Double) -> [PodEffect] {
        let marks = (deadlinesQuietUntil, probesQuietUntil)
        probing.remove(name)
        var effects: [PodEffect] = []
        if let pod = pods[name], pod.launch == launch { effects = pods[name]!.lifecycle.probed(succeeded: succeeded, now: now) }
        if effects.isEmpty {
            // Most answers change only the probe's counts: no phase and no deadline moved, and the
            // pod's next probe is the one already planned. A thousand pods answer ten times a
            // second; walking them all after each would undo the quiet marks.
            deadlinesQuietUntil = marks.0
            probesQuietUntil = min(marks.1, nextProbe[name] ?? -.infinity)
        }
        return effects
    }

    // MARK: Helpers

    static func isLeaving(_ phase: PodPhase) -> Bool {
        if case .terminating = phase { return true }
        return phase == .terminated
    }

    static func isBackingOff(_ phase: PodPhase) -> Bool {
        if case .crashLoopBackOff = phase { return true }
        return false
    }

    /// The number at the end of a pod's name (`pool-12` → 12).
    static func ordinal(_ name: String) -> Int { Int(name.split(separator: "-").last ?? "") ?? 0 }
}
