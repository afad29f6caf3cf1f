/// Percentiles of a sample, by the nearest-rank method on the sorted values.
public struct Percentiles: Sendable, Equatable {
    public let count: Int
    private let sorted: [Double]

    public init(_ values: some Sequence<Double>) {
        // Sorted as a concrete [Double]: `values.sorted()` on the generic sequence ran the
        // unspecialised sort, a witness call per comparison (a scenario report of a million
        // requests spent seconds in it).
        var values = Array(values)
        values.sort()
        sorted = values
        count = values.count
    }

    /// The p-th percentile (0…100); nil for an empty sample.
    public func value(at p: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    public var median: Double? { value(at: 50) }
    public var mean: Double? { sorted.isEmpty ? nil : sorted.reduce(0, +) / Double(sorted.count) }
}
