/// `prefix-cache-scorer`: matched prefix blocks / the request's blocks, from the match info the
/// prefix producer put in the cycle state; 0 for a request under one block.
public struct PrefixCacheScorer: Scorer {
    public let typeName = "prefix-cache-scorer"
    public init() {}

    public func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double] {
        let total = state.prefixHashes.count
        // No endpoint holds the first block (most requests to a large pool): all 0, with no lookups.
        guard total > 0, !state.prefixMatches.isEmpty else { return Array(repeating: 0, count: indices.count) }
        return indices.map { Double(state.prefixMatches[candidates[$0].endpoint.address] ?? 0) / Double(total) }
    }

    public func scoresAboveZero(_ request: SchedulingRequest, _ state: CycleState) -> [(address: String, score: Double)]? {
        let total = state.prefixHashes.count
        guard total > 0 else { return [] }
        return state.prefixMatches.map { (address: $0.key, score: Double($0.value) / Double(total)) }
    }
}
