import Foundation
import InferenceAPI

/// A stream of requests arriving as a Poisson process: exponential gaps at `rate` per second,
/// independent of how fast they are answered (open loop, as traffic from many users is).
public struct LoadStream: Sendable {
    public var name: String
    public var rate: Double
    /// The `index`-th request of the stream.
    public var request: @Sendable (_ index: Int) -> LoadRequest

    public init(name: String, rate: Double, request: @escaping @Sendable (_ index: Int) -> LoadRequest) {
        self.name = name
        self.rate = rate
        self.request = request
    }

    /// Times of a Poisson process at `rate` per second within [start, end), seeded.
    public static func poissonArrivals(rate: Double, from start: Double, to end: Double, seed: UInt64) -> [Double] {
        guard rate > 0 else { return [] }
        var random = SplitMix64(seed: seed)
        var times: [Double] = []
        times.reserveCapacity(Int(rate * (end - start) * 1.1) + 16)
        var time = start
        while true {
            // 1 − U lies in (0, 1]: the logarithm is finite.
            time += -log(1 - random.nextUnit()) / rate
            guard time < end else { return times }
            times.append(time)
        }
    }
}

/// Runs streams open loop against a client: requests leave on their schedule, independent of
/// how fast they are answered.
public enum OpenLoop {
    /// Every stream's Poisson arrivals within [start, start + duration), merged in time order:
    /// when each request is sent, of which stream, and its index there. Seeded: the live run
    /// and the simulator send the same schedule.
    public static func schedule(rates: [Double], from start: Double, duration: Double, seed: UInt64) -> [(time: Double, stream: Int, index: Int)] {
        var arrivals: [(time: Double, stream: Int, index: Int)] = []
        for (number, rate) in rates.enumerated() {
            let times = LoadStream.poissonArrivals(rate: rate, from: start, to: start + duration, seed: seed &+ UInt64(number) &* 0x9E37_79B9_7F4A_7C15)
            arrivals += times.enumerated().map { (time: $0.element, stream: number, index: $0.offset) }
        }
        arrivals.sort { $0.time < $1.time }
        return arrivals
    }

    /// Sends each of `arrivals` (times on the client's clock, in order; `stream` indexes
    /// `streams`) when its time comes, whatever the answers before it, and returns every
    /// request's record once the last has ended.
    public static func run(
        _ streams: [LoadStream], arrivals: [(time: Double, stream: Int, index: Int)], client: LoadClient,
        onRecord: (@Sendable (RequestRecord) -> Void)? = nil
    ) async -> [RequestRecord] {
        await withTaskGroup(of: RequestRecord.self) { group in
            for arrival in arrivals {
                let wait = arrival.time - client.now()
                // Cancelled only with the run: the remaining arrivals go at once and end with it.
                if wait > 0 { try? await Task.sleep(for: .nanoseconds(Int64(wait * 1e9))) }
                let request = streams[arrival.stream].request(arrival.index)
                group.addTask {
                    let record = await client.send(request, scheduled: arrival.time)
                    onRecord?(record)
                    return record
                }
            }
            var records: [RequestRecord] = []
            records.reserveCapacity(arrivals.count)
            for await record in group { records.append(record) }
            return records.sorted { $0.scheduled < $1.scheduled }
        }
    }
}
