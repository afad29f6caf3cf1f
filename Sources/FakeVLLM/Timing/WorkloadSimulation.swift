import InferenceAPI
import Foundation

/// One engine driven in virtual time by a list of arrivals: what `benchmark_serving.py` would
/// measure against a vLLM server with this accelerator and model. Used to check the cost model
/// against published serving numbers (docs/timing-validation.md).
public struct WorkloadSimulation {
    /// One request of the workload: when it arrives and its lengths.
    public struct Arrival: Sendable, Equatable {
        public var time: Double
        public var inputTokens: Int
        public var outputTokens: Int

        public init(time: Double, inputTokens: Int, outputTokens: Int) {
            self.time = time
            self.inputTokens = inputTokens
            self.outputTokens = outputTokens
        }
    }

    /// Means as `benchmark_serving.py` reports them, in seconds.
    public struct Result: Sendable, Equatable {
        public var requests: Int
        public var duration: Double
        public var meanTTFT: Double
        /// Per request (e2e − TTFT) / (output − 1), averaged over requests.
        public var meanTPOT: Double
        /// Averaged over every gap between consecutive tokens of all requests.
        public var meanITL: Double
        public var meanE2E: Double
        public var requestsPerSecond: Double { Double(requests) / duration }
        public var outputTokensPerSecond: Double
        /// Recompute preemptions the engine made.
        public var preemptions: Int
    }

    /// Runs every arrival (open loop) to completion and returns the means.
    public static func run(engineConfig: EngineConfig, costModel: CostModel, arrivals: [Arrival]) -> Result {
        simulate(engineConfig: engineConfig, costModel: costModel, initial: arrivals.sorted { $0.time < $1.time }) { _ in nil }
    }

    /// Closed loop, as a benchmark with a fixed concurrency: `concurrency` clients each send the
    /// next request (in order) when their previous one finishes. Arrival times are ignored.
    public static func runClosedLoop(engineConfig: EngineConfig, costModel: CostModel, requests: [Arrival], concurrency: Int) -> Result {
        let first = requests.prefix(concurrency).map { Arrival(time: 0, inputTokens: $0.inputTokens, outputTokens: $0.outputTokens) }
        var next = first.count
        return simulate(engineConfig: engineConfig, costModel: costModel, initial: first) { finishTime in
            guard next < requests.count else { return nil }
            defer { next += 1 }
            return Arrival(time: finishTime, inputTokens: requests[next].inputTokens, outputTokens: requests[next].outputTokens)
        }
    }

    /// The event loop: admit arrivals due, step, record tokens; `onFinish` may add an arrival.
    private static func simulate(
        engineConfig: EngineConfig, costModel: CostModel, initial: [Arrival], onFinish: (Double) -> Arrival?
    ) -> Result {
        var engine = Engine(config: engineConfig, costModel: costModel)
        var arrivals = initial
        var next = 0
        var now = 0.0
        var firstToken: [Double] = []
        var finish: [Double] = []
        var itlSum = 0.0, itlCount = 0, outputTokens = 0, preemptions = 0
        var unanswered: Set<Int> = []
        while next < arrivals.count || engine.hasWork {
            while next < arrivals.count, arrivals[next].time <= now {
                let arrival = arrivals[next]
                // Distinct prompts: these benchmarks share no prefixes worth caching.
                let prompt = (0..<arrival.inputTokens).map { 1000 + (next * 7919 + $0 * 104_729) % 30_000 }
                engine.add(EngineRequest(
                    id: RequestID(next), promptTokens: prompt, plannedOutput: Array(repeating: 0, count: max(1, arrival.outputTokens)),
                    finishReason: .length, arrival: arrival.time))
                firstToken.append(0)
                finish.append(0)
                next += 1
            }
            guard let outcome = engine.step(now: now) else {
                now = arrivals[next].time
                continue
            }
            now = outcome.end
            preemptions += outcome.preemptions
            for progress in outcome.progress where !progress.newTokens.isEmpty || progress.finishReason != nil {
                let index = Int(progress.id)
                guard !progress.newTokens.isEmpty else {
                    // Finished with no token (V0 gave up on a prompt that can never fit): no
                    // latency to count; a closed-loop client sends its next request.
                    unanswered.insert(index)
                    if let more = onFinish(outcome.end) { arrivals.append(more) }
                    continue
                }
                outputTokens += 1
                if let previous = progress.previousTokenTime {
                    itlSum += outcome.end - previous
                    itlCount += 1
                } else {
                    firstToken[index] = outcome.end
                }
                if progress.finishReason != nil {
                    finish[index] = outcome.end
                    if let more = onFinish(outcome.end) { arrivals.append(more) }
                }
            }
        }
        var ttftSum = 0.0, tpotSum = 0.0, e2eSum = 0.0
        for (index, arrival) in arrivals.enumerated() where !unanswered.contains(index) {
            ttftSum += firstToken[index] - arrival.time
            e2eSum += finish[index] - arrival.time
            if arrival.outputTokens > 1 { tpotSum += (finish[index] - firstToken[index]) / Double(arrival.outputTokens - 1) }
        }
        let count = Double(max(arrivals.count - unanswered.count, 1))
        let start = arrivals.first?.time ?? 0
        return Result(
            requests: arrivals.count, duration: now - start, meanTTFT: ttftSum / count, meanTPOT: tpotSum / count,
            meanITL: itlCount > 0 ? itlSum / Double(itlCount) : 0, meanE2E: e2eSum / count,
            outputTokensPerSecond: Double(outputTokens) / max(now - start, 1e-9), preemptions: preemptions)
    }

    /// A ShareGPT-like workload: log-normal input and output lengths with the given means
    /// (σ = 1, an assumption; clipped as benchmark_serving.py filters ShareGPT: input 4…1024,
    /// input + output ≤ 2048), and Poisson arrivals at `rate` per second (all at once when nil).
    public static func shareGPTLike(
        count: Int, rate: Double?, meanInput: Double = 202, meanOutput: Double = 179, seed: UInt64 = 0
    ) -> [Arrival] {
        var generator = SplitMix64(seed: seed)
        var time = 0.0
        var arrivals: [Arrival] = []
        arrivals.reserveCapacity(count)
        for _ in 0..<count {
            if let rate {
                time += -Foundation.log(generator.nextUnit()) / rate
            }
            let input = min(1024, max(4, Int(generator.nextLogNormal(median: meanInput / Foundation.exp(0.5), sigma: 1).rounded())))
            let output = min(2048 - input, max(4, Int(generator.nextLogNormal(median: meanOutput / Foundation.exp(0.5), sigma: 1).rounded())))
            arrivals.append(Arrival(time: time, inputTokens: input, outputTokens: output))
        }
        return arrivals
    }
}
