import Foundation

/// Replays the rows of `reference/timing/published_serving.csv` through the engine and cost
/// model, and compares. Each row is turned into the scenario its source describes; rows the
/// emulator cannot express say why.
///
/// Rules, fixed before looking at the errors and applied to every row alike:
/// - accelerator and model by name; a row whose GPU is not stated is not predicted;
/// - precision "fp8 weights" is `--quantization fp8`; plain "fp8" adds `--kv-cache-dtype fp8`;
/// - `max_num_seqs` from the row's notes, else 256 for engines before vLLM V1, else the device's
///   V1 default;
/// - vLLM before V1 schedules as V0 does by default (prompts first and whole, a step all
///   prefill or all decode, `max_num_batched_tokens` = max(max_model_len, 2048), no prefix
///   caching), with V0's host CPU time per scheduler call (profiles/engines/vllm-v0.yaml) in
///   place of the accelerator's fixed overhead, and the multi-step runs the engine column names
///   (`--num-scheduler-steps`, `steps=`); vLLM V1 with V1's host time (profiles/engines/vllm-v1.yaml);
///   TensorRT-LLM and NIM scheduled as V1 (chunked prefill beside the decodes) with the
///   accelerator's fixed overhead;
/// - "batch N": N requests at once (vLLM's latency test, static batching); "concurrency N":
///   N closed-loop clients; "QPS r": Poisson arrivals; "inf", "offline", "max load": all at once;
/// - prompt counts from the row (default 200; 1000 for "max load" and 10 × N for concurrency N);
/// - ShareGPT lengths: the means the row gives, else 202 in / 179 out (vLLM's v0.6.0 blog),
///   log-normal with σ = 1, clipped as benchmark_serving.py filters ShareGPT;
/// - values the source marks "PER GPU" are compared with the prediction divided by TP.
public struct PublishedComparison {
    public struct Row: Sendable {
        public var index: Int
        public var summary: String
        public var metric: String
        public var published: Double
        public var predicted: Double?
        /// Why the row was not predicted, or which assumptions it needed.
        public var note: String
        /// The vLLM source family it belongs to (docs/timing-validation.md, calibration plan).
        public var family: Family?
        public var errorPercent: Double? { predicted.map { ($0 - published) / published * 100 } }
    }

    public let profiles: ProfileStore
    /// vLLM V0's CPU time per step (profiles/engines/vllm-v0.yaml, or a fit's candidate).
    public var v0Host: HostCost
    /// vLLM V1's (profiles/engines/vllm-v1.yaml), as `serve` runs it.
    public var v1Host: HostCost

    public init(profiles: ProfileStore, v0Host: HostCost? = nil) throws {
        self.profiles = profiles
        self.v0Host = try v0Host ?? profiles.engine("vllm-v0").host
        self.v1Host = try profiles.engine("vllm-v1").host
    }

    /// The vLLM sources the step-time fit is trained and judged on, split by whole source
    /// before any fit (docs/timing-validation.md, "Calibration plan").
    public enum Family: String, Sendable, CaseIterable {
        case lambdaLabs = "LambdaLabs v0.5.4"
        case vllmBlogV060 = "vLLM v0.6.0 blog"
        case vllmNightly = "vLLM nightly"
        case amdMI300X = "AMD MI300X blog"
        case gieSample = "GIE sample"

        public var isTraining: Bool { self == .lambdaLabs || self == .vllmBlogV060 }

        /// The family of a row, by its `source` and `engine` columns; nil for other engines.
        public static func of(source: String, engine: String) -> Family? {
            guard engine.contains("vLLM") else { return nil }
            if source.contains("LambdaLabsML/vllm-benchmark") { return .lambdaLabs }
            if source.contains("2024/09/05/perf-update") { return .vllmBlogV060 }
            if source.contains("buildkite.com/vllm/performance-benchmark") { return .vllmNightly }
            if source.contains("vllm-serving-amd") || source.contains("Serving LLMs on AMD MI300X") { return .amdMI300X }
            if source.contains("gateway-api-inference-extension") { return .gieSample }
            return nil
        }
    }

