import ArgumentParser
import FakeVLLM
import Foundation
import Load
import NIOPosix

/// What `bench` and `sim` send: rates, duration, workload, and where the report goes.
struct PlanOptions: ParsableArguments {
    @Option(help: "Models or adapters to ask for, comma-separated; requests pick one at random.") var model: String?
    @Option(help: "Weights of the models, comma-separated, in the same order (default: equal).") var weights: String?
    @Option(help: "Offered rates in requests per second, comma-separated: one stage each; or fractions of the capacity (0.8x,1.0x,1.2x), found first by stages at doubling rates until throughput stops growing.")
    var rate: String?
    @Option(help: "Seconds of arrivals per stage (each stage then drains).") var duration: Double?
    @Flag(help: "Stream the responses (server-sent events): measures TTFT and inter-token latency.") var streaming = false
    @Option(help: "sharegpt-synthetic; lpg-sharegpt (the lengths GIE's launch benchmark sent and got); azure-conv or azure-code (Azure's LLM inference traces of 2023, replayed at their own times); or a ShareGPT-format JSON file.")
    var dataset = "sharegpt-synthetic"
    @Option(help: "With a trace: multiply its times by this (0.5 sends the same requests in half the time).") var timeScale: Double?
    @Option(help: "Seed of arrivals, prompts and lengths: the same seed sends the same requests.") var seed: UInt64 = 1
    @Option(help: "Shared-prefix groups: requests fall into this many groups sharing a prompt prefix.") var prefixGroups = 0
    @Option(help: "Tokens of each group's shared prefix.") var prefixTokens = 0
    @Option(help: "Write report.json, summary.csv, summary.md and SVG charts here.") var out: String?

    func rates() throws -> CapacitySearch.Rates {
        guard let rate else { throw ValidationError("--rate is required: the offered rates, requests per second") }
        do {
            return try CapacitySearch.Rates(rate)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// With rates relative to the capacity: finds it (`measure` runs one stage of the plan at a
    /// rate), prints the search, and returns the plan at those fractions of it.
    func atCapacityFractions(_ plan: BenchPlan, measuredBy who: String, measure: (BenchPlan) async throws -> StageSummary) async throws -> BenchPlan {
        guard rate != nil, case .relative(let fractions) = try rates() else { return plan }
        let seconds = max(plan.duration, CapacitySearch.minimumStageSeconds)
        print("capacity search (\(who)): doubling the rate until throughput stops growing, \(seconds.formatted()) s stages")
        fflush(nil)
        let result = try await CapacitySearch.find { rate in
            var probe = plan
            probe.rates = [rate]
            probe.duration = seconds
            let stage = try await measure(probe)
            print("  offered \(BenchOutput.number(rate)) req/s: served \(String(format: "%.2f", stage.steadyRequestsPerSecond ?? 0)) req/s once warmed up")
            fflush(nil)
            return stage
        }
        var scaled = plan
        scaled.rates = fractions.map { $0 * result.capacity }
        print("capacity: \(String(format: "%.2f", result.capacity)) req/s; stages at \(scaled.rates.map { String(format: "%.2f", $0) }.joined(separator: ", ")) req/s")
        fflush(nil)
        return scaled
    }

    /// The traces `--dataset` names, and their files under profiles/workloads/.
    static let traces = ["azure-conv": "azure-llm-2023-conv.csv", "azure-code": "azure-llm-2023-code.csv"]

    /// The trace `--dataset` names, time-scaled, or nil for other datasets.
    func trace() throws -> RequestTrace? {
        guard let file = Self.traces[dataset] else {
            if timeScale != nil { throw ValidationError("--time-scale applies to a trace (--dataset \(Self.traces.keys.sorted().joined(separator: " or ")))") }
            return nil
        }
        if rate != nil { throw ValidationError("--rate: \(dataset) is a trace and sends at its own times; --time-scale speeds it up or slows it down") }
        let scale = timeScale ?? 1
        guard scale > 0, scale.isFinite else { throw ValidationError("--time-scale must be a positive number") }
        let url = try ProfileStore.locate().root.appendingPathComponent("workloads").appendingPathComponent(file)
        do {
            return try RequestTrace.azure(String(contentsOf: url, encoding: .utf8), name: dataset).timeScaled(by: scale)
        } catch {
            throw ValidationError("--dataset \(dataset): \(url.path): \(error)")
        }
    }

    /// The plan, with `defaultModel` when --model is not given.
    func plan(defaultModel: String?) throws -> BenchPlan {
        let trace = try trace()
        // A trace's one stage is the whole trace unless --duration cuts it.
        // (One second for a trace whose requests all arrive at once.)
        guard let duration = duration ?? trace.map({ $0.span > 0 ? $0.span.nextUp : 1 }) else { throw ValidationError("--duration is required: seconds of arrivals per stage") }
        guard duration > 0, duration.isFinite else { throw ValidationError("--duration must be a positive number of seconds") }
        guard prefixGroups >= 0, prefixTokens >= 0 else { throw ValidationError("--prefix-groups and --prefix-tokens must be ≥ 0") }
        guard let names = (model ?? defaultModel)?.split(separator: ",").map(String.init), !names.isEmpty else {
            throw ValidationError("--model is required: the model or adapters to ask for")
        }
        var models = names.map { (name: $0, weight: 1.0) }
        if let weights {
            let values = weights.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard values.count == names.count, values.allSatisfy({ $0.map { $0 >= 0 && $0.isFinite } == true }), values.contains(where: { $0! > 0 }) else {
                throw ValidationError("--weights: one non-negative number per model (\(names.count)), not all zero; got \(weights)")
            }
            for index in models.indices { models[index].weight = values[index]! }
        }
        let source: Workload.Source
        if let trace {
            source = .trace(trace)
        } else if dataset == "sharegpt-synthetic" {
            source = .synthetic(.shareGPTSynthetic)
        } else if dataset == "lpg-sharegpt" {
            source = .quantiles(name: dataset, .lpgShareGPT)
        } else {
            do {
                source = .dataset(name: URL(fileURLWithPath: dataset).lastPathComponent, pairs: try Workload.shareGPTPairs(Data(contentsOf: URL(fileURLWithPath: dataset))))
            } catch {
                throw ValidationError("--dataset \(dataset): \(error)")
            }
        }
        let workload = Workload(source: source, models: models, prefixGroups: prefixGroups, prefixTokens: prefixTokens, seed: seed)
        // A trace's stage is labelled with the rate it sends at; fractions of the capacity are
        // placeholders until the search (`atCapacityFractions`).
        let rates: [Double]
        if let trace {
            rates = [Double(trace.entries(before: duration).count) / duration]
        } else {
            switch try self.rates() {
            case .absolute(let values), .relative(let values): rates = values
            }
        }
        return BenchPlan(workload: workload, rates: rates, duration: duration, streaming: streaming)
    }

    /// Prints the table and writes the files.
    func finish(_ reports: [BenchReport]) throws { try Self.finish(reports, out: out) }

    static func finish(_ reports: [BenchReport], out: String?) throws {
        print("")
        for line in BenchOutput.table(reports) { print(line) }
        if let out {
            let directory = URL(fileURLWithPath: out)
            try BenchOutput.write(reports, to: directory)
            print("\nreport: \(directory.appendingPathComponent("summary.md").path)")
        }
    }

    /// The command line as typed, for the report.
    static var commandLine: String {
        (["understudy"] + CommandLine.arguments.dropFirst()).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }
}

/// `understudy bench`: open-loop load against a live target, stage by stage.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark a live OpenAI-compatible target (a gateway or a pod): open-loop Poisson load, one stage per rate.",
        discussion: """
            Each request is a completion of the workload's prompt with max_tokens set to its output length and \
            ignore_eos, so the output lengths are the workload's. Stages whose client fell behind its schedule, \
            or whose machine was saturated, are marked: they measured this computer, not the fleet.
            """)

