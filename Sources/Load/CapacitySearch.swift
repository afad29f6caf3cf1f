import Foundation

/// A target's capacity as a load benchmark finds it: the plateau of its throughput. Stages at
/// doubling rates, each measured by the requests it served per second once warmed up (those
/// finishing in the second half of its sending, `StageSummary.steadyRequestsPerSecond`), until
/// doubling the offered rate raises that by less than `plateauGain`; the capacity is the most
/// any stage served.
///
/// Below capacity a stage serves what it is offered; past it, answers leave as fast as the
/// target can serve, however much more is offered. GIE's launch benchmark shows capacity the
/// same way, as the rate its throughput stops growing at. A stage must be long beside its
/// requests' latency, or its second half is still warming up.
public enum CapacitySearch {
    /// The shortest stage the search runs: its second half must be past the warm-up, which
    /// lasts as long as requests take (seconds at ShareGPT's lengths, more in overload).
    public static let minimumStageSeconds = 60.0

    public struct Probe: Sendable, Equatable {
        public var offered: Double
        public var served: Double
    }

    public struct Result: Sendable, Equatable {
        /// Requests per second.
        public var capacity: Double
        public var probes: [Probe]
    }

    public struct NoPlateau: Error, CustomStringConvertible {
        public var probes: [Probe]
        public var description: String {
            "no plateau of throughput up to \(probes.last.map { BenchOutput.number($0.offered) } ?? "?") req/s offered: "
                + probes.map { "\(BenchOutput.number($0.offered)) → \(BenchOutput.number(($0.served * 100).rounded() / 100))" }.joined(separator: ", ")
        }
    }

    /// Doubling from `start` requests per second, at most `maxProbes` stages; `measure` runs one
    /// stage at a rate and returns its summary.
    public static func find(
        start: Double = 1, plateauGain: Double = 1.1, maxProbes: Int = 16, measure: (Double) async throws -> StageSummary
    ) async throws -> Result {
        var probes: [Probe] = []
        var rate = start
        while probes.count < maxProbes {
            let served = try await measure(rate).steadyRequestsPerSecond ?? 0
            probes.append(Probe(offered: rate, served: served))
            // Nothing served twice over: no capacity to find (a dead or refusing target).
            guard probes.count < 2 || probes.contains(where: { $0.served > 0 }) else { throw NoPlateau(probes: probes) }
            if probes.count >= 2, served < probes[probes.count - 2].served * plateauGain {
                return Result(capacity: probes.map(\.served).max()!, probes: probes)
            }
            rate *= 2
        }
        throw NoPlateau(probes: probes)
    }

    /// Rates as `--rate` gives them: requests per second (`100,200`), or fractions of the
    /// capacity a search finds first (`0.8x,1.0x,1.2x`); not both.
    public enum Rates: Sendable, Equatable {
        case absolute([Double])
        case relative([Double])

        public init(_ text: String) throws(WorkloadError) {
            let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            let relative = items.filter { $0.hasSuffix("x") }.count
            let values = items.map { Double($0.hasSuffix("x") ? String($0.dropLast()) : $0) }
            guard !items.isEmpty, values.allSatisfy({ $0.map { $0 > 0 && $0.isFinite } == true }), relative == 0 || relative == items.count else {
                throw WorkloadError("--rate: positive numbers separated by commas (requests per second), or all fractions of the capacity (0.8x,1.2x); got \(text)")
            }
            self = relative == 0 ? .absolute(values.map { $0! }) : .relative(values.map { $0! })
        }
    }
}