    /// Every row of the CSV (or those `including` keeps), predicted where expressible.
    public func compare(csv text: String, including: (Family?) -> Bool = { _ in true }) throws -> [Row] {
        let table = Self.parseCSV(text)
        guard let header = table.first else { return [] }
        var rows: [Row] = []
        var cache: [String: Measured] = [:]
        for (index, values) in table.dropFirst().enumerated() where values.count == header.count {
            let field = Dictionary(uniqueKeysWithValues: zip(header, values))
            let family = Family.of(source: field["source"] ?? "", engine: field["engine"] ?? "")
            guard including(family) else { continue }
            var row = try compare(index: index, field, cache: &cache)
            row.family = family
            rows.append(row)
        }
        return rows
    }

    /// What a scenario measured, in the CSV's units.
    struct Measured {
        var preemptions = 0
        var values: [String: Double]
    }

    private func compare(index: Int, _ field: [String: String], cache: inout [String: Measured]) throws -> Row {
        let metric = field["metric"] ?? ""
        let published = Double(field["value"] ?? "") ?? .nan
        let acceleratorText = field["accelerator"] ?? "", modelText = field["model"] ?? ""
        let engineText = field["engine"] ?? "", notes = field["notes"] ?? ""
        let load = field["batch_or_concurrency"] ?? ""
        let inputText = field["input_len"] ?? "", outputText = field["output_len"] ?? ""
        let summary = "\(engineText) · \(acceleratorText) · \(modelText) · TP\(field["tp"] ?? "") · \(load) · \(inputText)/\(outputText)"
        var row = Row(index: index, summary: summary, metric: metric, published: published, predicted: nil, note: "", family: nil)
        func refuse(_ reason: String) -> Row {
            row.note = "not expressible: " + reason
            return row
        }
        if !engineText.contains("vLLM") && !engineText.contains("TensorRT") && !engineText.contains("NIM") {
            return refuse("\(engineText)'s scheduler is not emulated")
        }
        if acceleratorText.lowercased().contains("unstated") { return refuse("the GPU is not stated") }
        guard let acceleratorName = Self.accelerator(acceleratorText) else { return refuse("no profile for \(acceleratorText)") }
        guard let modelName = Self.model(modelText) else { return refuse("no profile for \(modelText)") }
        let tp = Int((field["tp"] ?? "1").prefix { $0.isNumber }) ?? 1
        let precisionText = (field["precision"] ?? "").lowercased()
        let precision = Precision(
            fp8Weights: precisionText.contains("fp8"),
            fp8KVCache: precisionText.contains("fp8") && !precisionText.contains("weights"))
        let accelerator = try profiles.accelerator(acceleratorName)
        let model = try profiles.model(modelName)
        let isVLLM = engineText.contains("vLLM")
        let scheduling: EngineConfig.Scheduling = isVLLM && !engineText.contains("v1") ? .v0 : .v1
        let host = isVLLM ? (scheduling == .v0 ? v0Host : v1Host) : nil
        let costModel = CostModel(accelerator: accelerator, model: model, tensorParallel: tp, precision: precision, host: host)
        var assumptions: [String] = []
        if precision.fp8KVCache { assumptions.append("fp8 KV cache assumed") }
        // V0's multi-step scheduling: the steps the engine names, 10 (the v0.6.0 blog's) where
        // it says only "multi-step".
        var schedulerSteps = Self.firstNumber(after: ["steps=", "scheduler-steps "], in: engineText) ?? 1
        if engineText.contains("multi-step"), schedulerSteps == 1 {
            schedulerSteps = 10
            assumptions.append("10 scheduler steps assumed")
        }
        var maxNumSeqs = Self.firstNumber(after: ["max-num-seqs ", "max-num-seqs=", "max-num-seq="], in: notes)
            ?? (load.contains("max seqs") ? Self.firstNumber(after: [""], in: load) : nil)
            ?? (engineText.contains("v1") ? accelerator.defaultMaxNumSeqs : 256)

        // The workload.
        let fixedInput = Int(inputText), fixedOutput = Int(outputText)
        var meanInput = 202.0, meanOutput = 179.0
        var lengthsStated = false
        if let total = Self.firstNumber(after: ["("], in: inputText), inputText.contains("tok total"),
           let outputTotal = Self.firstNumber(after: ["("], in: outputText), let count = Self.promptCount(in: load) {
            meanInput = Double(total) / Double(count)
            meanOutput = Double(outputTotal) / Double(count)
            lengthsStated = true
        } else if let input = Double(inputText.filter { $0.isNumber || $0 == "." }.prefix(8)), !inputText.isEmpty,
                  let output = Double(outputText.filter { $0.isNumber || $0 == "." }.prefix(8)), !outputText.isEmpty,
                  fixedInput == nil || fixedOutput == nil {
            meanInput = input
            meanOutput = output
            lengthsStated = true
        }
        enum Shape { case batch(Int), closedLoop(Int), stream(rate: Double?, count: Int) }
        let shape: Shape
        if load.hasPrefix("batch "), let batch = Int(load.dropFirst(6)) {
            shape = .batch(batch)
        } else if load.hasPrefix("concurrency "), let clients = Int(load.dropFirst(12)) {
            shape = .closedLoop(clients)
            assumptions.append("\(max(10 * clients, 100)) requests")
        } else if load.hasPrefix("QPS "), let rate = Double(load.dropFirst(4).prefix { $0.isNumber || $0 == "." }) {
            var count = Self.promptCount(in: load) ?? Self.firstNumber(after: ["num-prompts "], in: notes) ?? Self.promptCount(in: notes) ?? 200
            if let seconds = Self.duration(in: notes) { count = Int(rate * seconds) }
            shape = .stream(rate: rate, count: count)
            assumptions.append("\(count) prompts")
        } else if load.contains("inf") || load.contains("offline") || load.contains("prompts") || load.contains("max load") {
            let count = Self.promptCount(in: load) ?? Self.firstNumber(after: ["num-prompts ", "num-prompt="], in: load + " " + notes)
                ?? Self.promptCount(in: notes) ?? (load.contains("max load") ? 1000 : 200)
            shape = .stream(rate: nil, count: count)
            assumptions.append("\(count) prompts")
        } else {
            return refuse("load '\(load)' states no rate, batch, concurrency or prompt count")
        }
        if fixedInput == nil || fixedOutput == nil {
            assumptions.append(lengthsStated ? String(format: "ShareGPT-like lengths, means %.0f/%.0f as stated", meanInput, meanOutput)
                                             : "ShareGPT lengths assumed: means 202/179")
        }

        // Replicas behind a gateway: one replica at its share of the rate, totals scaled back up.
        var replicas = 1.0
        if let count = Self.firstNumber(after: ["(x"], in: acceleratorText) {
            replicas = Double(count)
            assumptions.append("\(count) replicas simulated as one at 1/\(count) of the rate")
        }
        let key = "\(acceleratorName)|\(modelName)|\(tp)|\(precision)|\(maxNumSeqs)|\(scheduling)|\(schedulerSteps)|\(load)|\(inputText)|\(outputText)|\(notes.hashValue)"
        let measured: Measured
        if let cached = cache[key] {
            measured = cached
        } else {
            switch shape {
            case .batch(let batch):
                maxNumSeqs = max(maxNumSeqs, batch)
                let input = fixedInput ?? Int(meanInput), output = fixedOutput ?? Int(meanOutput)
                let config = engineConfig(accelerator: accelerator, costModel: costModel, maxNumSeqs: maxNumSeqs, maxModelLen: input + output, scheduling: scheduling, schedulerSteps: schedulerSteps)
                let prediction = Prediction.run(engineConfig: config, costModel: costModel, batch: batch, input: input, output: output)
                measured = Measured(values: [
                    "e2e_latency_ms": prediction.endToEndLatency * 1000, "ttft_ms": prediction.timeToFirstToken * 1000,
                    "itl_ms": prediction.interTokenLatency * 1000, "tpot_ms": prediction.interTokenLatency * 1000,
                    "output_tok_per_s": prediction.outputTokensPerSecond,
                ])
            case .closedLoop(let clients):
                let requests = workload(count: max(10 * clients, 100), rate: nil, fixed: (fixedInput, fixedOutput), means: (meanInput, meanOutput))
                let config = engineConfig(accelerator: accelerator, costModel: costModel, maxNumSeqs: maxNumSeqs, maxModelLen: maxLength(requests, model), scheduling: scheduling, schedulerSteps: schedulerSteps)
                measured = Self.measured(WorkloadSimulation.runClosedLoop(engineConfig: config, costModel: costModel, requests: requests, concurrency: clients), replicas: 1)
            case .stream(let rate, let count):
                let requests = workload(count: max(1, Int(Double(count) / replicas)), rate: rate.map { $0 / replicas }, fixed: (fixedInput, fixedOutput), means: (meanInput, meanOutput))
                let config = engineConfig(accelerator: accelerator, costModel: costModel, maxNumSeqs: maxNumSeqs, maxModelLen: maxLength(requests, model), scheduling: scheduling, schedulerSteps: schedulerSteps)
                measured = Self.measured(WorkloadSimulation.run(engineConfig: config, costModel: costModel, arrivals: requests), replicas: replicas)
            }
            cache[key] = measured
        }
        guard var value = measured.values[metric] else { return refuse("metric \(metric)") }
        if notes.contains("PER GPU"), metric == "output_tok_per_s" {
            value /= Double(tp)
            assumptions.append("per GPU: prediction / TP")
        } else if tp > 1, metric == "output_tok_per_s", notes.contains("per-GPU vs total not stated") {
            assumptions.append(String(format: "if per GPU: %+.1f %%", (value / Double(tp) - published) / published * 100))
        }
        if measured.preemptions > 0 { assumptions.append("\(measured.preemptions) preemptions") }
        row.predicted = value
        row.note = assumptions.joined(separator: "; ")
        return row
    }

