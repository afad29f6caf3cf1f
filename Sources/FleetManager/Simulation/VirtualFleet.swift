import Dispatch
import FakeVLLM
import Gateway
import HeapModule
import InferenceAPI
import Load

/// A request the simulated clients send through the gateway.
struct SimulatedRequest {
    /// The load stream it belongs to (an index into the run's stream names).
    var stream: Int
    var model: String
    /// `x-gateway-inference-objective`.
    var objective: String?
    /// The prompt's token ids as a text prompt's tokenization gives them, without BOS.
    var promptTokenIDs: [Int]
    /// The prompt's text, for the prefix-cache scorer (empty when the picker has none).
    var prefixText: String
    /// Its block hashes for `model`, made ahead (`run` makes them when the picker has an index).
    var prefixHashes: PrefixHashes?
    /// Tokens generated (`max_tokens` with `ignore_eos`).
    var outputTokens: Int
    var streaming: Bool
}

/// Where a simulation's finished requests go: a bench stage's statistics, or a scenario's records.
protocol SimulationSink {
    /// Whether inter-token gaps of streams are wanted (they are the bulk of the work).
    var wantsInterTokenGaps: Bool { get }
    mutating func addInterTokenGap(_ gap: Double)
    mutating func add(_ record: RequestRecord)
}

/// A fleet and its gateway in virtual time, as `understudy up` runs them in real time: pods are
/// `PodCore`s under the virtual-time driver with the lifecycle `FleetCore` gives them; the
/// gateway is the same `Director` over an `EndpointTable` fed by scrapes every 50 ms; the
/// kubelet probes every pod; chaos actions act on the same state the live fleet's do. What a
/// request meets on its way is what the live gateway's proxy does (connect failures retried on
/// another endpoint, resets and timeouts answered as Envoy answers them), so a client's view of
/// a fault is the live one, with no sockets and no clock.
struct VirtualFleet {
    let spec: FleetSpec
    /// How often the gateway scrapes every pod (GIE's refresh interval).
    var scrapeInterval = 0.05
    /// Seconds between the gateway's decision and the request reaching its pod's engine.
    var pathLatency = 0.0
    /// The live fleet's tick: lifecycle deadlines and probes are looked at this often.
    static let tickInterval = 0.05

    private(set) var now = 0.0
    private var fleet: FleetCore
    private var pods: [Pod] = []
    private var podIndex: [String: Int] = [:]
    private var podByAddress: [String: Int] = [:]
    /// The pool's endpoints among the pods, as the gateway's discovery selects them.
    private let pool: InferencePool
    private var director: Director
    private var endpointTable: EndpointTable
    /// The pod behind each of the endpoint table's entries, by the entry's position (-1: none).
    private var podOfEntry: [Int] = []
    private var candidates: [Candidate] = []
    private var candidatesValidUntil = -Double.infinity
    private var events = Heap<Event>()
    private var eventCount = 0
    /// Upstream timeouts, apart: every request has one pending for as long as the timeout
    /// (minutes), and in the main heap they would slow down every pod event.
    private var timeouts = Heap<Event>()
    private var exchanges: [Exchange] = []
    private var freeSlots: [Int] = []
    /// Requests sent and not ended.
    private var outstanding = 0
    private var pendingProbes: [Int: (pod: String, launch: Int, succeeded: Bool)] = [:]
    /// The next port a new pod gets, as `understudy up` hands them out.
    private var nextPort: Int
    private var setups: [String: (configuration: ServerConfiguration, setup: EngineSetup)] = [:]
    /// Membership of the candidates, for a scenario's report (when watched).
    private(set) var membership: [String: [ScenarioReport.Membership]] = [:]
    private var routable: Set<String> = []
    /// The candidates' addresses when membership was last noted.
    private var routableAddresses: [String] = []
    private var watching = false
    private let upstreamTimeout: Double
    private let maxAttempts: Int
    private let retryOnReset: Bool

    /// Each pod's server, by pod index: the last one launched (read only while `running`), on a
    /// timeline of its own that catches up when the pod is looked at (`catchUp`). Apart from
    /// `pods` and never optional, so reading it copies nothing.
    private var timelines: [PodTimeline] = []

    struct Pod {
        let name: String
        let pool: PodPoolSpec
        let address: String
        let endpoint: Endpoint?
        /// Whether its server runs (not backing off, not gone).
        var running = false
        /// Told to stop accepting (terminating): done once its last request ends.
        var draining = false
        /// Requests read by a hung server and not answered, in arrival order.
        var held: [Int] = []
        /// Exchanges on this pod (sent to it and not finished).
        var active: Set<Int> = []
    }

