import Foundation
import InferenceAPI
@testable import Load
import Testing

struct WorkloadTests {
    static func synthetic(models: [(name: String, weight: Double)] = [("m", 1)], groups: Int = 0, prefix: Int = 0, seed: UInt64 = 7) -> Workload {
        Workload(source: .synthetic(.shareGPTSynthetic), models: models, prefixGroups: groups, prefixTokens: prefix, seed: seed)
    }

    @Test func shareGPTSyntheticHasThePublishedMeans() {
        // vLLM's ShareGPT benchmark: average input 202, output 179 tokens after its filter.
        var generator = SplitMix64(seed: 42)
        var inputs = 0, outputs = 0
        let count = 200_000
        for _ in 0..<count {
            let pair = LengthDistribution.shareGPTSynthetic.draw(&generator)
            #expect(pair.input >= 4 && pair.input <= 1024 && pair.output >= 4 && pair.input + pair.output <= 2048)
            inputs += pair.input
            outputs += pair.output
        }
        let meanInput = Double(inputs) / Double(count), meanOutput = Double(outputs) / Double(count)
        #expect(abs(meanInput - 202) / 202 < 0.02, "mean input \(meanInput)")
        #expect(abs(meanOutput - 179) / 179 < 0.02, "mean output \(meanOutput)")
    }

    @Test func lpgShareGPTHasThePublishedQuantiles() {
        // GIE's sample.json: prompts p50/p90/p99 109/714/987 tokens, served outputs 144/564/948
        // with BOS (143/563/947 without), within 4…1024 and 2…1024.
        var generator = SplitMix64(seed: 9)
        let count = 200_000
        let pairs = (0..<count).map { _ in QuantileLengths.lpgShareGPT.draw(&generator) }
        let inputs = pairs.map(\.input).sorted(), outputs = pairs.map(\.output).sorted()
        func quantile(_ values: [Int], _ q: Double) -> Int { values[Int(q * Double(values.count - 1))] }
        for (values, published) in [(inputs, [109, 714, 987]), (outputs, [143, 563, 947])] {
            for (q, expected) in zip([0.5, 0.9, 0.99], published) {
                let drawn = quantile(values, q)
                #expect(abs(drawn - expected) <= max(2, expected / 100), "p\(Int(q * 100)): \(drawn), published \(expected)")
            }
        }
        #expect(inputs.first! >= 4 && inputs.last! <= 1024 && outputs.first! >= 2 && outputs.last! <= 1024)
        // A workload's items carry such lengths (the prompt's count with BOS).
        let workload = Workload(source: .quantiles(name: "lpg-sharegpt", .lpgShareGPT), models: [("m", 1)], seed: 9)
        let items = (0..<2_000).map { workload.item($0) }
        #expect(items.allSatisfy { (4...1024).contains($0.inputTokens) && (2...1024).contains($0.outputTokens) })
        #expect(Set(items.map(\.outputTokens)).count > 300, "lengths spread")
    }

    @Test func itemsAreTheSameForTheSameSeedAndTheServerCountsTheirPromptsExactly() {
        let workload = Self.synthetic()
        for index in [0, 1, 17, 99_999] {
            let item = workload.item(index)
            #expect(item == Self.synthetic().item(index))
            // What the emulated server's tokenizer makes of the text: BOS and the same ids.
            #expect(Tokenizer.shared.encode(item.prompt, addSpecialTokens: true) == [Tokenizer.bosTokenID] + item.promptTokenIDs)
            #expect(item.inputTokens == item.promptTokenIDs.count + 1)
        }
        #expect(Self.synthetic(seed: 8).item(0) != Self.synthetic().item(0))
        #expect(workload.item(1).promptTokenIDs.prefix(8) != workload.item(2).promptTokenIDs.prefix(8), "unrelated prompts share no prefix")
    }

    @Test func modelsArePickedByWeight() {
        let workload = Self.synthetic(models: [("a", 3), ("b", 1), ("c", 0)])
        var counts: [String: Int] = [:]
        for index in 0..<8000 { counts[workload.item(index).model, default: 0] += 1 }
        #expect(counts["c"] == nil)
        #expect(abs(Double(counts["a"] ?? 0) / 8000 - 0.75) < 0.02, "\(counts)")
    }