    private func workload(count: Int, rate: Double?, fixed: (Int?, Int?), means: (Double, Double)) -> [WorkloadSimulation.Arrival] {
        var arrivals = WorkloadSimulation.shareGPTLike(count: count, rate: rate, meanInput: means.0, meanOutput: means.1)
        if let input = fixed.0, let output = fixed.1 {
            arrivals = arrivals.map { .init(time: $0.time, inputTokens: input, outputTokens: output) }
        }
        return arrivals
    }

    private func maxLength(_ arrivals: [WorkloadSimulation.Arrival], _ model: ModelProfile) -> Int {
        max(model.maxModelLen, arrivals.map { $0.inputTokens + $0.outputTokens }.max() ?? 0)
    }

    private static func measured(_ result: WorkloadSimulation.Result, replicas: Double) -> Measured {
        Measured(preemptions: result.preemptions, values: [
            "ttft_ms": result.meanTTFT * 1000, "tpot_ms": result.meanTPOT * 1000, "itl_ms": result.meanITL * 1000,
            "e2e_latency_ms": result.meanE2E * 1000, "req_per_s": result.requestsPerSecond * replicas,
            "output_tok_per_s": result.outputTokensPerSecond * replicas,
        ])
    }

    /// Seconds a run lasted, from notes like "request rate 200/s, 377.7 s".
    static func duration(in notes: String) -> Double? {
        let words = notes.split(separator: " ")
        for (index, word) in words.enumerated().dropFirst() where word == "s" || word == "s;" || word == "s," {
            if let value = Double(words[index - 1]) { return value }
        }
        return nil
    }

