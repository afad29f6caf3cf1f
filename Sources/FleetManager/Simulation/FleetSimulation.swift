import DequeModule
import FakeVLLM
import Gateway
import HeapModule
import InferenceAPI
import Load

/// `understudy sim`: a fleet file's pods and its gateway's picker driven in virtual time by a
/// discrete-event loop, with no sockets and no clock. The pods are the same `PodCore` the live
/// servers run (admission, engine, stepping rule), configured from the same pool specs; the picker is the same `Director`, fed
/// by scrapes every 50 ms of the values a pod's `/metrics` shows; the load is the same
/// `BenchPlan` the live bench sends. What it measures is what a client of the live fleet would
/// see if the machine were infinitely fast.
public struct FleetSimulation {
    /// How often the gateway scrapes every pod (GIE's refresh interval).
    public var scrapeInterval = 0.05
    /// Seconds between the gateway's decision and the request reaching its pod's engine: the
    /// client → proxy → pod path (sockets, parsing, tokenizing) that a live stack adds and an
    /// engine does not see. 0 models an infinitely fast machine; docs/bench.md shows how to
    /// measure a live stack's (an `instant` fleet's time to first token).
    public var pathLatency = 0.0

    private var pods: [SimulatedPod]
    private var podByAddress: [String: Int]
    private var director: Director
    /// The gateway's endpoints, as its datastore keeps them (staleness, readiness).
    private var endpointTable = EndpointTable()
    /// The table's candidates, and until when they hold unless a scrape changes them.
    private var candidates: [Candidate] = []
    private var candidatesValidUntil = -Double.infinity
    private var now = 0.0
    private var nextScrape = 0.0
    /// Pods' next events (a step ends, an idle pod wakes), by time (then pod index, for a stable order).
    private var podEvents = Heap<PodEvent>()
    /// Requests in the engines, by engine request id (a slot, reused once a request ends).
    private var active: [ActiveRequest] = []
    /// Requests on their way to a pod (`pathLatency`), in the order they arrive there.
    private var inTransit: Deque<(time: Double, pod: Int, request: EngineRequest)> = []
    private var freeSlots: [Int] = []

    public init(_ spec: FleetSpec, profiles: ProfileStore, policy: PickerPolicy = .default, seed: UInt64 = 0) throws {
        var resources = spec.resources
        resources.pickerConfig = policy.pickerConfig(configured: resources.pickerConfig)
        let pool = try GatewayServer.selectPool(resources, nil)
        director = Director(resources: resources, pool: pool, scheduler: try Scheduler(config: resources.pickerConfig ?? .default, seed: seed), seed: seed)
        pods = []
        var discovered: [DiscoveredPod] = []
        // The addresses `understudy up` would give the pods, so that reports of a live run and
        // a simulated one name the same endpoints, and the picker sees them in the same order.
        var port = spec.firstPodPort == 0 ? 8000 : spec.firstPodPort
        for podPool in spec.pools {
            var configuration = ServerConfiguration()
            try Fleet.configure(&configuration, pool: podPool, port: 0)
            let setup = try EngineSetup(configuration, profiles: profiles)
            for replica in 0..<podPool.replicas {
                let name = "\(podPool.name)-\(replica)"
                discovered.append(DiscoveredPod(name: name, ip: "127.0.0.1", labels: podPool.labels, ready: true, ports: [port]))
                pods.append(SimulatedPod(name: name, pool: podPool, core: PodCore(configuration: configuration, setup: setup)))
                port = spec.podPort(after: port)
            }
        }
        // The pool's endpoints among the pods, as the gateway's discovery selects them.
        let endpoints = pool.endpoints(from: discovered)
        podByAddress = [:]
        endpointTable.update(endpoints)
        for endpoint in endpoints {
            guard let index = pods.firstIndex(where: { $0.name == endpoint.endpoint.podName }) else { continue }
            pods[index].endpoint = endpoint.endpoint
            podByAddress[endpoint.endpoint.address] = index
        }
        guard !podByAddress.isEmpty else { throw FleetError("the InferencePool \(pool.name) selects none of the fleet's pods") }
    }