    struct Exchange {
        var request: SimulatedRequest
        var scheduled: Double
        /// The pod of the last endpoint tried.
        var pod = -1
        /// Its search for an endpoint that answers, as the live data plane's.
        var search: EndpointSearch
        var inference: InferenceRequest
        var running = false
        /// The response head reached the client (a stream's, at admission).
        var headSent = false
        /// When the client last saw something before its pod took over (a running stream's
        /// later activity is on the pod's timeline).
        var lastActivity: Double
        var inputTokens = 0
        /// The request's handle on its pod's timeline, once admitted.
        var handle = -1
        var done = false
        /// When its pending timeout check is due; an earlier check for its slot (an earlier
        /// attempt's, or the request's that had the slot before) finds it is not its own.
        var timeoutDue = Double.infinity
    }

    init(_ spec: FleetSpec, profiles: ProfileStore, policy: PickerPolicy, seed: UInt64) throws {
        self.spec = spec
        var resources = spec.resources
        resources.pickerConfig = policy.pickerConfig(configured: resources.pickerConfig)
        pool = try GatewayServer.selectPool(resources, nil)
        director = Director(resources: resources, pool: pool, scheduler: try Scheduler(config: resources.pickerConfig ?? .default, seed: seed), seed: seed)
        endpointTable = EndpointTable(outlierDetection: spec.dataPlane.outlierDetection)
        fleet = FleetCore(pools: spec.pools)
        nextPort = spec.firstPodPort == 0 ? 8000 : spec.firstPodPort
        upstreamTimeout = Double(spec.dataPlane.upstreamTimeout.nanoseconds) / 1e9
        maxAttempts = spec.dataPlane.maxAttempts
        retryOnReset = spec.dataPlane.retryOnReset
        for podPool in spec.pools {
            var configuration = ServerConfiguration()
            try Fleet.configure(&configuration, pool: podPool, port: 0)
            setups[podPool.name] = (configuration, try EngineSetup(configuration, profiles: profiles))
        }
        var sink = NoSink()
        carryOut(fleet.createPods(now: 0), sink: &sink)
        schedule(.tick, at: 0, subject: 0)
        schedule(.scrape, at: 0, subject: 0)
    }

    /// Whether the picker scores prefixes (requests then carry their text).
    var needsPrefixText: Bool { director.scheduler.prefixIndex != nil }

    /// The pods by name and address, as a report names them.
    var addresses: [String: String] { Dictionary(pods.map { ($0.name, $0.address) }, uniquingKeysWith: { first, _ in first }) }

    // MARK: Running

    /// Runs until every pod is Ready and routable (the fleet's startup), at most `limit` seconds.
    mutating func startUp(limit: Double = 3600) throws(FleetError) {
        let expected = spec.pools.reduce(0) { $0 + $1.replicas }
        var sink = NoSink()
        while currentCandidates().count < expected {
            guard now < limit, nextEventTime != nil else { throw FleetError("only \(currentCandidates().count) of \(expected) pods became Ready and routable") }
            processNextEvent(sink: &sink)
        }
    }

    /// Sends a request at each of `arrivals` (sorted, seconds after `start`; `request(i)` makes
    /// the i-th) and runs the timeline's actions at their times (seconds after `start` too),
    /// until every request has ended; finished requests go to `sink`, their times counted from
    /// `start`. Returns the actions as they ran.
    mutating func run(
        _ arrivals: [Double], request: @escaping @Sendable (Int) -> SimulatedRequest, from start: Double, timeline: ChaosTimeline = ChaosTimeline([]),
        watch: Bool = false, sink: inout some SimulationSink, progress: ((Double) -> Void)? = nil
    ) -> [ScenarioReport.ActionRecord] {
        let hasher = director.scheduler.prefixIndex?.hasher
        var requests = RequestPrefetch(count: arrivals.count) { number in
            var made = request(number)
            if let hasher { made.prefixHashes = PrefixHashes(model: made.model, hashes: hasher.hashes(model: made.model, text: made.prefixText)) }
            return made
        }
        recordStart = start
        watching = watch
        if watch { recordMembership(initial: true) }
        var timeline = timeline
        var next = 0
        var done: [ScenarioReport.ActionRecord] = []
        var steps = 0
        while next < arrivals.count || outstanding > 0 || timeline.nextTime != nil {
            let action = timeline.nextTime.map { start + $0 } ?? .infinity
            let arrival = next < arrivals.count ? start + arrivals[next] : .infinity
            let upcoming = min(action, arrival)
            // The fleet's own events first, at equal times too.
            if let time = nextEventTime, time <= upcoming {
                processNextEvent(sink: &sink)
            } else if action <= arrival, let due = timeline.nextTime {
                now = action
                // By the timeline's own time: `start + due - start` need not give `due` back.
                for step in timeline.actions(due: due) {
                    done.append(.init(at: due, action: step.action, failure: perform(step.action, sink: &sink)))
                }
            } else {
                now = arrival
                send(requests.request(next), sink: &sink)
                next += 1
            }
            steps += 1
            if steps % 65_536 == 0 { progress?(now - start) }
        }
        watching = false
        return done
    }

