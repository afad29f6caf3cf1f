import Foundation

/// A small, fast, seedable generator (splitmix64), so outputs, workloads and picks repeat
/// exactly for a seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        // The finaliser adds the increment once more; kept so existing seeds give the same outputs.
        var z = state &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in (0, 1].
    public mutating func nextUnit() -> Double {
        Double(next() >> 11 | 1) / Double(1 << 53)
    }

    /// A log-normal draw with this median (Box–Muller for the normal).
    public mutating func nextLogNormal(median: Double, sigma: Double) -> Double {
        let normal = (-2 * Foundation.log(nextUnit())).squareRoot() * Foundation.cos(2 * Double.pi * nextUnit())
        return median * Foundation.exp(sigma * normal)
    }
}
