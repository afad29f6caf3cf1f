import FakeVLLM
import Gateway
import Load

/// `understudy sim` of a bench plan: a fleet file's pods and its gateway in virtual time
/// (`VirtualFleet`: the live pods' `PodCore`, the same `Director`, scrapes every 50 ms), under
/// the same `BenchPlan` the live bench sends. What it measures is what a client of the live
/// fleet would see if the machine were infinitely fast.
public struct FleetSimulation {
    /// How often the gateway scrapes every pod (GIE's refresh interval).
    public var scrapeInterval: Double {
        get { fleet.scrapeInterval }
        set { fleet.scrapeInterval = newValue }
    }
    /// Seconds between the gateway's decision and the request reaching its pod's engine: the
    /// client → proxy → pod path (sockets, parsing, tokenizing) that a live stack adds and an
    /// engine does not see. 0 models an infinitely fast machine; docs/bench.md shows how to
    /// measure a live stack's (an `instant` fleet's time to first token).
    public var pathLatency: Double {
        get { fleet.pathLatency }
        set { fleet.pathLatency = newValue }
    }

    private var fleet: VirtualFleet
    private var started = false

    public init(_ spec: FleetSpec, profiles: ProfileStore, policy: PickerPolicy = .default, seed: UInt64 = 0) throws {
        fleet = try VirtualFleet(spec, profiles: profiles, policy: policy, seed: seed)
    }

    /// Brings the fleet up (every pod Ready, as `understudy up` waits for), then runs the
    /// plan's stages one after another, each starting when the previous one has drained, and
    /// summarises each as the live bench would.
    public mutating func run(_ plan: BenchPlan, progress: ((_ stage: Int, _ done: Double) -> Void)? = nil) throws -> [StageSummary] {
        if !started {
            try fleet.startUp()
            started = true
        }
        let needsPrefixText = fleet.needsPrefixText
        var summaries: [StageSummary] = []
        for stage in plan.rates.indices {
            let start = fleet.now
            var sink = StageSink(statistics: StageStatistics(rate: plan.rates[stage], duration: plan.duration, start: 0), wantsInterTokenGaps: plan.streaming)
            _ = fleet.run(plan.arrivals(stage: stage), request: { index in
                let item = plan.item(stage: stage, index: index)
                return SimulatedRequest(
                    stream: 0, model: item.model, objective: nil, promptTokenIDs: item.promptTokenIDs,
                    prefixText: needsPrefixText ? item.prompt : "", outputTokens: item.outputTokens, streaming: plan.streaming)
            }, from: start, sink: &sink, progress: { elapsed in progress?(stage, min(1, elapsed / plan.duration)) })
            progress?(stage, 1)
            summaries.append(sink.statistics.summary())
        }
        return summaries
    }
}

/// A bench stage's statistics as the simulation's sink.
struct StageSink: SimulationSink {
    var statistics: StageStatistics
    let wantsInterTokenGaps: Bool
    mutating func addInterTokenGap(_ gap: Double) { statistics.addInterTokenGap(gap) }
    mutating func add(_ record: RequestRecord) { statistics.add(record) }
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

