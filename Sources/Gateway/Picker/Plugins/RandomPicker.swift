import InferenceAPI

/// `random-picker`: uniform over the candidates, scores ignored.
public struct RandomPicker: Picker {
    public let typeName = "random-picker"
    public var maxNumOfEndpoints: Int

    public init(maxNumOfEndpoints: Int = 1) { self.maxNumOfEndpoints = maxNumOfEndpoints }

    public func pick(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ generator: inout SplitMix64) -> [Int] {
        Array(scored.map(\.index).shuffled(using: &generator).prefix(maxNumOfEndpoints))
    }
}