    @Test func prefixGroupsShareTheirPrefix() {
        let workload = Self.synthetic(groups: 3, prefix: 64)
        let prefixes = Set((0..<200).map { workload.item($0).promptTokenIDs.prefix(64) })
        #expect(prefixes.count == 3)
        #expect((0..<200).allSatisfy { workload.item($0).promptTokenIDs.count > 64 })
    }

    @Test func aShareGPTFileIsReadAndFilteredAsVLLMsBenchmarkDoes() throws {
        let long = Array(repeating: "word", count: 1100).joined(separator: " ")
        let json = """
            [{"conversations": [{"from": "human", "value": "What is the capital of France?"}, {"from": "gpt", "value": "The capital of France is Paris."}]},
             {"conversations": [{"from": "human", "value": "Hi"}]},
             {"conversations": [{"from": "human", "value": "\(long)"}, {"from": "gpt", "value": "Too long a prompt."}]}]
            """
        let pairs = try Workload.shareGPTPairs(Data(json.utf8))
        #expect(pairs.count == 1)
        #expect(pairs[0].prompt == Tokenizer.shared.encode("What is the capital of France?"))
        #expect(pairs[0].output == Tokenizer.shared.encode("The capital of France is Paris.").count)
        #expect(throws: WorkloadError.self) { try Workload.shareGPTPairs(Data("{}".utf8)) }
    }
}

struct StageSummaryTests {
    @Test func histogramPercentilesAreWithinHalfAPercent() {
        var generator = SplitMix64(seed: 3)
        var histogram = LogHistogram()
        var values: [Double] = []
        for _ in 0..<50_000 {
            let value = generator.nextLogNormal(median: 0.02, sigma: 0.8)
            values.append(value)
            histogram.add(value)
        }
        let exact = Percentiles(values)
        for p in [50.0, 90, 99] {
            let estimate = histogram.value(at: p)!, truth = exact.value(at: p)!
            #expect(abs(estimate - truth) / truth < 0.006, "p\(p): \(estimate) vs \(truth)")
        }
    }

    static func record(sent: Double, latency: Double, outcome: Outcome = .ok, tokens: Int = 10, late: Double = 0, gaps: [Double] = []) -> RequestRecord {
        var record = RequestRecord(
            stream: "s", scheduled: sent - late, sent: sent, head: sent + 0.01, firstToken: gaps.isEmpty ? nil : sent + 0.05, finished: sent + latency,
            outcome: outcome, servedBy: "pod:8000", outputTokens: tokens)
        record.inputTokens = 20
        record.interTokenGaps = gaps
        return record
    }

    @Test func aStageSummaryCountsOutcomesAndMeasuresThroughputOverItsSpan() {
        var statistics = StageStatistics(rate: 4, duration: 2, start: 10)
        statistics.add(Self.record(sent: 10.1, latency: 1, gaps: [0.01, 0.02]))
        statistics.add(Self.record(sent: 10.5, latency: 3.5, tokens: 30))
        statistics.add(Self.record(sent: 11, latency: 0.01, outcome: .status(429)))
        statistics.add(Self.record(sent: 11.2, latency: 0.5, outcome: .timedOut))
        let summary = statistics.summary()
        #expect(summary.sent == 4 && summary.succeeded == 2 && summary.shed == 1 && summary.failed == 1)
        #expect(summary.errors == ["client timeout": 1])
        // The last answer came at 14.0: 4 s after the start.
        #expect(abs(summary.span - 4) < 1e-9)
        #expect(abs(summary.requestsPerSecond - 0.5) < 1e-9 && abs(summary.outputTokensPerSecond - 10) < 1e-9)
        #expect(summary.ntpot?.p50 == 0.1 && summary.latency?.p90 == 3.5)
        #expect(summary.ttft?.count == 1 && summary.itl?.count == 2)
        #expect(summary.served == ["pod:8000": 2])
        #expect(summary.unfaithful == nil)
    }

    @Test func aStageWhoseClientFellBehindIsMarked() {
        var statistics = StageStatistics(rate: 100, duration: 1, start: 0)
        for index in 0..<100 { statistics.add(Self.record(sent: Double(index) / 100, latency: 0.1, late: index < 10 ? 0.05 : 0)) }
        let summary = statistics.summary()
        #expect(summary.lateSends == 10)
        #expect(summary.unfaithful?.contains("the client fell behind: 10 of 100 sends") == true)
        #expect(StageStatistics(rate: 1, duration: 1, start: 0).summary(machineBusy: 0.97).unfaithful == "the machine was 97 % busy")
    }

