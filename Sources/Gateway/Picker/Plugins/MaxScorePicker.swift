import InferenceAPI

/// `max-score-picker`: shuffle, then stable-sort by score, so ties break at random; returns the
/// top `maxNumOfEndpoints` (the first is the target, the rest fallbacks).
public struct MaxScorePicker: Picker {
    public let typeName = "max-score-picker"
    public var maxNumOfEndpoints: Int

    public init(maxNumOfEndpoints: Int = 1) { self.maxNumOfEndpoints = maxNumOfEndpoints }

    public func pick(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ generator: inout SplitMix64) -> [Int] {
        if maxNumOfEndpoints == 1 {
            // What shuffling then taking the first top score picks — any of the tied top scores,
            // each as likely — with one draw instead of a shuffle of the whole pool.
            // The top score and how many share it, in one pass over the pool.
            guard var top = scored.first?.score else { return [] }
            var ties = 0
            for entry in scored {
                if entry.score > top {
                    (top, ties) = (entry.score, 1)
                } else if entry.score == top {
                    ties += 1
                }
            }
            var chosen = Int.random(in: 0..<ties, using: &generator)
            for entry in scored where entry.score == top {
                if chosen == 0 { return [entry.index] }
                chosen -= 1
            }
        }
        var shuffled = scored
        shuffled.shuffle(using: &generator)
        let ranked = shuffled.enumerated().sorted { lhs, rhs in
            lhs.element.score != rhs.element.score ? lhs.element.score > rhs.element.score : lhs.offset < rhs.offset
        }
        return ranked.prefix(maxNumOfEndpoints).map(\.element.index)
    }
}
