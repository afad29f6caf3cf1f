import Foundation

/// Mean and percentiles of one metric over a stage's successful requests, in seconds.
public struct MetricSummary: Codable, Sendable, Equatable {
    public var count: Int
    public var mean: Double
    public var p50: Double
    public var p90: Double
    public var p99: Double

    init?(_ values: [Double]) {
        let sample = Percentiles(values)
        guard let mean = sample.mean, let p50 = sample.value(at: 50), let p90 = sample.value(at: 90), let p99 = sample.value(at: 99) else { return nil }
        self.init(count: sample.count, mean: mean, p50: p50, p90: p90, p99: p99)
    }

    init?(_ histogram: LogHistogram) {
        guard let mean = histogram.mean, let p50 = histogram.value(at: 50), let p90 = histogram.value(at: 90), let p99 = histogram.value(at: 99) else { return nil }
        self.init(count: histogram.count, mean: mean, p50: p50, p90: p90, p99: p99)
    }

    public init(count: Int, mean: Double, p50: Double, p90: Double, p99: Double) {
        self.count = count
        self.mean = mean
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
    }

    public func percentile(_ name: Percentile) -> Double {
        switch name {
        case .mean: mean
        case .p50: p50
        case .p90: p90
        case .p99: p99
        }
    }

    public enum Percentile: String, CaseIterable, Sendable { case mean, p50, p90, p99 }
}

/// What one stage (one offered rate) of a benchmark measured: the same fields whether a live
/// client or the simulator produced the records.
public struct StageSummary: Codable, Sendable, Equatable {
    /// Offered requests per second, and for how long they were offered.
    public var rate: Double
    public var duration: Double
    /// From the stage's start to its last answer: the stage's throughput is over this span.
    public var span: Double
    public var sent: Int
    public var succeeded: Int
    /// Refused with 429 (the gateway shed them).
    public var shed: Int
    /// Everything else that did not succeed, by kind ("HTTP 503", "client timeout", …).
    public var errors: [String: Int]
    /// Successful requests and their generated tokens per second.
    public var requestsPerSecond: Double
    public var outputTokensPerSecond: Double
    /// Successful requests that finished in the second half of the sending, per second: once
    /// warmed up, what the target keeps up with (what it was offered below its capacity, its
    /// capacity above). Unlike `requestsPerSecond`, not diluted by the answers after the last
    /// send, which a short stage of long requests is mostly made of. Nil in older reports.
    public var steadyRequestsPerSecond: Double?
    public var meanInputTokens: Double?
    public var meanOutputTokens: Double?
    /// Time to first token and inter-token latency (streams only), time per output token after
    /// the first (TPOT), normalised time per output token (e2e / output tokens, GIE's
    /// "per-output-token latency"), and end-to-end latency.
    public var ttft: MetricSummary?
    public var itl: MetricSummary?
    public var tpot: MetricSummary?
    public var ntpot: MetricSummary?
    public var latency: MetricSummary?
    /// Successful requests per endpoint that served them (`x-gateway-destination-endpoint-served`).
    public var served: [String: Int]
    /// Requests the client sent more than 10 ms after their Poisson arrival, and the worst delay.
    public var lateSends: Int
    public var maxLateness: Double
    /// Share of all the machine's cores busy during the stage (live runs on Linux).
    public var machineBusy: Double?
    /// Why the stage measured the machine rather than the fleet; nil when it held its schedule.
    public var unfaithful: String?

    public var failed: Int { sent - succeeded - shed }

    /// A stage is unfaithful when more than 1 % of its sends (and more than 5) were late by
    /// over 10 ms — the client could not keep the schedule —, as many requests got no answer at
    /// all — the stack on this machine stopped taking connections, which a cluster's gateway
    /// would not —, or the machine's cores were at least 90 % busy, so the emulated pods'
    /// timers ran late too.
    static let lateThreshold = 0.010
    static let shareLimit = 0.01
    static let countLimit = 5
    static let busyLimit = 0.90

    static func exceedsLimits(_ count: Int, of sent: Int) -> Bool {
        count > countLimit && Double(count) / Double(sent) > shareLimit
    }
}

