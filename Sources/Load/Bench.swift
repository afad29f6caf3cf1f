import Foundation
import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore

/// A benchmark plan: stages of open-loop Poisson load, one per rate, each `duration` seconds
/// and then drained, sending workload items as OpenAI completions (or one stage replaying a
/// trace: its requests at its times, for `duration` seconds). The live bench and the
/// simulator both follow it, so they send the same requests at the same moments.
public struct BenchPlan: Sendable {
    public var workload: Workload
    public var rates: [Double]
    public var duration: Double
    public var streaming: Bool

    public init(workload: Workload, rates: [Double], duration: Double, streaming: Bool) {
        self.workload = workload
        self.rates = rates
        self.duration = duration
        self.streaming = streaming
    }

    /// Stage `stage`'s arrival times, seconds from the stage's start: Poisson at the stage's
    /// rate, or a trace's own times.
    public func arrivals(stage: Int) -> [Double] {
        if case .trace(let trace) = workload.source { return trace.entries(before: duration).map(\.time) }
        return LoadStream.poissonArrivals(rate: rates[stage], from: 0, to: duration, seed: arrivalSeed(stage))
    }

    func arrivalSeed(_ stage: Int) -> UInt64 { workload.seed &+ UInt64(stage) &* 0x9E37_79B9_7F4A_7C15 }

    /// The workload item of a stage's `index`-th request: stages never repeat a prompt.
    public func item(stage: Int, index: Int) -> WorkloadItem {
        // A trace's stages replay the same requests at the same times.
        if case .trace = workload.source { return workload.item(index) }
        return workload.item(stage * 10_000_000 + index)
    }

    /// The HTTP request for an item: a completion of exactly `outputTokens` tokens
    /// (`ignore_eos`, so the workload's output lengths are the ones generated).
    public func request(_ item: WorkloadItem, stage: Int) -> LoadRequest {
        var body: JSONObject = [
            "model": .string(item.model), "prompt": .string(item.prompt), "max_tokens": .integer(item.outputTokens), "ignore_eos": .bool(true),
        ]
        if streaming {
            body["stream"] = .bool(true)
            body["stream_options"] = .object(["include_usage": .bool(true)])
        }
        var buffer = ByteBuffer()
        buffer.writeJSON(.object(body))
        return LoadRequest(stream: "stage \(stage)", body: buffer, streaming: streaming)
    }
}

/// `understudy bench`: runs a plan against a live target and summarises each stage.
public enum Bench {
    /// What a running stage has done so far, for a progress bar.
    public struct Progress: Sendable {
        public var stage: Int
        public var rate: Double
        public var expected: Int
        public var sent = 0
        public var finished = 0
        public var failed = 0
    }

    public static func run(
        _ plan: BenchPlan, client: LoadClient, progress: (@Sendable (Progress) -> Void)? = nil
    ) async -> [StageSummary] {
        var summaries: [StageSummary] = []
        for stage in plan.rates.indices {
            let arrivals = plan.arrivals(stage: stage)
            let state = NIOLockedValueBox(Progress(stage: stage, rate: plan.rates[stage], expected: arrivals.count))
            let start = client.now()
            let machine = MachineLoad.sample()
            // Report progress a few times a second while the stage runs.
            let reporter = Task {
                while !Task.isCancelled {
                    progress?(state.withLockedValue { $0 })
                    // Cancelled when the stage ends: the loop condition stops the reports.
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
            let stream = LoadStream(name: "stage \(stage)", rate: plan.rates[stage]) { index in
                state.withLockedValue { $0.sent += 1 }
                return plan.request(plan.item(stage: stage, index: index), stage: stage)
            }
            // The plan's schedule, as the simulator sends it, on the client's clock.
            let schedule = arrivals.enumerated().map { (time: start + $0.element, stream: 0, index: $0.offset) }
            let records = await OpenLoop.run([stream], arrivals: schedule, client: client) { record in
                state.withLockedValue {
                    $0.finished += 1
                    if !record.outcome.isSuccess { $0.failed += 1 }
                }
            }
            reporter.cancel()
            progress?(state.withLockedValue { $0 })
            var statistics = StageStatistics(rate: plan.rates[stage], duration: plan.duration, start: start)
            for record in records { statistics.add(record) }
            summaries.append(statistics.summary(machineBusy: machine.flatMap { MachineLoad.sample()?.busy(since: $0) }))
        }
        return summaries
    }
}

/// The machine's CPU counters (Linux `/proc/stat`), to tell a busy laptop from a busy fleet.
public struct MachineLoad: Sendable {
    var busy: UInt64
    var total: UInt64

    /// Now; nil where `/proc/stat` does not exist.
    public static func sample() -> MachineLoad? {
        // Not Linux: no reading, and the summary leaves machine load out.
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard fields.count >= 5 else { return nil }
        // user nice system idle iowait irq softirq steal: idle and iowait are the idle time.
        let total = fields.prefix(8).reduce(0, +)
        return MachineLoad(busy: total - fields[3] - fields[4], total: total)
    }

    /// Share of all cores busy between an earlier sample and this one.
    public func busy(since earlier: MachineLoad) -> Double? {
        guard total > earlier.total else { return nil }
        return Double(busy - earlier.busy) / Double(total - earlier.total)
    }
}
