import InferenceAPI

/// Ours, not GIE's: `round-robin-picker`, a Kubernetes Service's spread, ignoring scores and
/// metrics; the baseline GIE's benchmark compares its picker with.
public struct RoundRobinPicker: Picker {
    public let typeName = "round-robin-picker"
    private var next = 0

    public init() {}

    public mutating func pick(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ generator: inout SplitMix64) -> [Int] {
        guard !scored.isEmpty else { return [] }
        // By address order, so the rotation is stable while endpoints come and go.
        let ordered = scored.map(\.index).sorted { candidates[$0].endpoint.address < candidates[$1].endpoint.address }
        defer { next &+= 1 }
        return [ordered[next % ordered.count]]
    }
}

/// Ours, not GIE's: `least-request-picker`, Envoy's least-request balancing on the scraped
/// running + waiting counts (ties at random).
public struct LeastRequestPicker: Picker {
    public let typeName = "least-request-picker"

    public init() {}

    public func pick(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ generator: inout SplitMix64) -> [Int] {
        let load: (Int) -> Int = { index in
            candidates[index].metrics.map { $0.runningRequestsSize + $0.waitingQueueSize } ?? .max
        }
        let shuffled = scored.map(\.index).shuffled(using: &generator)
        return shuffled.min { load($0) < load($1) }.map { [$0] } ?? []
    }
}
