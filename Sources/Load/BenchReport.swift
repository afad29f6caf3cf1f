import Foundation

/// One benchmark run (live `understudy bench` or `understudy sim`): what was sent where, and a
/// summary per stage. Several runs (a picker against round-robin, live against simulated)
/// are written side by side by `BenchOutput`.
public struct BenchReport: Codable, Sendable {
    /// `understudy bench` or `understudy sim`.
    public var tool: String
    /// The run's name in tables and chart legends (a policy, "live", "sim").
    public var label: String
    /// The URL benchmarked, or the simulated fleet file.
    public var target: String
    public var models: [String]
    public var dataset: String
    public var seed: UInt64
    public var streaming: Bool
    /// The command line that produced it, so it can be run again.
    public var command: String
    public var stages: [StageSummary]

    public init(
        tool: String, label: String, target: String, models: [String], dataset: String, seed: UInt64, streaming: Bool, command: String,
        stages: [StageSummary] = []
    ) {
        self.tool = tool
        self.label = label
        self.target = target
        self.models = models
        self.dataset = dataset
        self.seed = seed
        self.streaming = streaming
        self.command = command
        self.stages = stages
    }
}

/// The report's tables, files and charts.
public enum BenchOutput {
    /// The terminal table: one row per stage.
    public static func table(_ reports: [BenchReport]) -> [String] {
        var rows = [[
            "RUN", "RATE", "SENT", "OK", "SHED", "FAILED", "REQ/S", "OUT TOK/S", "TTFT p50/p90/p99 ms", "ITL p50/p90 ms", "NTPOT p50/p90 ms",
            "E2E p50/p90/p99 s", "NOTE",
        ]]
        for report in reports {
            for stage in report.stages {
                rows.append([
                    report.label, number(stage.rate), "\(stage.sent)", "\(stage.succeeded)", "\(stage.shed)", "\(stage.failed)",
                    String(format: "%.1f", stage.requestsPerSecond), String(format: "%.0f", stage.outputTokensPerSecond),
                    triple(stage.ttft, scale: 1000, digits: 1), pair(stage.itl, scale: 1000, digits: 1), pair(stage.ntpot, scale: 1000, digits: 1),
                    triple(stage.latency, scale: 1, digits: 2), stage.unfaithful.map { "machine-limited: \($0)" } ?? "",
                ])
            }
        }
        return TextTable.lines(rows)
    }

