import InferenceAPI

/// `max-score-picker`: shuffle, then stable-sort by score, so ties break at random; returns the
/// top `maxNumOfEndpoints` (the first is the target, the rest fallbacks).
public struct MaxScorePicker: Picker {
    public let typeName = "max-score-picker"
    public var maxNumOfEndpoints: Int

    public init(maxNumOfEndpoints: Int = 1) { self.maxNumOfEndpoints = maxNumOfEndpoints }

    public func pick(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ generator: inout SplitMix64) -> [Int] {
        var shuffled = scored
        shuffled.shuffle(using: &generator)
        if maxNumOfEndpoints == 1 {
            // The same pick as the sort below, without sorting: the first top score in shuffled order.
            var best: (index: Int, score: Double)?
            for entry in shuffled where best == nil || entry.score > best!.score { best = entry }
            return best.map { [$0.index] } ?? []
        }
        let ranked = shuffled.enumerated().sorted { lhs, rhs in
            lhs.element.score != rhs.element.score ? lhs.element.score > rhs.element.score : lhs.offset < rhs.offset
        }
        return ranked.prefix(maxNumOfEndpoints).map(\.element.index)
    }
}