/// Folds a stage's request records into its summary one at a time, keeping per-request
/// numbers but only a histogram of inter-token gaps (a long simulated stage has hundreds of
/// millions).
public struct StageStatistics: Sendable {
    public let rate: Double
    public let duration: Double
    public let start: Double
    private var lastFinish: Double
    private var sent = 0, succeeded = 0, shed = 0
    private var errors: [String: Int] = [:]
    private var outputTokens = 0
    private var inputTokenSum = 0, inputTokenCount = 0
    private var outputTokenCount = 0
    private var ttft: [Double] = [], tpot: [Double] = [], ntpot: [Double] = [], latency: [Double] = []
    private var gaps = LogHistogram()
    private var served: [String: Int] = [:]
    private var lateSends = 0
    private var maxLateness = 0.0
    private var unanswered = 0
    private var finishedInSecondHalf = 0

    public init(rate: Double, duration: Double, start: Double) {
        self.rate = rate
        self.duration = duration
        self.start = start
        lastFinish = start + duration
    }

    public mutating func add(_ record: RequestRecord) {
        sent += 1
        lastFinish = max(lastFinish, record.finished)
        if record.lateness > StageSummary.lateThreshold { lateSends += 1 }
        maxLateness = max(maxLateness, record.lateness)
        guard record.outcome.isSuccess else {
            if record.outcome.isShed {
                shed += 1
            } else {
                if case .connectionFailed = record.outcome { unanswered += 1 }
                errors[record.outcome.description, default: 0] += 1
            }
            return
        }
        succeeded += 1
        if record.finished >= start + duration / 2, record.finished <= start + duration { finishedInSecondHalf += 1 }
        if let endpoint = record.servedBy { served[endpoint, default: 0] += 1 }
        latency.append(record.latency)
        if let value = record.timeToFirstToken { ttft.append(value) }
        if let value = record.timePerOutputToken { tpot.append(value) }
        if let value = record.normalizedTimePerOutputToken { ntpot.append(value) }
        for gap in record.interTokenGaps { gaps.add(gap) }
        if let tokens = record.inputTokens {
            inputTokenSum += tokens
            inputTokenCount += 1
        }
        if let tokens = record.outputTokens {
            outputTokens += tokens
            outputTokenCount += 1
        }
    }

    /// One gap between consecutive tokens of a stream, folded in without a record (the
    /// simulator has them one at a time).
    public mutating func addInterTokenGap(_ gap: Double) { gaps.add(gap) }

    /// The summary; `machineBusy` comes from the live runner, which watched the machine.
    public func summary(machineBusy: Double? = nil) -> StageSummary {
        let span = max(lastFinish - start, 1e-9)
        var reasons: [String] = []
        if StageSummary.exceedsLimits(lateSends, of: sent) {
            reasons.append(String(format: "the client fell behind: %d of %d sends over 10 ms late (worst %.0f ms)", lateSends, sent, maxLateness * 1000))
        }
        if StageSummary.exceedsLimits(unanswered, of: sent) {
            reasons.append("\(unanswered) of \(sent) requests got no answer (the connection was refused, reset or timed out): the stack ran out of a machine resource, often open files")
        }
        if let machineBusy, machineBusy >= StageSummary.busyLimit {
            reasons.append(String(format: "the machine was %.0f %% busy", machineBusy * 100))
        }
        return StageSummary(
            rate: rate, duration: duration, span: span, sent: sent, succeeded: succeeded, shed: shed, errors: errors,
            requestsPerSecond: Double(succeeded) / span, outputTokensPerSecond: Double(outputTokens) / span,
            steadyRequestsPerSecond: Double(finishedInSecondHalf) / (duration / 2),
            meanInputTokens: inputTokenCount > 0 ? Double(inputTokenSum) / Double(inputTokenCount) : nil,
            meanOutputTokens: outputTokenCount > 0 ? Double(outputTokens) / Double(outputTokenCount) : nil,
            ttft: MetricSummary(ttft), itl: MetricSummary(gaps), tpot: MetricSummary(tpot), ntpot: MetricSummary(ntpot),
            latency: MetricSummary(latency), served: served, lateSends: lateSends, maxLateness: maxLateness, machineBusy: machineBusy,
            unfaithful: reasons.isEmpty ? nil : reasons.joined(separator: "; "))
    }
}