    private func engineConfig(
        accelerator: AcceleratorProfile, costModel: CostModel, maxNumSeqs: Int, maxModelLen: Int, scheduling: EngineConfig.Scheduling,
        schedulerSteps: Int
    ) -> EngineConfig {
        let maxModelLen = max(maxModelLen, 16)
        let budget = scheduling.defaultMaxNumBatchedTokens(
            maxModelLen: maxModelLen, deviceDefault: max(accelerator.defaultMaxNumBatchedTokens, maxNumSeqs))
        return EngineConfig(
            maxNumSeqs: maxNumSeqs, maxNumBatchedTokens: budget, maxModelLen: maxModelLen,
            numGPUBlocks: max(2, costModel.kvBlocks(gpuMemoryUtilization: 0.9, blockSize: 16)), enablePrefixCaching: scheduling.prefixCachingByDefault,
            scheduling: scheduling, numSchedulerSteps: scheduling == .v0 ? schedulerSteps : 1)
    }

    // MARK: Reading the rows

    static func accelerator(_ text: String) -> String? {
        let upper = text.uppercased()
        if upper.contains("H100") { return "h100-sxm" }
        if upper.contains("A100") { return "a100-80g" }
        if upper.contains("H200") { return "h200" }
        if upper.contains("MI300X") { return "mi300x" }
        if upper.contains("L40S") { return "l40s" }
        return nil
    }

