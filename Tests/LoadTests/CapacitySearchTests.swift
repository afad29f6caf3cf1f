@testable import Load
import Testing

/// `--rate 0.8x,1.2x`: rates as fractions of a capacity found by doubling until throughput
/// stops growing.
struct CapacitySearchTests {
    /// A stage as a target serving at most `capacity` requests per second would measure it:
    /// below capacity, what was offered less the tail after the last send; above, the capacity.
    static func stage(offered: Double, capacity: Double) -> StageSummary {
        var statistics = StageStatistics(rate: offered, duration: 10, start: 0)
        let served = min(offered, capacity) * 0.9
        let count = Int(served * 10)
        for index in 0..<count {
            let time = Double(index) / served
            statistics.add(RequestRecord(
                stream: "s", scheduled: time, sent: time, head: time + 0.5, firstToken: nil, finished: time + 0.5, outcome: .ok, servedBy: nil,
                attempts: 1, outputTokens: 10))
        }
        return statistics.summary()
    }

    @Test func theCapacityIsWhereDoublingTheRateStopsRaisingThroughput() async throws {
        var offered: [Double] = []
        let result = try await CapacitySearch.find { rate in
            offered.append(rate)
            return Self.stage(offered: rate, capacity: 50)
        }
        // 1, 2, …, 32 grow; 64 serves 45 (the plateau, 0.9 of 50 here), 128 no more: stop.
        #expect(offered == [1, 2, 4, 8, 16, 32, 64, 128])
        #expect(abs(result.capacity - result.probes.map(\.served).max()!) < 1e-9)
        #expect(result.capacity > 40 && result.capacity < 50, "\(result.capacity)")
    }

    @Test func aTargetThatKeepsUpWithEveryRateHasNoCapacityToFind() async throws {
        await #expect(throws: CapacitySearch.NoPlateau.self) {
            _ = try await CapacitySearch.find(maxProbes: 5) { rate in Self.stage(offered: rate, capacity: .infinity) }
        }
    }

    @Test func aTargetThatServesNothingStopsTheSearchAtOnce() async throws {
        var probes = 0
        await #expect(throws: CapacitySearch.NoPlateau.self) {
            _ = try await CapacitySearch.find { rate in
                probes += 1
                return StageStatistics(rate: rate, duration: 10, start: 0).summary()
            }
        }
        #expect(probes == 2)
    }

    @Test func ratesAreRequestsPerSecondOrAllFractionsOfTheCapacity() throws {
        #expect(try CapacitySearch.Rates("100, 200") == .absolute([100, 200]))
        #expect(try CapacitySearch.Rates("0.6x,1x,1.3x") == .relative([0.6, 1, 1.3]))
        for bad in ["0.6x,200", "", "x", "-1", "0x", "nan", "1,,2"] {
            #expect(throws: WorkloadError.self, "\(bad)") { try CapacitySearch.Rates(bad) }
        }
    }
}