    /// Runs the plan's stages one after another, each starting when the previous one has
    /// drained, and summarises each as the live bench would.
    public mutating func run(_ plan: BenchPlan, progress: ((_ stage: Int, _ done: Double) -> Void)? = nil) -> [StageSummary] {
        let needsPrefixText = director.scheduler.prefixIndex != nil
        var summaries: [StageSummary] = []
        for stage in plan.rates.indices {
            let start = now
            let arrivals = plan.arrivals(stage: stage)
            var statistics = StageStatistics(rate: plan.rates[stage], duration: plan.duration, start: start)
            var next = 0
            var outstanding = 0
            var events = 0
            while next < arrivals.count || outstanding > 0 {
                let arrival = next < arrivals.count ? start + arrivals[next] : .infinity
                let podEvent = podEvents.min?.time ?? .infinity
                let delivery = inTransit.first?.time ?? .infinity
                // At equal times: tokens become visible, then the scrape reads, then requests reach
                // their pods, then new ones arrive at the gateway.
                if podEvent <= nextScrape, podEvent <= delivery, podEvent <= arrival {
                    let event = podEvents.removeMin()
                    now = event.time
                    advance(event.pod, plan: plan, statistics: &statistics, outstanding: &outstanding)
                } else if nextScrape <= delivery, nextScrape <= arrival {
                    now = nextScrape
                    scrape()
                    nextScrape += scrapeInterval
                } else if delivery <= arrival {
                    let sent = inTransit.removeFirst()
                    now = sent.time
                    submit(sent.request, to: sent.pod)
                } else {
                    now = arrival
                    let item = plan.item(stage: stage, index: next)
                    if admit(item, stage: stage, prefixText: needsPrefixText ? item.prompt : "", statistics: &statistics) { outstanding += 1 }
                    next += 1
                }
                events += 1
                if events % 65_536 == 0 { progress?(stage, min(1, (now - start) / plan.duration)) }
            }
            progress?(stage, 1)
            summaries.append(statistics.summary())
        }
        return summaries
    }

    // MARK: Events

    /// The gateway's scrape: every pod's gauges as its `/metrics` page shows them now.
    private mutating func scrape() {
        for (address, index) in podByAddress {
            endpointTable.scraped(address, metrics: pods[index].metrics(at: now))
        }
        candidatesValidUntil = -.infinity
    }

    /// The candidates now, as the datastore would give them.
    private mutating func currentCandidates() -> [Candidate] {
        if now >= candidatesValidUntil {
            candidates = endpointTable.candidates(now: now)
            candidatesValidUntil = endpointTable.candidatesUnchanged(after: now)
        }
        return candidates
    }

    /// A request reaches the gateway: refused (recorded at once, as the client would see the
    /// status) or sent to a pod's engine. True when it went to an engine.
    private mutating func admit(_ item: WorkloadItem, stage: Int, prefixText: String, statistics: inout StageStatistics) -> Bool {
        let decision = director.decide(InferenceRequest(model: item.model, prefixText: prefixText), candidates: currentCandidates(), now: now)
        guard case .route(let endpoints, let targetModel, _, _) = decision, let index = endpoints.first.flatMap({ podByAddress[$0.address] }) else {
            if case .reject(let status, _, _) = decision { refuse(status, statistics: &statistics) }
            return false
        }
        // The pod's own checks, as its server makes them: the model (404), the context length (400).
        let lora: LoRAAdapter?
        let prompt = pods[index].driver.core.withSpecialTokens(item.promptTokenIDs)
        do throws(APIError) {
            lora = try pods[index].driver.core.resolveModel(targetModel)
            _ = try pods[index].driver.core.checkLength(promptTokens: prompt.count, maxTokens: item.outputTokens, kind: .completion)
        } catch {
            refuse(error.status, statistics: &statistics)
            return false
        }
        let slot = freeSlots.popLast() ?? active.count
        let request = ActiveRequest(scheduled: now, inputTokens: prompt.count, outputTokens: item.outputTokens, pod: index)
        if slot == active.count { active.append(request) } else { active[slot] = request }
        let engineRequest = EngineRequest(
            id: RequestID(slot), promptTokens: prompt, plannedOutput: [Int](repeating: 0, count: item.outputTokens), finishReason: .length,
            lora: lora, arrival: now + pathLatency, maxTokensParam: item.outputTokens)
        if pathLatency > 0 {
            inTransit.append((now + pathLatency, index, engineRequest))
        } else {
            submit(engineRequest, to: index)
        }
        return true
    }

