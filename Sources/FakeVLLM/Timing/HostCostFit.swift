import Foundation

/// Fits vLLM V0's host CPU time per step (`HostCost`) to the published rows of the training
/// families, and only those (docs/timing-validation.md, "Calibration plan"): each candidate is
/// run through the same engine and comparison as `profiles validate`; the loss is the mean over
/// training families of each family's mean squared log error, so a family with many rows does
/// not outweigh another. Deterministic: Nelder–Mead over the logarithms of the three
/// coefficients (which keeps them positive), from a given start, for a fixed number of
/// iterations.
public struct HostCostFit {
    public let comparison: PublishedComparison
    public let csv: String

    public init(profiles: ProfileStore, csv: String) throws {
        comparison = try PublishedComparison(profiles: profiles)
        self.csv = csv
    }

    public struct Result: Sendable {
        public var host: HostCost
        public var loss: Double
        public var evaluations: Int
    }

    /// The loss of a candidate on the training rows.
    public func loss(_ host: HostCost) throws -> Double {
        var comparison = comparison
        comparison.v0Host = host
        let rows = try comparison.compare(csv: csv) { $0?.isTraining == true }
        var byFamily: [PublishedComparison.Family: [Double]] = [:]
        for row in rows {
            guard let family = row.family, let predicted = row.predicted, predicted > 0, row.published > 0 else { continue }
            let error = log(predicted / row.published)
            byFamily[family, default: []].append(error * error)
        }
        guard !byFamily.isEmpty else { return .infinity }
        return byFamily.values.map { $0.reduce(0, +) / Double($0.count) }.reduce(0, +) / Double(byFamily.count)
    }

    public func fit(from start: HostCost, iterations: Int, progress: ((Int, HostCost, Double) -> Void)? = nil) throws -> Result {
        var evaluations = 0
        func cost(_ point: [Double]) throws -> Double {
            evaluations += 1
            return try loss(Self.host(point))
        }
        let minimum = try NelderMead.minimize(Self.point(start), step: log(2), iterations: iterations, cost: cost) { iteration, best, value in
            progress?(iteration, Self.host(best), value)
        }
        return Result(host: Self.host(minimum.point), loss: minimum.value, evaluations: evaluations)
    }

    static func point(_ host: HostCost) -> [Double] { [log(host.perStepMs), log(host.perLayerUs), log(host.perSequenceUs)] }
    static func host(_ point: [Double]) -> HostCost { HostCost(perStepMs: exp(point[0]), perLayerUs: exp(point[1]), perSequenceUs: exp(point[2])) }
}

/// The downhill simplex method (Nelder and Mead, 1965) with the usual coefficients (reflection
/// 1, expansion 2, contraction ½, shrink ½): derivative-free, deterministic.
enum NelderMead {
    struct Minimum {
        var point: [Double]
        var value: Double
    }

    static func minimize(
        _ start: [Double], step: Double, iterations: Int, cost: ([Double]) throws -> Double,
        progress: ((Int, [Double], Double) -> Void)? = nil
    ) rethrows -> Minimum {
        let n = start.count
        var simplex: [(point: [Double], value: Double)] = [(start, try cost(start))]
        for axis in 0..<n {
            var point = start
            point[axis] += step
            simplex.append((point, try cost(point)))
        }
        for iteration in 0..<iterations {
            simplex.sort { $0.value < $1.value }
            progress?(iteration, simplex[0].point, simplex[0].value)
            let centroid = (0..<n).map { axis in simplex.dropLast().reduce(0) { $0 + $1.point[axis] } / Double(n) }
            func along(_ factor: Double) -> [Double] { (0..<n).map { centroid[$0] + factor * (simplex[n].point[$0] - centroid[$0]) } }
            let reflected = along(-1)
            let reflectedValue = try cost(reflected)
            if reflectedValue < simplex[0].value {
                let expanded = along(-2)
                let expandedValue = try cost(expanded)
                simplex[n] = expandedValue < reflectedValue ? (expanded, expandedValue) : (reflected, reflectedValue)
            } else if reflectedValue < simplex[n - 1].value {
                simplex[n] = (reflected, reflectedValue)
            } else {
                let outside = reflectedValue < simplex[n].value
                let contracted = along(outside ? -0.5 : 0.5)
                let contractedValue = try cost(contracted)
                if contractedValue < min(reflectedValue, simplex[n].value) {
                    simplex[n] = (contracted, contractedValue)
                } else {
                    for index in 1...n {
                        let point = (0..<n).map { simplex[0].point[$0] + 0.5 * (simplex[index].point[$0] - simplex[0].point[$0]) }
                        simplex[index] = (point, try cost(point))
                    }
                }
            }
        }
        simplex.sort { $0.value < $1.value }
        return Minimum(point: simplex[0].point, value: simplex[0].value)
    }
}
