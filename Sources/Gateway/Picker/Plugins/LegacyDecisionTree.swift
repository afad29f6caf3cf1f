import InferenceAPI

/// `decision-tree-filter`: GIE's original scheduler (v0.1–v0.3, a plugin tree in v0.5.1), with
/// its thresholds (`QUEUING_THRESHOLD_LORA` 128, `LORA_AFFINITY_THRESHOLD` 0.999,
/// `QUEUE_THRESHOLD_CRITICAL` 5, `KV_CACHE_THRESHOLD` 0.8):
///
///     not sheddable ─► some queue < 128? ─yes─► LoRA affinity → least queue → least KV
///                                          └no──► least queue → LoRA affinity → least KV
///     sheddable ─────► some pod with queue ≤ 5 and KV ≤ 0.8?
///                        ├yes─► least queue → LoRA affinity → least KV
///                        └no──► none (the request is dropped: 429)
///
/// Pair it with `random-picker`, as GIE did. "Sheddable" is a negative priority (v0.3 said
/// not Critical; GIE v1 made sheddable mean priority < 0).
public struct LegacyDecisionTree: Filter {
    public let typeName = "decision-tree-filter"
    public var queueingThresholdLoRA: Int
    public var loraAffinityThreshold: Double
    public var queueThresholdCritical: Int
    public var kvCacheThreshold: Double

    public init(queueingThresholdLoRA: Int = 128, loraAffinityThreshold: Double = 0.999, queueThresholdCritical: Int = 5, kvCacheThreshold: Double = 0.8) {
        self.queueingThresholdLoRA = queueingThresholdLoRA
        self.loraAffinityThreshold = loraAffinityThreshold
        self.queueThresholdCritical = queueThresholdCritical
        self.kvCacheThreshold = kvCacheThreshold
    }

    public func filter(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Int] {
        let scraped = indices.filter { candidates[$0].metrics != nil }
        func metrics(_ index: Int) -> EndpointMetrics { candidates[index].metrics! }
        if request.priority >= 0 {
            let lowQueue = scraped.filter { metrics($0).waitingQueueSize < queueingThresholdLoRA }
            if !lowQueue.isEmpty {
                return leastKV(leastQueue(loraAffinity(lowQueue, request, candidates, &state.random), candidates), candidates)
            }
            return leastKV(loraAffinity(leastQueue(scraped, candidates), request, candidates, &state.random), candidates)
        }
        let roomy = scraped.filter { metrics($0).waitingQueueSize <= queueThresholdCritical && metrics($0).kvCacheUsage <= kvCacheThreshold }
        guard !roomy.isEmpty else { return [] }
        return leastKV(loraAffinity(leastQueue(roomy, candidates), request, candidates, &state.random), candidates)
    }

    /// Keeps values within the lowest 1/N of the range: `[min, min + (max − min)/N]`.
    private func lowestBand(_ indices: [Int], _ value: (Int) -> Double) -> [Int] {
        guard let low = indices.map(value).min(), let high = indices.map(value).max() else { return indices }
        let limit = low + (high - low) / Double(indices.count)
        return indices.filter { value($0) <= limit }
    }

    private func leastQueue(_ indices: [Int], _ candidates: [Candidate]) -> [Int] {
        lowestBand(indices) { Double(candidates[$0].metrics!.waitingQueueSize) }
    }

    private func leastKV(_ indices: [Int], _ candidates: [Candidate]) -> [Int] {
        lowestBand(indices) { candidates[$0].metrics!.kvCacheUsage }
    }

    /// Pods running the adapter, with probability `loraAffinityThreshold`, else pods with a free
    /// adapter slot; whichever group is not empty when the other is.
    private func loraAffinity(_ indices: [Int], _ request: SchedulingRequest, _ candidates: [Candidate], _ random: inout SplitMix64) -> [Int] {
        let affine = indices.filter { candidates[$0].metrics!.activeAdapters.contains(request.targetModel) }
        let available = indices.filter { candidates[$0].metrics!.activeAdapters.count < candidates[$0].metrics!.maxActiveAdapters }
        if affine.isEmpty { return available.isEmpty ? indices : available }
        if available.isEmpty { return affine }
        return random.nextUnit() <= loraAffinityThreshold ? affine : available
    }
}