    // MARK: Events

    private enum Kind: Int {
        // At equal times: tokens become visible (pods catch up to the time first), then the fleet
        // ticks, the scrape reads, probes answer, timeouts fire, candidates change, requests reach
        // their pods.
        case tick, scrape, probeAnswer, timeout, candidatesExpire, delivery
    }

    private struct Event: Comparable {
        var time: Double
        var kind: Int
        var sequence: Int
        var subject: Int

        static func < (a: Event, b: Event) -> Bool { (a.time, a.kind, a.sequence) < (b.time, b.kind, b.sequence) }
    }

    private mutating func schedule(_ kind: Kind, at time: Double, subject: Int) {
        eventCount += 1
        let event = Event(time: time, kind: kind.rawValue, sequence: eventCount, subject: subject)
        if kind == .timeout { timeouts.insert(event) } else { events.insert(event) }
    }

    private var nextEventTime: Double? {
        switch (events.min, timeouts.min) {
        case (let event?, let timeout?): min(event.time, timeout.time)
        case (let event?, nil): event.time
        case (nil, let timeout?): timeout.time
        case (nil, nil): nil
        }
    }

    private mutating func processNextEvent(sink: inout some SimulationSink) {
        let event = timeouts.min.map { timeout in events.min.map { $0 < timeout } ?? false } ?? true ? events.removeMin() : timeouts.removeMin()
        now = event.time
        switch Kind(rawValue: event.kind)! {
        case .tick:
            catchUpAll(sink: &sink)
            tick(sink: &sink)
            schedule(.tick, at: now + Self.tickInterval, subject: 0)
        case .scrape:
            scrape(catchUpAll(sink: &sink, scraping: true))
            schedule(.scrape, at: now + scrapeInterval, subject: 0)
        case .probeAnswer:
            guard let answer = pendingProbes.removeValue(forKey: event.subject) else { return }
            apply(fleet.probeAnswered(answer.pod, launch: answer.launch, succeeded: answer.succeeded, now: now), to: answer.pod, sink: &sink)
        case .timeout: checkTimeout(event.subject, sink: &sink)
        case .candidatesExpire: _ = currentCandidates()
        case .delivery: deliver(event.subject, sink: &sink)
        }
    }

    // MARK: The fleet

    /// Lifecycle deadlines, drained pods and probes, as the live fleet's 50 ms tick.
    private mutating func tick(sink: inout some SimulationSink) {
        // By index: copying every pod (its pool spec and request set) each tick costs a fleet
        // of a thousand pods seconds.
        for index in pods.indices where pods[index].draining && pods[index].running && pods[index].active.isEmpty {
            let name = pods[index].name
            if case .terminating? = fleet.pods[name]?.lifecycle.phase { apply(fleet.drained(name, now: now), to: name, sink: &sink) }
        }
        carryOut(fleet.tick(now: now), sink: &sink)
        for probe in fleet.dueProbes(now: now) {
            guard let index = podIndex[probe.pod] else { continue }
            // The kubelet probes from the node: a partition does not stop it; a hung server
            // answers nothing (the probe fails when its timeout ends); a draining one says 503.
            let hung = pods[index].running && timelines[index].driver.core.faults.hung
            let succeeded = pods[index].running && !hung && timelines[index].driver.core.ready
            probeCount += 1
            pendingProbes[probeCount] = (probe.pod, probe.launch, succeeded)
            schedule(.probeAnswer, at: now + (hung ? probe.timeout : 0), subject: probeCount)
        }
    }

    private var probeCount = 0

