/// `running-requests-size-scorer`: the queue scorer's min–max form over running requests.
public struct RunningRequestsSizeScorer: Scorer {
    public let typeName = "running-requests-size-scorer"
    public var readsRequest: Bool { false }
    public init() {}

    public func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double] {
        minMaxScores(candidates, indices) { $0.runningRequestsSize }
    }
}