    @Test func aStageWhoseConnectionsFailedIsMarkedButItsErrorAnswersAreNot() {
        var statistics = StageStatistics(rate: 100, duration: 1, start: 0)
        for index in 0..<100 {
            let outcome: Outcome = index < 6 ? .connectionFailed("connect timeout") : index < 20 ? .status(503) : .ok
            statistics.add(Self.record(sent: Double(index) / 100, latency: 0.1, outcome: outcome))
        }
        #expect(statistics.summary().unfaithful?.hasPrefix("6 of 100 requests got no answer") == true)

        // Errors the fleet answered with are the fleet's behaviour, not the machine's.
        var answered = StageStatistics(rate: 100, duration: 1, start: 0)
        for index in 0..<100 { answered.add(Self.record(sent: Double(index) / 100, latency: 0.1, outcome: index < 50 ? .status(503) : .ok)) }
        #expect(answered.summary().unfaithful == nil)
    }

    @Test func reportsAreWrittenAsJSONCSVMarkdownAndChartsAndReadBack() throws {
        var statistics = StageStatistics(rate: 2, duration: 1, start: 0)
        statistics.add(Self.record(sent: 0.1, latency: 1, gaps: [0.01]))
        let stage = statistics.summary()
        let reports = ["picker", "round-robin"].map {
            BenchReport(tool: "understudy sim", label: $0, target: "fleet.yaml", models: ["m"], dataset: "sharegpt-synthetic", seed: 1, streaming: true,
                        command: "understudy sim fleet.yaml", stages: [stage])
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try BenchOutput.write(reports, to: directory)
        let back = try BenchOutput.read(from: directory)
        #expect(back.map(\.label) == ["picker", "round-robin"] && back[1].stages == [stage])
        let csv = try String(contentsOf: directory.appendingPathComponent("summary.csv"), encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 3 && csv[0].hasPrefix("label,rate,") && csv[2].hasPrefix("round-robin,2.0,"))
        for chart in ["throughput", "requests", "ttft", "itl", "ntpot", "latency"] {
            let svg = try String(contentsOf: directory.appendingPathComponent("\(chart).svg"), encoding: .utf8)
            #expect(svg.hasPrefix("<svg") && svg.contains("round-robin"))
        }
        let markdown = try String(contentsOf: directory.appendingPathComponent("summary.md"), encoding: .utf8)
        #expect(markdown.contains("| picker | 2 | 1 | 1 |") && markdown.contains("![Time to first token](ttft.svg)"))
        #expect(markdown.contains("| round-robin | 2 | 1.00 | 1.00 | 1.00 |"))
    }

    /// The summary divides each later run by the first at the same rate: service ÷ picker.
    @Test func theSummaryGivesEachRunsRatioToTheFirst() {
        func stage(rate: Double, tokensPerSecond: Double, ntpotP90: Double, latencyP90: Double) -> StageSummary {
            var stage = StageStatistics(rate: rate, duration: 1, start: 0).summary()
            stage.outputTokensPerSecond = tokensPerSecond
            stage.ntpot = MetricSummary(count: 10, mean: ntpotP90, p50: ntpotP90 / 2, p90: ntpotP90, p99: ntpotP90)
            stage.latency = MetricSummary(count: 10, mean: latencyP90, p50: latencyP90 / 2, p90: latencyP90, p99: latencyP90)
            return stage
        }
        func report(_ label: String, _ stages: [StageSummary]) -> BenchReport {
            BenchReport(tool: "understudy sim", label: label, target: "f.yaml", models: ["m"], dataset: "d", seed: 1, streaming: false, command: "c", stages: stages)
        }
        let picker = report("default", [stage(rate: 180, tokensPerSecond: 1000, ntpotP90: 0.1, latencyP90: 10)])
        let service = report("service", [
            stage(rate: 180, tokensPerSecond: 990, ntpotP90: 0.5, latencyP90: 25),
            stage(rate: 200, tokensPerSecond: 1, ntpotP90: 1, latencyP90: 1),  // the picker has no 200: no row
        ])
        let table = BenchOutput.ratioTable([picker, service])
        #expect(table.contains("| service | 180 | 0.99 | 5.00 | 2.50 |"), "\(table)")
        #expect(!table.contains("| service | 200 |"))
        #expect(BenchOutput.ratioTable([picker]).isEmpty)
    }
}