    @Option(help: "Base URL of the target, e.g. http://127.0.0.1:8080.") var target: String
    @Option(help: "Seconds before the client gives up on a request.") var timeout = 300.0
    @Option(help: "Name of this run in tables and charts.") var label = "live"
    @OptionGroup var options: PlanOptions

    func run() async throws {
        guard let url = URL(string: target), url.scheme == "http", let host = url.host else {
            throw ValidationError("--target must be an http:// URL with a host, got \(target)")
        }
        let port = url.port ?? 80
        let client = LoadClient(host: host, port: port, group: MultiThreadedEventLoopGroup.singleton, timeout: .nanoseconds(Int64(timeout * 1e9)))
        defer { client.close() }
        let plan = try await options.atCapacityFractions(try options.plan(defaultModel: nil), measuredBy: target) { probe in
            await Bench.run(probe, client: client)[0]
        }
        print("understudy bench: \(target), \(plan.rates.count) stages of \(plan.duration.formatted()) s, dataset \(plan.workload.datasetName)\(plan.streaming ? ", streaming" : "")")
        fflush(nil)
        let bar = ProgressBar(stages: plan.rates.count)
        let stages = await Bench.run(plan, client: client) { progress in
            bar.show(stage: progress.stage, rate: progress.rate, done: Double(progress.finished) / Double(max(progress.expected, 1)),
                     detail: "sent \(progress.sent)/\(progress.expected), in flight \(progress.sent - progress.finished), failed \(progress.failed)",
                     final: progress.finished == progress.expected && progress.sent == progress.expected)
        }
        let report = BenchReport(
            tool: "understudy bench", label: label, target: target, models: plan.workload.models.map(\.name), dataset: plan.workload.datasetName,
            seed: plan.workload.seed, streaming: plan.streaming, command: PlanOptions.commandLine, stages: stages)
        try options.finish([report])
    }
}

/// A one-line progress bar on standard error, redrawn in place on a terminal; elsewhere a line
/// when each stage ends.
final class ProgressBar: @unchecked Sendable {
    private let stages: Int
    private let lock = NSLock()
    private let interactive = isatty(STDERR_FILENO) != 0
    private var finishedStages: Set<Int> = []

    init(stages: Int) { self.stages = stages }

    func show(stage: Int, rate: Double, done: Double, detail: String, final: Bool) {
        lock.withLock {
            guard !finishedStages.contains(stage) else { return }
            let width = 24
            let filled = min(width, Int((done * Double(width)).rounded(.down)))
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            let line = String(format: "stage %d/%d  %@ req/s  %@ %3.0f%%  %@", stage + 1, stages, BenchOutput.number(rate), bar, done * 100, detail)
            if interactive {
                FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (final ? "\n" : "")).utf8))
            } else if final {
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            if final { finishedStages.insert(stage) }
        }
    }
}
