import Foundation

/// A small, fast, seedable generator (splitmix64), so outputs and workloads repeat exactly
/// for a seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return mix(state)
    }

    /// A uniform double in (0, 1].
    mutating func nextUnit() -> Double {
        Double(next() >> 11 | 1) / Double(1 << 53)
    }

    /// A log-normal draw with this median (Box–Muller for the normal).
    mutating func nextLogNormal(median: Double, sigma: Double) -> Double {
        let normal = (-2 * Foundation.log(nextUnit())).squareRoot() * Foundation.cos(2 * Double.pi * nextUnit())
        return median * Foundation.exp(sigma * normal)
    }
}