    static func model(_ text: String) -> String? {
        let lower = text.lowercased()
        if lower.contains("405b") { return nil }
        if lower.contains("mistral-7b") { return "mistral-7b" }
        if lower.contains("qwen2.5-7b") { return "qwen2.5-7b" }
        let llama3 = lower.contains("llama-3") || lower.contains("llama3")
        if lower.contains("70b") { return llama3 ? "llama-3-70b" : "llama-2-70b" }
        if lower.contains("8b") { return "llama-3-8b" }
        if lower.contains("7b") { return "llama-2-7b" }
        return nil
    }

    static func firstNumber(after markers: [String], in text: String) -> Int? {
        for marker in markers {
            var rest = Substring(text)
            if !marker.isEmpty {
                guard let range = text.range(of: marker) else { continue }
                rest = text[range.upperBound...]
            }
            let digits = rest.drop { $0 == " " }.prefix { $0.isNumber }
            if let value = Int(digits) { return value }
        }
        return nil
    }

    /// The N of "N prompts" or "N ShareGPT prompts".
    static func promptCount(in text: String) -> Int? {
        for marker in [" ShareGPT prompts", " prompts"] {
            guard let range = text.range(of: marker) else { continue }
            let before = text[..<range.lowerBound].split(separator: " ").last ?? ""
            if let count = Int(before.filter(\.isNumber)) { return count }
        }
        return nil
    }

    /// RFC 4180 CSV: a field that starts with a quote may hold commas, doubled quotes and
    /// newlines; a quote inside an unquoted field is literal (as Python's csv reads it).
    static func parseCSV(_ text: String) -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var quoted = false
        var fieldStarted = false
        let scalars = Array(text.unicodeScalars)
        var index = 0
        func endField() {
            row.append(field)
            field = ""
            fieldStarted = false
        }
        while index < scalars.count {
            let scalar = scalars[index]
            index += 1
            if quoted {
                if scalar == "\"" {
                    if index < scalars.count, scalars[index] == "\"" {
                        field.unicodeScalars.append("\"")
                        index += 1
                    } else {
                        quoted = false
                    }
                } else {
                    field.unicodeScalars.append(scalar)
                }
                continue
            }
            switch scalar {
            case "\"" where !fieldStarted:
                quoted = true
                fieldStarted = true
            case ",":
                endField()
            case "\n":
                endField()
                rows.append(row)
                row = []
            case "\r":
                break
            default:
                field.unicodeScalars.append(scalar)
                fieldStarted = true
            }
        }
        if fieldStarted || !row.isEmpty {
            endField()
            rows.append(row)
        }
        return rows
    }
}
