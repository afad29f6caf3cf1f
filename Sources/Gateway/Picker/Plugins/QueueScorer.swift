/// `queue-scorer`: `(maxQ − q) / (maxQ − minQ)` over the candidates' waiting queues; all 1 when
/// every queue is the same length. Candidates without metrics count as the longest queue.
public struct QueueScorer: Scorer {
    public let typeName = "queue-scorer"
    public var readsRequest: Bool { false }
    public init() {}

    public func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double] {
        minMaxScores(candidates, indices) { $0.waitingQueueSize }
    }
}

/// `(max − x) / (max − min)` of a gauge, by candidate, with missing metrics scored 0, all 1 when
/// max == min. Two passes over the candidates and no array but the result: the picker runs this
/// for every request over every endpoint of the pool.
@inline(__always)
func minMaxScores(_ candidates: [Candidate], _ indices: [Int], _ gauge: (EndpointMetrics) -> Int) -> [Double] {
    var low = Int.max, high = Int.min
    for index in indices {
        guard let value = candidates[index].metrics.map(gauge) else { continue }
        low = min(low, value)
        high = max(high, value)
    }
    guard low <= high else { return Array(repeating: 0, count: indices.count) }
    let range = Double(high - low)
    return indices.map { index in
        guard let value = candidates[index].metrics.map(gauge) else { return 0 }
        return high == low ? 1 : Double(high - value) / range
    }
}