    private mutating func carryOut(_ batch: FleetCore.Effects, sink: inout some SimulationSink) {
        for (name, effects) in batch { apply(effects, to: name, sink: &sink) }
    }

    /// Carries out a pod's lifecycle effects, as the live fleet does with servers.
    private mutating func apply(_ effects: [PodEffect], to name: String, sink: inout some SimulationSink) {
        // Most probes change nothing; a pod deleted while backing off ends with no effect.
        guard !effects.isEmpty else {
            if fleet.removeIfTerminated(name) { discoveryChanged = true }
            return
        }
        let index = podIndex[name] ?? addPod(name)
        catchUp(index, sink: &sink)
        for effect in effects {
            switch effect {
            case .launch:
                _ = fleet.beginLaunch(name)
                let (configuration, setup) = setups[pods[index].pool.name]!
                var driver = VirtualPodDriver(core: PodCore(configuration: configuration, setup: setup))
                driver.preload(pods[index].pool.adapters.filter(\.preload).map(\.name))
                timelines[index] = PodTimeline(driver)
                pods[index].running = true
                pods[index].draining = false
            case .markReady:
                if pods[index].running { timelines[index].driver.markReady() }
            case .stopAccepting:
                pods[index].draining = true
                if pods[index].running { timelines[index].driver.beginDraining() }
            case .kill:
                kill(index, sink: &sink)
            case .scheduleRestart, .readinessChanged:
                break
            }
        }
        _ = fleet.removeIfTerminated(name)
        discoveryChanged = true
        // A watched run notes membership as it changes; otherwise the change is published
        // before the candidates are next read.
        if watching { publish() }
    }

    private mutating func addPod(_ name: String) -> Int {
        let pool = fleet.pods[name]!.pool
        let address = "127.0.0.1:\(nextPort)"
        nextPort = spec.podPort(after: nextPort)
        let discovered = self.pool.endpoints(from: [DiscoveredPod(name: name, ip: "127.0.0.1", labels: pool.labels, ready: true, ports: [Int(address.split(separator: ":").last!)!])])
        pods.append(Pod(name: name, pool: pool, address: address, endpoint: discovered.first?.endpoint))
        let (configuration, setup) = setups[pool.name]!
        timelines.append(PodTimeline(VirtualPodDriver(core: PodCore(configuration: configuration, setup: setup))))
        podIndex[name] = pods.count - 1
        if let endpoint = discovered.first?.endpoint { podByAddress[endpoint.address] = pods.count - 1 }
        return pods.count - 1
    }

    /// Pods came, went or changed readiness since the gateway's discovery last saw them.
    private var discoveryChanged = false

    /// The gateway's discovery: the pool's endpoints among the pods, Ready or not. Published
    /// once per batch of changes (a fleet's start changes a thousand pods at once), before the
    /// candidates are next read.
    private mutating func publish() {
        discoveryChanged = false
        var discovered: [DiscoveredPod] = []
        for pod in pods {
            guard let state = fleet.pods[pod.name] else { continue }
            discovered.append(DiscoveredPod(
                name: pod.name, ip: "127.0.0.1", labels: pod.pool.labels, ready: state.lifecycle.isReady,
                ports: [Int(pod.address.split(separator: ":").last!)!]))
        }
        endpointTable.update(pool.endpoints(from: discovered))
        podOfEntry = endpointTable.addresses.map { podByAddress[$0] ?? -1 }
        candidatesValidUntil = -.infinity
        if watching { recordMembership(initial: false) }
    }

    /// The server dies: what it was answering fails as the live gateway reports it.
    private mutating func kill(_ index: Int, sink: inout some SimulationSink) {
        guard pods[index].running else { return }
        catchUp(index, sink: &sink)
        pods[index].running = false
        for slot in pods[index].active.sorted() {
            // The connection closed under the request: a stream already relaying ends with an
            // error event; one still waiting for its head is reset before it, which its search
            // ends with a 503 or, with `retryOnReset`, retries.
            if exchanges[slot].headSent {
                fail(slot, .streamError(502), sink: &sink)
            } else {
                closedBeforeHead(slot, sink: &sink)
            }
        }
        pods[index].held = []
        candidatesValidUntil = -.infinity
    }

