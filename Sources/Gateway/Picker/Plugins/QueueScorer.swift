/// `queue-scorer`: `(maxQ − q) / (maxQ − minQ)` over the candidates' waiting queues; all 1 when
/// every queue is the same length. Candidates without metrics count as the longest queue.
public struct QueueScorer: Scorer {
    public let typeName = "queue-scorer"
    public init() {}

    public func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double] {
        minMaxScores(indices.map { candidates[$0].metrics.map { Double($0.waitingQueueSize) } })
    }
}

/// `(max − x) / (max − min)` with missing values scored 0, all 1 when max == min.
func minMaxScores(_ values: [Double?]) -> [Double] {
    let known = values.compactMap { $0 }
    guard let low = known.min(), let high = known.max() else { return values.map { _ in 0 } }
    return values.map { value in
        guard let value else { return 0 }
        return high == low ? 1 : (high - value) / (high - low)
    }
}