    public static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%g", value)
    }

    private static func triple(_ metric: MetricSummary?, scale: Double, digits: Int) -> String {
        guard let metric else { return "-" }
        return [metric.p50, metric.p90, metric.p99].map { String(format: "%.\(digits)f", $0 * scale) }.joined(separator: "/")
    }

    private static func pair(_ metric: MetricSummary?, scale: Double, digits: Int) -> String {
        guard let metric else { return "-" }
        return [metric.p50, metric.p90].map { String(format: "%.\(digits)f", $0 * scale) }.joined(separator: "/")
    }

    // MARK: Files

    /// A metric charted against rate: its lines (p50 and p90, or one value) per stage.
    public struct ChartedMetric: Sendable {
        public var file: String
        public var title: String
        public var unit: String
        /// Names of the lines drawn for each run ("" when there is one).
        public var lines: [String]
        /// The lines' values at a stage, in `unit`; nil when the stage did not measure it.
        public var values: @Sendable (StageSummary) -> [Double]?
    }

    public static let charts: [ChartedMetric] = {
        func percentiles(_ metric: @escaping @Sendable (StageSummary) -> MetricSummary?, scale: Double) -> @Sendable (StageSummary) -> [Double]? {
            { stage in metric(stage).map { [$0.p50 * scale, $0.p90 * scale] } }
        }
        return [
            ChartedMetric(file: "throughput", title: "Output tokens per second", unit: "tokens/s", lines: [""], values: { [$0.outputTokensPerSecond] }),
            ChartedMetric(file: "requests", title: "Successful requests per second", unit: "req/s", lines: [""], values: { [$0.requestsPerSecond] }),
            ChartedMetric(file: "ttft", title: "Time to first token", unit: "ms", lines: ["p50", "p90"], values: percentiles({ $0.ttft }, scale: 1000)),
            ChartedMetric(file: "itl", title: "Inter-token latency", unit: "ms", lines: ["p50", "p90"], values: percentiles({ $0.itl }, scale: 1000)),
            ChartedMetric(
                file: "ntpot", title: "Normalized time per output token", unit: "ms", lines: ["p50", "p90"], values: percentiles({ $0.ntpot }, scale: 1000)),
            ChartedMetric(file: "latency", title: "End-to-end latency", unit: "s", lines: ["p50", "p90"], values: percentiles({ $0.latency }, scale: 1)),
        ]
    }()

    /// Writes `report.json` (every run), `summary.csv` (a row per run and stage), one SVG chart
    /// per metric against rate, and `summary.md`, into `directory`.
    public static func write(_ reports: [BenchReport], to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(reports).write(to: directory.appendingPathComponent("report.json"))
        try csv(reports).write(to: directory.appendingPathComponent("summary.csv"), atomically: true, encoding: .utf8)
        var drawn: [ChartedMetric] = []
        for metric in charts {
            guard let svg = SVGChart.draw(metric, reports: reports) else { continue }
            try svg.write(to: directory.appendingPathComponent(metric.file + ".svg"), atomically: true, encoding: .utf8)
            drawn.append(metric)
        }
        try markdown(reports, charts: drawn).write(to: directory.appendingPathComponent("summary.md"), atomically: true, encoding: .utf8)
    }

    /// Reads the runs a `write` left in a directory.
    public static func read(from directory: URL) throws -> [BenchReport] {
        let data = try Data(contentsOf: directory.appendingPathComponent("report.json"))
        return try JSONDecoder().decode([BenchReport].self, from: data)
    }

    public static func csv(_ reports: [BenchReport]) -> String {
        var columns = [
            "label", "rate", "duration_s", "span_s", "sent", "succeeded", "shed", "failed", "requests_per_s", "output_tokens_per_s",
            "mean_input_tokens", "mean_output_tokens",
        ]
        let metrics = ["ttft", "itl", "tpot", "ntpot", "latency"]
        for metric in metrics { columns += ["mean", "p50", "p90", "p99"].map { "\(metric)_\($0)_s" } }
        columns += ["late_sends", "max_lateness_s", "machine_busy", "unfaithful", "errors"]
        var lines = [columns.joined(separator: ",")]
        for report in reports {
            for stage in report.stages {
                var row = [
                    quoted(report.label), "\(stage.rate)", "\(stage.duration)", "\(stage.span)", "\(stage.sent)", "\(stage.succeeded)",
                    "\(stage.shed)", "\(stage.failed)", "\(stage.requestsPerSecond)", "\(stage.outputTokensPerSecond)",
                    stage.meanInputTokens.map { "\($0)" } ?? "", stage.meanOutputTokens.map { "\($0)" } ?? "",
                ]
                for metric in [stage.ttft, stage.itl, stage.tpot, stage.ntpot, stage.latency] {
                    row += MetricSummary.Percentile.allCases.map { percentile in metric.map { "\($0.percentile(percentile))" } ?? "" }
                }
                let errors = stage.errors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
                row += [
                    "\(stage.lateSends)", "\(stage.maxLateness)", stage.machineBusy.map { "\($0)" } ?? "", quoted(stage.unfaithful ?? ""),
                    quoted(errors),
                ]
                lines.append(row.joined(separator: ","))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func quoted(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    public static func markdown(_ reports: [BenchReport], charts: [ChartedMetric]) -> String {
        var text = "# Benchmark summary\n\n"
        let commands = reports.map(\.command).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        for report in reports {
            text += "- **\(report.label)**: `\(report.tool)` against \(report.target); models \(report.models.joined(separator: ", ")); "
            text += "dataset \(report.dataset), seed \(report.seed), \(report.streaming ? "streaming" : "whole responses")\n"
            if commands.count > 1 { text += "  - `\(report.command)`\n" }
        }
        if commands.count == 1 { text += "\n`\(commands[0])`\n" }
        text += "\n| run | rate (req/s) | sent | ok | shed | failed | req/s | output tok/s | TTFT p50 / p90 (ms) | ITL p50 / p90 (ms) | NTPOT p50 / p90 (ms) | e2e p50 / p90 / p99 (s) |\n"
        text += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        func ms(_ metric: MetricSummary?) -> String {
            metric.map { String(format: "%.1f / %.1f", $0.p50 * 1000, $0.p90 * 1000) } ?? "–"
        }
        var notes: [String] = []
        for report in reports {
            for stage in report.stages {
                let latency = stage.latency.map { String(format: "%.2f / %.2f / %.2f", $0.p50, $0.p90, $0.p99) } ?? "–"
                var rate = number(stage.rate)
                if let unfaithful = stage.unfaithful {
                    rate += " ⚠"
                    notes.append("\(report.label) at \(number(stage.rate)) req/s: \(unfaithful)")
                }
                text += "| \(report.label) | \(rate) | \(stage.sent) | \(stage.succeeded) | \(stage.shed) | \(stage.failed) | "
                text += String(format: "%.1f | %.0f | ", stage.requestsPerSecond, stage.outputTokensPerSecond)
                text += "\(ms(stage.ttft)) | \(ms(stage.itl)) | \(ms(stage.ntpot)) | \(latency) |\n"
            }
        }
        text += ratioTable(reports)
        if !notes.isEmpty {
            text += "\n⚠ The machine, not the fleet, limited these stages; their latencies measure this computer:\n\n"
            text += notes.map { "- \($0)\n" }.joined()
        }
        let errors = reports.flatMap { report in report.stages.flatMap { stage in stage.errors.map { "\(report.label) at \(number(stage.rate)) req/s: \($0.value) × \($0.key)" } } }
        if !errors.isEmpty {
            text += "\nFailures:\n\n" + errors.map { "- \($0)\n" }.joined()
        }
        if !charts.isEmpty {
            text += "\n" + charts.map { "![\($0.title)](\($0.file).svg)\n" }.joined(separator: "\n")
        }
        return text
    }
}

extension BenchOutput {
    /// Each later run divided by the first, at every rate both ran: how a policy compares with
    /// the one listed first (`sim --policy default,service` gives service ÷ default, the
    /// comparison GIE's launch benchmark charted). Empty for a single run.
    public static func ratioTable(_ reports: [BenchReport]) -> String {
        guard let first = reports.first, reports.count > 1 else { return "" }
        func ratio(_ value: Double?, _ base: Double?) -> String {
            guard let value, let base, base > 0, value.isFinite else { return "–" }
            return String(format: "%.2f", value / base)
        }
        var text = "\nRatios to **\(first.label)** (÷ \(first.label), at the same offered rate):\n\n"
        text += "| run | rate (req/s) | output tok/s | p90 NTPOT | p90 e2e |\n|---|---:|---:|---:|---:|\n"
        var rows = 0
        for report in reports.dropFirst() {
            for stage in report.stages {
                guard let base = first.stages.first(where: { $0.rate == stage.rate }) else { continue }
                text += "| \(report.label) | \(number(stage.rate)) | \(ratio(stage.outputTokensPerSecond, base.outputTokensPerSecond)) | "
                text += "\(ratio(stage.ntpot?.p90, base.ntpot?.p90)) | \(ratio(stage.latency?.p90, base.latency?.p90)) |\n"
                rows += 1
            }
        }
        return rows > 0 ? text : ""
    }
}

/// Left-aligned columns, two spaces apart, as `kubectl get` prints them.
public enum TextTable {
    public static func lines(_ rows: [[String]], indent: String = "") -> [String] {
        guard let first = rows.first else { return [] }
        let widths = first.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            indent + zip(row.dropLast(), widths).map { $0.0.padding(toLength: $0.1 + 2, withPad: " ", startingAt: 0) }.joined() + (row.last ?? "")
        }
    }
}