    /// Chaos on the fleet; returns why the action failed, if it did.
    private mutating func perform(_ action: ChaosAction, sink: inout some SimulationSink) -> String? {
        do throws(FleetError) {
            switch action {
            case .kill(let name):
                let effects = try fleet.kill(name, now: now)
                if let index = podIndex[name] { kill(index, sink: &sink) }
                apply(effects, to: name, sink: &sink)
            case .drain(let name): carryOut(try fleet.drain(name, now: now), sink: &sink)
            case .scale(let pool, let replicas): carryOut(try fleet.scale(pool, replicas: replicas, now: now), sink: &sink)
            default:
                guard let state = fleet.pods[action.target], let index = podIndex[action.target] else {
                    throw FleetError("no pod named \(action.target)")
                }
                guard pods[index].running else {
                    if case .restore = action { return nil }
                    throw FleetError("pod \(action.target) is not running (\(state.lifecycle.phase.status)); try again once it is")
                }
                fault(index, action, sink: &sink)
            }
            return nil
        } catch {
            return error.description
        }
    }

    private mutating func fault(_ index: Int, _ action: ChaosAction, sink: inout some SimulationSink) {
        guard let fault = action.podFault else { return }
        catchUp(index, sink: &sink)
        let wasHung = timelines[index].driver.core.faults.hung
        timelines[index].driver.apply(fault, now: now)
        let faults = timelines[index].driver.core.faults
        if faults.partitioned {
            // Open connections are reset: every request in flight there ends.
            for slot in pods[index].active.sorted() {
                if exchanges[slot].running { timelines[index].abort(exchanges[slot].handle, now: now) }
                fail(slot, exchanges[slot].headSent ? .streamError(502) : .status(503), sink: &sink)
            }
            pods[index].held = []
            // The gateway learns it at its next scrape, which is refused.
        }
        if wasHung, !faults.hung {
            // Released: what it read while hung is served now, in arrival order.
            let held = pods[index].held
            pods[index].held = []
            for slot in held where !exchanges[slot].done { admit(slot, at: index, sink: &sink) }
        }
    }

    // MARK: Pods

    /// Runs a pod's timeline to now and takes in what its clients saw on the way.
    private mutating func catchUp(_ index: Int, sink: inout some SimulationSink) {
        guard pods[index].running, timelines[index].run(until: now, wantsInterTokenGaps: sink.wantsInterTokenGaps) else { return }
        takeHappenings(index, sink: &sink)
    }

    /// Runs every pod's timeline to now (the scrape and the tick look at all of them), the pods
    /// in parallel: each touches only itself. What they saw is taken in pod by pod, in order, so a
    /// run does not depend on which thread ran which pod. When `scraping`, each running pod's
    /// gauges are read on its thread too and returned by pod index (nil for the others).
    @discardableResult
    private mutating func catchUpAll(sink: inout some SimulationSink, scraping: Bool = false) -> [EndpointMetrics?] {
        let running = pods.indices.map { pods[$0].running }
        var news = [Bool](repeating: false, count: running.count)
        var gauges = [EndpointMetrics?](repeating: nil, count: scraping ? running.count : 0)
        let (time, gaps) = (now, sink.wantsInterTokenGaps)
        // Contiguous runs of pods per task: neighbours in memory stay on one thread.
        let tasks = min(running.count, Self.catchUpTasks)
        timelines.withUnsafeMutableBufferPointer { timelines in
            news.withUnsafeMutableBufferPointer { news in
                gauges.withUnsafeMutableBufferPointer { gauges in
                    let (timelines, news, gauges) = (DisjointElements(timelines), DisjointElements(news), DisjointElements(gauges))
                    DispatchQueue.concurrentPerform(iterations: tasks) { task in
                        for index in task * running.count / tasks..<(task + 1) * running.count / tasks where running[index] {
                            news.buffer[index] = timelines.buffer[index].run(until: time, wantsInterTokenGaps: gaps)
                            if scraping { gauges.buffer[index] = EndpointMetrics(engine: timelines.buffer[index].driver.core.engine, now: time) }
                        }
                    }
                }
            }
        }
        for index in news.indices where news[index] { takeHappenings(index, sink: &sink) }
        return gauges
    }

    /// Tasks a fleet-wide catch-up is cut into: enough to balance two to a few dozen cores.
    private static let catchUpTasks = 64

    private mutating func takeHappenings(_ index: Int, sink: inout some SimulationSink) {
        let (happenings, gaps) = timelines[index].takeHappenings()
        for gap in gaps { sink.addInterTokenGap(gap) }
        for happening in happenings {
            switch happening {
            case .finished(let slot, let time, let firstToken): finish(slot, at: time, firstToken: firstToken, sink: &sink)
            case .cut(let slot, let time, streaming: true): fail(slot, .streamError(502), at: time, sink: &sink)
            case .cut(let slot, let time, streaming: false): closedBeforeHead(slot, at: time, sink: &sink)
            }
        }
    }