    /// The request reaches its pod's engine.
    private mutating func submit(_ request: EngineRequest, to index: Int) {
        let scheduled = pods[index].driver.nextEvent != nil
        pods[index].driver.submit(request, now: now)
        if !scheduled { schedule(index) }
    }

    private func refuse(_ status: Int, statistics: inout StageStatistics) {
        statistics.add(RequestRecord(stream: "", scheduled: now, sent: now, head: now, finished: now, outcome: .status(status)))
    }

    /// Puts the pod's next event (its step's end, or its wake-up), if any, on the timeline.
    private mutating func schedule(_ index: Int) {
        if let time = pods[index].driver.nextEvent { podEvents.insert(PodEvent(time: time, pod: index)) }
    }

    /// The pod's event: a step ended (its tokens are out, finished requests are recorded, the
    /// next step starts) or the pod woke to take its first step.
    private mutating func advance(_ index: Int, plan: BenchPlan, statistics: inout StageStatistics, outstanding: inout Int) {
        let ended = pods[index].driver.advance(now: now)
        schedule(index)
        guard let outcome = ended else { return }
        for progress in outcome.progress where !progress.newTokens.isEmpty {
            // Read and written field by field in place: this runs for every token.
            let slot = Int(progress.id)
            if let previous = progress.previousTokenTime {
                if plan.streaming { statistics.addInterTokenGap(now - previous) }
            } else {
                active[slot].firstToken = now
            }
            guard progress.finished != nil else { continue }
            let request = active[slot]
            var record = RequestRecord(
                stream: "", scheduled: request.scheduled, sent: request.scheduled, head: plan.streaming ? request.firstToken : now,
                firstToken: plan.streaming ? request.firstToken : nil, finished: now, outcome: .ok,
                servedBy: pods[request.pod].endpoint.address, attempts: 1, outputTokens: request.outputTokens)
            record.inputTokens = request.inputTokens
            statistics.add(record)
            freeSlots.append(slot)
            outstanding -= 1
        }
    }
}

/// One pod of the simulated fleet: the live pod's core under the virtual-time driver.
struct SimulatedPod {
    let name: String
    var endpoint: Endpoint
    var driver: VirtualPodDriver

    init(name: String, pool: PodPoolSpec, core: PodCore) {
        self.name = name
        endpoint = Endpoint(address: name, podName: name)
        driver = VirtualPodDriver(core: core)
        driver.preload(pool.adapters.filter { $0.preload && !$0.runtimeOnly }.map(\.name))
    }

    /// What the gateway reads from this pod's `/metrics` page now.
    func metrics(at now: Double) -> EndpointMetrics {
        EndpointMetrics(engine: driver.core.engine, now: now)
    }
}

extension EndpointMetrics {
    /// The picker's view of an engine, exactly as `MetricsExtractor` reads it off the emulated
    /// server's page: its queue, batch, KV-cache usage, LoRA batch info (when LoRA is enabled)
    /// and cache config.
    init(engine: Engine, now: Double) {
        let lora = engine.config.maxLoras > 0
        self.init(
            waitingQueueSize: engine.numWaiting, runningRequestsSize: engine.numRunning, kvCacheUsage: engine.kvCacheUsage,
            activeAdapters: lora ? engine.runningAdapters : [], waitingAdapters: lora ? engine.waitingAdapters : [],
            maxActiveAdapters: lora ? engine.config.maxLoras : 0, blockSize: engine.config.blockSize, numGPUBlocks: engine.config.numGPUBlocks,
            updateTime: now)
    }
}

/// A request in a simulated engine.
struct ActiveRequest {
    var scheduled: Double
    var inputTokens: Int
    var outputTokens: Int
    /// Index of the pod serving it.
    var pod: Int
    var firstToken: Double?
}

struct PodEvent: Comparable {
    var time: Double
    var pod: Int

    static func < (a: PodEvent, b: PodEvent) -> Bool { (a.time, a.pod) < (b.time, b.pod) }
}
