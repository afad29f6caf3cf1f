/// `kv-cache-utilization-scorer`: `1 − KV cache usage`.
public struct KVCacheUtilizationScorer: Scorer {
    public let typeName = "kv-cache-utilization-scorer"
    public var readsRequest: Bool { false }
    public init() {}

    public func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double] {
        indices.map { index in candidates[index].metrics.map { 1 - $0.kvCacheUsage } ?? 0 }
    }
}