    // MARK: Requests

    private mutating func send(_ request: SimulatedRequest, sink: inout some SimulationSink) {
        let slot = freeSlots.popLast() ?? exchanges.count
        let exchange = Exchange(
            request: request, scheduled: now, search: EndpointSearch(endpoints: [], maxAttempts: maxAttempts, retryOnReset: retryOnReset),
            inference: InferenceRequest(
                model: request.model, objectiveHeader: request.objective, prefixText: request.prefixText, prefixHashes: request.prefixHashes),
            lastActivity: now)
        if slot == exchanges.count { exchanges.append(exchange) } else { exchanges[slot] = exchange }
        outstanding += 1
        proceed(slot, exchanges[slot].search.next(), sink: &sink)
    }

    /// Load start, subtracted from every time a record carries.
    private var recordStart = 0.0

    /// Follows the request's search for an endpoint (`EndpointSearch`, the live data plane's
    /// retries) from `step` until the request is sent to a pod or fails.
    private mutating func proceed(_ slot: Int, _ step: EndpointSearch.Step, sink: inout some SimulationSink) {
        var step = step
        while true {
            switch step {
            case .exhausted:
                return fail(slot, .status(503), sink: &sink)
            case .pick(let tried):
                var available = currentCandidates()
                if !tried.isEmpty { available.removeAll { tried.contains($0.endpoint.address) } }
                switch director.decide(exchanges[slot].inference, candidates: available, now: now) {
                case .route(let endpoints, let target, _, _):
                    exchanges[slot].inference.modelRewriteHeader = target
                    step = exchanges[slot].search.picked(endpoints)
                case .reject(let status, _, _):
                    // Refused by the picker (shed, no endpoint, no model): the first attempt's
                    // refusal is the client's answer; a retry finding nothing is Envoy's 503.
                    return fail(slot, .status(exchanges[slot].search.attempts == 0 ? status : 503), sink: &sink)
                }
            case .attempt(let endpoint):
                let index = podByAddress[endpoint.address]
                if let index { exchanges[slot].pod = index }
                guard let index, pods[index].running else {
                    // Nothing listens: the connection is refused, and the next endpoint is tried.
                    endpointTable.reportConnectFailure(endpoint.address, now: now)
                    candidatesValidUntil = -.infinity
                    step = exchanges[slot].search.connectFailed("connection refused")
                    continue
                }
                exchanges[slot].search.sent()
                if timelines[index].driver.core.faults.partitioned {
                    // Accepted, the request written, and reset at once.
                    return closedBeforeHead(slot, sink: &sink)
                }
                pods[index].active.insert(slot)
                exchanges[slot].lastActivity = now
                scheduleTimeout(slot, at: now + upstreamTimeout)
                if pathLatency > 0 {
                    schedule(.delivery, at: now + pathLatency, subject: slot)
                } else {
                    deliver(slot, sink: &sink)
                }
                return
            }
        }
    }

    /// The pod closed the request's connection before any response head (a partition, a kill,
    /// a cut, at `time` if not now): as its search says, the request fails with a 503 or is
    /// tried again (with `retryOnReset`, on the next endpoint). A retry after a cut starts when
    /// the fleet learns of the cut, at the next catch-up.
    private mutating func closedBeforeHead(_ slot: Int, at time: Double? = nil, sink: inout some SimulationSink) {
        guard let endpoint = exchanges[slot].search.current else { return fail(slot, .status(503), at: time, sink: &sink) }
        switch exchanges[slot].search.resetBeforeHead(connectionWasReused: false) {
        case .giveUp(let blameEndpoint):
            if blameEndpoint { endpointTable.reportConnectFailure(endpoint.address, now: now) }
            candidatesValidUntil = -.infinity
            fail(slot, .status(503), at: time, sink: &sink)
        case .retryFresh(let same):
            detach(slot)
            proceed(slot, .attempt(same), sink: &sink)
        case .moveOn(let next):
            endpointTable.reportConnectFailure(endpoint.address, now: now)
            candidatesValidUntil = -.infinity
            detach(slot)
            proceed(slot, next, sink: &sink)
        }
    }

