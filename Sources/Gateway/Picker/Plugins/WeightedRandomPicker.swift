import Foundation
import InferenceAPI

/// `weighted-random-picker`: A-Res weighted sampling without replacement, key = U^(1/score);
/// candidates scored 0 only follow the others.
public struct WeightedRandomPicker: Picker {
    public let typeName = "weighted-random-picker"
    public var maxNumOfEndpoints: Int

    public init(maxNumOfEndpoints: Int = 1) { self.maxNumOfEndpoints = maxNumOfEndpoints }

    public func pick(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ generator: inout SplitMix64) -> [Int] {
        let keyed = scored.map { entry -> (index: Int, key: Double) in
            let u = generator.nextUnit()
            return (entry.index, entry.score > 0 ? Foundation.pow(u, 1 / entry.score) : -u)
        }
        return Array(keyed.sorted { $0.key > $1.key }.prefix(maxNumOfEndpoints).map(\.index))
    }
}
