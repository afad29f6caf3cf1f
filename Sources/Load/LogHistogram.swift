import Foundation

/// Counts of positive values in buckets 1 % wide (relative), from 1 µs to about 3 hours:
/// percentiles of millions of inter-token gaps without keeping them. A percentile is its
/// bucket's geometric middle, within 0.5 % of the exact value.
public struct LogHistogram: Sendable, Equatable {
    static let smallest = 1e-6
    static let growth = 1.01
    static let bucketCount = 2400
    private static let logGrowth = Foundation.log(growth)

    private var counts = [Int](repeating: 0, count: LogHistogram.bucketCount)
    public private(set) var count = 0
    public private(set) var sum = 0.0

    public init() {}

    public mutating func add(_ value: Double) {
        count += 1
        sum += value
        counts[Self.bucket(of: value)] += 1
    }

    public mutating func merge(_ other: LogHistogram) {
        count += other.count
        sum += other.sum
        for index in counts.indices { counts[index] += other.counts[index] }
    }

    static func bucket(of value: Double) -> Int {
        guard value > smallest else { return 0 }
        return min(bucketCount - 1, Int(Foundation.log(value / smallest) / logGrowth) + 1)
    }

    public var mean: Double? { count > 0 ? sum / Double(count) : nil }

    /// The p-th percentile (0…100) by nearest rank; nil when empty.
    public func value(at p: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = min(max(Int((p / 100 * Double(count)).rounded(.up)), 1), count)
        var seen = 0
        for (index, bucketCount) in counts.enumerated() where bucketCount > 0 {
            seen += bucketCount
            if seen >= rank {
                guard index > 0 else { return Self.smallest }
                // Bucket i holds [smallest·g^(i−1), smallest·g^i).
                return Self.smallest * Foundation.pow(Self.growth, Double(index) - 0.5)
            }
        }
        return nil
    }
}