    /// The request reaches its pod's server.
    private mutating func deliver(_ slot: Int, sink: inout some SimulationSink) {
        let index = exchanges[slot].pod
        guard !exchanges[slot].done, pods[index].running else { return }
        if timelines[index].driver.core.faults.hung {
            pods[index].held.append(slot)
            return
        }
        admit(slot, at: index, sink: &sink)
    }

    /// The pod's own checks, as its server makes them, then its engine. The checks read only
    /// the pod's configuration, adapters and faults, which change only when the pod is caught
    /// up, so the pod itself need not be: the request waits on its timeline.
    private mutating func admit(_ slot: Int, at index: Int, sink: inout some SimulationSink) {
        let request = exchanges[slot].request
        let prompt: [Int]
        let lora: LoRAAdapter?
        do throws(APIError) {
            let model = exchanges[slot].inference.modelRewriteHeader ?? request.model
            (prompt, lora) = try timelines[index].admissionCheck(model: model, promptTokenIDs: request.promptTokenIDs, maxTokens: request.outputTokens)
        } catch {
            endpointTable.reportAnswer(pods[index].address, status: error.status, now: now)
            return fail(slot, .status(error.status), sink: &sink)
        }
        var cutAfterEvents: Int?
        timelines[index].driver.recordAccepted(model: request.model)
        let injected = timelines[index].driver.drawInjectedFault()
        if let injected {
            switch injected {
            case .status(let status):
                endpointTable.reportAnswer(pods[index].address, status: status, now: now)
                return fail(slot, .status(status), sink: &sink)
            case .cutStream:
                cutAfterEvents = request.streaming ? 2 : 0
            }
        } else {
            endpointTable.reportAnswer(pods[index].address, status: 200, now: now)
        }
        exchanges[slot].running = true
        exchanges[slot].headSent = request.streaming
        exchanges[slot].inputTokens = prompt.count
        if request.streaming { exchanges[slot].lastActivity = now }
        exchanges[slot].handle = timelines[index].deliver(slot: slot, time: now, streaming: request.streaming, cutAfterEvents: cutAfterEvents) { id in
            EngineRequest(
                id: id, promptTokens: prompt, plannedOutput: [Int](repeating: 0, count: request.outputTokens), finishReason: .length,
                lora: lora, arrival: now, maxTokensParam: request.outputTokens)
        }
    }

    /// The gateway's upstream timeout: a pod silent for `upstreamTimeout` (before its head, or
    /// between two events of a stream) ends the request with 504.
    private mutating func scheduleTimeout(_ slot: Int, at time: Double) {
        exchanges[slot].timeoutDue = time
        schedule(.timeout, at: time, subject: slot)
    }

    private mutating func checkTimeout(_ slot: Int, sink: inout some SimulationSink) {
        // Only the slot's own pending check: one left by a request that ended and gave up the
        // slot would catch up another request's pod for nothing (a pod's catch-up per request).
        guard !exchanges[slot].done, exchanges[slot].pod >= 0, exchanges[slot].timeoutDue == now else { return }
        let index = exchanges[slot].pod
        // The pod's news first: the request may have ended, or a stream moved, since.
        catchUp(index, sink: &sink)
        guard !exchanges[slot].done else { return }
        let streamOnPod = exchanges[slot].running && exchanges[slot].request.streaming && pods[index].running
        let lastActivity = streamOnPod ? timelines[index].lastActivity(exchanges[slot].handle) : exchanges[slot].lastActivity
        let silentUntil = lastActivity + upstreamTimeout
        guard now >= silentUntil else { return scheduleTimeout(slot, at: silentUntil) }
        if exchanges[slot].running, pods[index].running { timelines[index].abort(exchanges[slot].handle, now: now) }
        if !exchanges[slot].headSent { endpointTable.reportAnswer(pods[index].address, status: 504, now: now) }
        fail(slot, exchanges[slot].headSent ? .streamError(504) : .status(504), sink: &sink)
    }

    /// The request's last token reached its client at `time` (a stream's first at `firstToken`).
    private mutating func finish(_ slot: Int, at time: Double, firstToken: Double?, sink: inout some SimulationSink) {
        let exchange = exchanges[slot]
        var record = RequestRecord(
            stream: streamNames[exchange.request.stream], scheduled: exchange.scheduled - recordStart, sent: exchange.scheduled - recordStart,
            head: (exchange.request.streaming ? firstToken ?? time : time) - recordStart,
            firstToken: exchange.request.streaming ? firstToken.map { $0 - recordStart } : nil, finished: time - recordStart,
            outcome: .ok, servedBy: exchange.search.sentTo, attempts: exchange.search.attempts,
            outputTokens: exchange.request.outputTokens)
        record.inputTokens = exchange.inputTokens
        end(slot)
        sink.add(record)
    }

