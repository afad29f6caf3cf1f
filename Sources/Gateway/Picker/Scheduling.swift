import InferenceAPI

/// One model-server endpoint: a pod's address on one target port.
public struct Endpoint: Sendable, Hashable {
    /// `ip:port`, as GIE names endpoints (and as `x-gateway-destination-endpoint` carries them).
    public var address: String
    public var podName: String

    public init(address: String, podName: String) {
        self.address = address
        self.podName = podName
    }
}

/// What the datastore last scraped from an endpoint, in the model-server protocol's terms.
public struct EndpointMetrics: Sendable, Equatable {
    /// TotalQueuedRequests (`vllm:num_requests_waiting`).
    public var waitingQueueSize: Int
    /// TotalRunningRequests (`vllm:num_requests_running`).
    public var runningRequestsSize: Int
    /// KVCacheUtilization 0…1 (`vllm:kv_cache_usage_perc`).
    public var kvCacheUsage: Double
    /// From the newest `vllm:lora_requests_info` series.
    public var activeAdapters: [String]
    public var waitingAdapters: [String]
    public var maxActiveAdapters: Int
    /// From `vllm:cache_config_info`, when exposed.
    public var blockSize: Int?
    public var numGPUBlocks: Int?
    /// When these values were scraped (seconds, the datastore's clock).
    public var updateTime: Double

    public init(
        waitingQueueSize: Int = 0, runningRequestsSize: Int = 0, kvCacheUsage: Double = 0, activeAdapters: [String] = [],
        waitingAdapters: [String] = [], maxActiveAdapters: Int = 0, blockSize: Int? = nil, numGPUBlocks: Int? = nil, updateTime: Double = 0
    ) {
        self.waitingQueueSize = waitingQueueSize
        self.runningRequestsSize = runningRequestsSize
        self.kvCacheUsage = kvCacheUsage
        self.activeAdapters = activeAdapters
        self.waitingAdapters = waitingAdapters
        self.maxActiveAdapters = maxActiveAdapters
        self.blockSize = blockSize
        self.numGPUBlocks = numGPUBlocks
        self.updateTime = updateTime
    }
}

/// An endpoint as the scheduler sees it for one request.
public struct Candidate: Sendable, Equatable {
    public var endpoint: Endpoint
    /// Nil until the first scrape.
    public var metrics: EndpointMetrics?

    public init(endpoint: Endpoint, metrics: EndpointMetrics?) {
        self.endpoint = endpoint
        self.metrics = metrics
    }
}

/// What the scheduler needs to know about a request.
public struct SchedulingRequest: Sendable {
    /// The model the request will be sent with (after any rewrite): an adapter or a base model.
    public var targetModel: String
    /// The text prefix caching is judged on (the prompt, or the chat messages as JSON).
    public var prefixText: String
    /// Negative means sheddable.
    public var priority: Int

    public init(targetModel: String, prefixText: String = "", priority: Int = 0) {
        self.targetModel = targetModel
        self.prefixText = prefixText
        self.priority = priority
    }
}

/// Per-request scratch the plugins share in one scheduling cycle (GIE's CycleState), passed
/// `inout` rather than kept in a shared map.
public struct CycleState: Sendable {
    /// The request's prefix block hashes (from the prefix producer, before scheduling).
    public var prefixHashes: [UInt64] = []
    /// Matched prefix blocks per endpoint address (GIE's `PrefixCacheMatchInfo`).
    public var prefixMatches: [String: Int] = [:]
    public var now: Double
    /// For filters that decide at random (the legacy LoRA soft affinity).
    public var random: SplitMix64

    public init(now: Double, seed: UInt64 = 0) {
        self.now = now
        self.random = SplitMix64(seed: seed)
    }
}

/// Keeps the candidates that may serve the request. Returns indices into `candidates`.
public protocol Filter: Sendable {
    var typeName: String { get }
    func filter(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Int]
}

/// Scores each candidate in [0, 1]; the result is indexed like `indices`.
public protocol Scorer: Sendable {
    var typeName: String { get }
    func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double]
}

/// Chooses from scored candidates: the first result is the target, the rest fallbacks.
public protocol Picker: Sendable {
    var typeName: String { get }
    mutating func pick(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ generator: inout SplitMix64) -> [Int]
}

/// One scheduling profile: filters, weighted scorers, then a picker (GIE's `SchedulerProfile`).
public struct SchedulerProfile: Sendable {
    public var name: String
    public var filters: [any Filter]
    public var scorers: [(scorer: any Scorer, weight: Double)]
    public var picker: any Picker

    public init(name: String, filters: [any Filter] = [], scorers: [(scorer: any Scorer, weight: Double)], picker: any Picker) {
        self.name = name
        self.filters = filters
        self.scorers = scorers
        self.picker = picker
    }

    /// Runs the profile; nil when a filter leaves no candidate (the request then gets 429).
    /// `total = Σ weight·clamp(score, 0, 1)`; weights are not normalised, as in GIE.
    public mutating func schedule(
        _ request: SchedulingRequest, _ candidates: [Candidate], state: inout CycleState, generator: inout SplitMix64
    ) -> [Int]? {
        var indices = Array(candidates.indices)
        for filter in filters {
            indices = filter.filter(request, candidates, indices, &state)
            if indices.isEmpty { return nil }
        }
        var scored = indices.map { (index: $0, score: 0.0) }
        for (scorer, weight) in scorers {
            let scores = scorer.score(request, candidates, indices, &state)
            for position in scored.indices { scored[position].score += weight * min(1, max(0, scores[position])) }
        }
        let picked = picker.pick(scored, candidates, &generator)
        return picked.isEmpty ? nil : picked
    }
}
