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
    /// The text's block hashes, when made ahead.
    public var prefixHashes: PrefixHashes?
    /// Negative means sheddable.
    public var priority: Int
    /// `test-epp-endpoint-selection` (`HeaderBasedTestingFilter`).
    public var endpointSelection: String?

    public init(
        targetModel: String, prefixText: String = "", prefixHashes: PrefixHashes? = nil, priority: Int = 0, endpointSelection: String? = nil
    ) {
        self.targetModel = targetModel
        self.prefixText = prefixText
        self.prefixHashes = prefixHashes
        self.priority = priority
        self.endpointSelection = endpointSelection
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
    /// Whether the scores depend on the request or the cycle state, not only on the candidates.
    var readsRequest: Bool { get }
    func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double]
    /// For a scorer that gives most candidates 0: the others, by endpoint address (addresses
    /// that are not candidates are ignored). Nil: ask `score`.
    func scoresAboveZero(_ request: SchedulingRequest, _ state: CycleState) -> [(address: String, score: Double)]?
}

extension Scorer {
    public var readsRequest: Bool { true }
    public func scoresAboveZero(_ request: SchedulingRequest, _ state: CycleState) -> [(address: String, score: Double)]? { nil }
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
    /// The leading scorers that read only the candidates, summed, for the candidates last seen.
    private var candidateScores = CandidateScores()

    public init(name: String, filters: [any Filter] = [], scorers: [(scorer: any Scorer, weight: Double)], picker: any Picker) {
        self.name = name
        self.filters = filters
        self.scorers = scorers
        self.picker = picker
    }

    /// Runs the profile; nil when a filter leaves no candidate (the request then gets 429).
    /// `total = Σ weight·clamp(score, 0, 1)` in the scorers' order; weights are not
    /// normalised, as in GIE.
    public mutating func schedule(
        _ request: SchedulingRequest, _ candidates: [Candidate], state: inout CycleState, generator: inout SplitMix64
    ) -> [Int]? {
        var scored: [(index: Int, score: Double)]
        var scorersDone = 0
        var positions: [String: Int]?
        if filters.isEmpty, let kept = candidateScores.lookUp(candidates, scorers: scorers) {
            (scored, scorersDone, positions) = (kept.scored, kept.scorersDone, kept.positions)
        } else {
            var indices = Array(candidates.indices)
            for filter in filters {
                indices = filter.filter(request, candidates, indices, &state)
                if indices.isEmpty { return nil }
            }
            scored = indices.map { (index: $0, score: 0.0) }
        }
        for (scorer, weight) in scorers[scorersDone...] {
            if let positions, let sparse = scorer.scoresAboveZero(request, state) {
                // The others would add weight·0: nothing.
                for (address, score) in sparse {
                    if let position = positions[address] { scored[position].score += weight * min(1, max(0, score)) }
                }
                continue
            }
            let scores = scorer.score(request, candidates, scored.map(\.index), &state)
            for position in scored.indices { scored[position].score += weight * min(1, max(0, scores[position])) }
        }
        let picked = picker.pick(scored, candidates, &generator)
        return picked.isEmpty ? nil : picked
    }
}

/// What scoring a pool's candidates gives before it looks at the request. Between two scrapes
/// every request sees the same candidates, and scoring a thousand of them again for each
/// request was most of the picker's time; so the sum of the leading scorers that read only the
/// candidates is kept while the caller passes the same candidates — the same array storage,
/// which cannot change while this holds it. It is computed when the storage is seen a second
/// time, so a caller building new candidates for each request pays only for holding them.
struct CandidateScores: Sendable {
    private var candidates: [Candidate] = []
    private var kept: Kept?

    struct Kept: Sendable {
        var scored: [(index: Int, score: Double)]
        var scorersDone: Int
        /// Position by address, for scorers that name the few candidates they score above 0.
        var positions: [String: Int]
    }

    /// The kept scores when `candidates` are the ones last seen; nil otherwise (then remembered).
    mutating func lookUp(_ candidates: [Candidate], scorers: [(scorer: any Scorer, weight: Double)]) -> Kept? {
        guard Self.sameStorage(candidates, self.candidates) else {
            self.candidates = candidates
            kept = nil
            return nil
        }
        if let kept { return kept }
        let leading = scorers.prefix { !$0.scorer.readsRequest }
        var scored = candidates.indices.map { (index: $0, score: 0.0) }
        var unused = CycleState(now: 0)
        for (scorer, weight) in leading {
            let scores = scorer.score(SchedulingRequest(targetModel: ""), candidates, Array(candidates.indices), &unused)
            for position in scored.indices { scored[position].score += weight * min(1, max(0, scores[position])) }
        }
        var positions: [String: Int] = [:]
        positions.reserveCapacity(candidates.count)
        for (position, candidate) in candidates.enumerated() { positions[candidate.endpoint.address] = position }
        kept = Kept(scored: scored, scorersDone: leading.count, positions: positions)
        return kept
    }

    private static func sameStorage(_ lhs: [Candidate], _ rhs: [Candidate]) -> Bool {
        guard lhs.count == rhs.count, !lhs.isEmpty else { return false }
        return lhs.withUnsafeBufferPointer { lhs in rhs.withUnsafeBufferPointer { rhs in lhs.baseAddress == rhs.baseAddress } }
    }
}