    private mutating func fail(_ slot: Int, _ outcome: Outcome, at time: Double? = nil, sink: inout some SimulationSink) {
        let time = time ?? now
        let exchange = exchanges[slot]
        guard !exchange.done else { return }
        // As the gateway's served-endpoint header: the pod the request was last sent to, if any.
        let served = exchange.search.sentTo
        var record = RequestRecord(
            stream: streamNames[exchange.request.stream], scheduled: exchange.scheduled - recordStart, sent: exchange.scheduled - recordStart,
            head: time - recordStart, firstToken: nil, finished: time - recordStart, outcome: outcome, servedBy: served,
            attempts: exchange.search.attempts == 0 ? nil : exchange.search.attempts)
        record.inputTokens = nil
        end(slot)
        sink.add(record)
    }

    private mutating func end(_ slot: Int) {
        exchanges[slot].done = true
        detach(slot)
        freeSlots.append(slot)
        outstanding -= 1
    }

    /// Takes the request off the pod it was sent to (it ended, or is tried elsewhere).
    private mutating func detach(_ slot: Int) {
        guard exchanges[slot].pod >= 0 else { return }
        pods[exchanges[slot].pod].active.remove(slot)
        if exchanges[slot].handle >= 0 { timelines[exchanges[slot].pod].release(exchanges[slot].handle) }
        exchanges[slot].handle = -1
        exchanges[slot].running = false
    }

    /// The names records give their streams.
    var streamNames: [String] = [""]

    // MARK: The gateway

    /// The gateway's scrape: every pod's gauges as its `/metrics` page shows them now. A hung
    /// server answers nothing (its metrics go stale); a partitioned or gone one refuses.
    /// `gauges`: each running pod's, by index, as `catchUpAll` read them.
    private mutating func scrape(_ gauges: [EndpointMetrics?]) {
        for (position, index) in podOfEntry.enumerated() where index >= 0 {
            guard pods[index].running, !timelines[index].driver.core.faults.partitioned else {
                endpointTable.scrapeFailed(at: position, unreachable: true)
                continue
            }
            if timelines[index].driver.core.faults.hung { continue }
            endpointTable.scraped(at: position, metrics: gauges[index])
        }
        candidatesValidUntil = -.infinity
        if watching { _ = currentCandidates() }
    }

    /// The candidates now, as the datastore would give them.
    private mutating func currentCandidates() -> [Candidate] {
        if discoveryChanged { publish() }
        if now >= candidatesValidUntil {
            candidates = endpointTable.candidates(now: now)
            let until = endpointTable.candidatesUnchanged(after: now)
            if watching, until < .infinity, until != candidatesValidUntil { schedule(.candidatesExpire, at: until, subject: 0) }
            candidatesValidUntil = until
            if watching, !candidates.lazy.map(\.endpoint.address).elementsEqual(routableAddresses) { recordMembership(initial: false) }
        }
        return candidates
    }

    /// Notes which pods joined or left the candidates (the live scenario samples it every 10 ms).
    private mutating func recordMembership(initial: Bool) {
        if now >= candidatesValidUntil { _ = currentCandidates() }
        routableAddresses = candidates.map(\.endpoint.address)
        let inside = Set(candidates.compactMap { podByAddress[$0.endpoint.address].map { pods[$0].name } })
        for pod in pods {
            let isIn = inside.contains(pod.name)
            if initial || membership[pod.name] == nil || isIn != routable.contains(pod.name) {
                membership[pod.name, default: []].append(.init(at: now - recordStart, routable: isIn))
            }
        }
        routable = inside
    }
}

/// A sink that keeps nothing (the fleet's startup sends no requests).
struct NoSink: SimulationSink {
    var wantsInterTokenGaps: Bool { false }
    mutating func addInterTokenGap(_ gap: Double) {}
    mutating func add(_ record: RequestRecord) {}
}

extension ChaosAction {
    /// The fault this action puts on a pod's server, if it is one.
    var podFault: PodFault? {
        switch self {
        case .hang: .hang(true)
        case .slow(_, let factor): .slow(factor)
        case .errors(_, let injection): .errors(injection)
        case .partition: .partition(true)
        case .kvPressure(_, let usable): .kvPressure(usable: usable)
        case .restore: .restore
        case .kill, .drain, .scale: nil
        }
    }
}
