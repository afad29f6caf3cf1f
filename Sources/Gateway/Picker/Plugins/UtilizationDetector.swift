/// `utilization-detector` (GIE v1.5.0's default saturation detector, also a filter).
/// Per endpoint `max(queue / queueDepthThreshold, kv / kvCacheUtilThreshold)`, 1 for stale or
/// missing metrics; the pool's saturation is their mean. As a filter it drops endpoints over
/// the thresholds (with `headroom`), returning all of them when it would drop every one.
public struct UtilizationDetector: Filter {
    public let typeName = "utilization-detector"
    public var queueDepthThreshold: Double
    public var kvCacheUtilThreshold: Double
    /// Seconds after which an endpoint's metrics no longer count as fresh.
    public var metricsStalenessThreshold: Double
    public var headroom: Double

    public init(queueDepthThreshold: Double = 5, kvCacheUtilThreshold: Double = 0.8, metricsStalenessThreshold: Double = 0.2, headroom: Double = 0) {
        self.queueDepthThreshold = queueDepthThreshold
        self.kvCacheUtilThreshold = kvCacheUtilThreshold
        self.metricsStalenessThreshold = metricsStalenessThreshold
        self.headroom = headroom
    }

    /// The endpoint's score: ≥ 1 means saturated.
    public func endpointScore(_ metrics: EndpointMetrics?, now: Double) -> Double {
        guard let metrics, now - metrics.updateTime <= metricsStalenessThreshold else { return 1 }
        return max(Double(metrics.waitingQueueSize) / queueDepthThreshold, metrics.kvCacheUsage / kvCacheUtilThreshold)
    }

    /// The pool's saturation: the mean endpoint score (1 with no endpoint).
    public func saturation(_ candidates: [Candidate], now: Double) -> Double {
        guard !candidates.isEmpty else { return 1 }
        return candidates.reduce(0) { $0 + endpointScore($1.metrics, now: now) } / Double(candidates.count)
    }

    public func filter(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Int] {
        let queueLimit = queueDepthThreshold * (1 + headroom)
        let kvLimit = min(1, kvCacheUtilThreshold * (1 + headroom))
        let kept = indices.filter { index in
            guard let metrics = candidates[index].metrics else { return false }
            return Double(metrics.waitingQueueSize) <= queueLimit && metrics.kvCacheUsage <= kvLimit
        }
        return kept.isEmpty ? indices : kept
    }
}
