import Foundation
import InferenceAPI
import NIOCore

/// One request of a workload: its prompt (as the emulated tokenizer's ids, without BOS), how
/// many tokens to generate, and which model (or adapter) it asks for.
public struct WorkloadItem: Sendable, Equatable {
    public var promptTokenIDs: [Int]
    public var outputTokens: Int
    public var model: String

    /// The prompt's text: spaced common words, each one token, so that the server's tokenizer
    /// gives back exactly `[BOS] + promptTokenIDs`.
    public var prompt: String { Tokenizer.shared.decode(promptTokenIDs) }
    /// Prompt tokens as the server counts them (BOS included).
    public var inputTokens: Int { promptTokenIDs.count + 1 }
}

/// Input and output lengths in tokens, as benchmark clients draw them from ShareGPT.
public struct LengthDistribution: Sendable, Equatable {
    /// Log-normal medians and shapes.
    public var inputMedian: Double
    public var inputSigma: Double
    public var outputMedian: Double
    public var outputSigma: Double
    /// vLLM's `benchmark_serving.py` drops ShareGPT pairs with fewer than 4 prompt or output
    /// tokens, a prompt over 1024 tokens, or prompt + output over 2048
    /// (`is_valid_sequence(min_len=4, max_prompt_len=1024, max_total_len=2048)`); drawn pairs
    /// outside these bounds are drawn again, as the dataset's would be skipped.
    public var minimumLength = 4
    public var maximumInput = 1024
    public var maximumTotal = 2048

    /// ShareGPT-like, fitted to the statistics published for vLLM's ShareGPT benchmark:
    /// - means after vLLM's filter, 202 input and 179 output tokens ("Average input tokens: 202,
    ///   average output tokens: 179", vLLM blog 2024-09-05, 500 prompts, Llama 3 tokenizer);
    /// - spread: ShareGPT's per-turn coefficients of variation, 626.39 / 94.46 for user turns and
    ///   269.93 / 348.45 for assistant turns (WildChat paper, Table 1, Llama 2 tokenizer), as
    ///   log-normal shapes σ = √ln(1 + CV²): 1.95 and 0.69. First turns alone are not published.
    /// The medians make the filtered means 202 and 179 (fitted numerically on 2 million draws:
    /// e^4.9359 and e^4.9503); the test `shareGPTSyntheticHasThePublishedMeans` checks them.
    public static let shareGPTSynthetic = LengthDistribution(
        inputMedian: 139.22, inputSigma: 1.95, outputMedian: 141.21, outputSigma: 0.69)

    public init(inputMedian: Double, inputSigma: Double, outputMedian: Double, outputSigma: Double) {
        self.inputMedian = inputMedian
        self.inputSigma = inputSigma
        self.outputMedian = outputMedian
        self.outputSigma = outputSigma
    }

    /// Whether a pair passes the benchmark's filter.
    public func accepts(input: Int, output: Int) -> Bool {
        input >= minimumLength && output >= minimumLength && input <= maximumInput && input + output <= maximumTotal
    }

    /// One (input, output) pair that passes the filter.
    public func draw(_ generator: inout SplitMix64) -> (input: Int, output: Int) {
        while true {
            let input = Self.rounded(generator.nextLogNormal(median: inputMedian, sigma: inputSigma))
            let output = Self.rounded(generator.nextLogNormal(median: outputMedian, sigma: outputSigma))
            if accepts(input: input, output: output) { return (input, output) }
        }
    }

    private static func rounded(_ value: Double) -> Int { value.isFinite ? Int(min(value, 1e9).rounded()) : Int(1e9) }
}

/// Input and output lengths drawn independently from published quantiles, interpolated
/// log-linearly between them (lengths are heavy-tailed: a log scale keeps the interpolation
/// from piling mass onto the long end).
public struct QuantileLengths: Sendable, Equatable {
    /// (quantile, tokens) from 0 to 1, both increasing; input tokens count BOS.
    public var input: [(quantile: Double, tokens: Double)]
    public var output: [(quantile: Double, tokens: Double)]

    /// The lengths of GIE's launch benchmark, as LPG (AI-Hypercomputer/inference-benchmark)
    /// sent ShareGPT to vLLM v1 serving meta-llama/Llama-2-7b-hf: the quantiles of its
    /// `sample.json` (gateway-api-inference-extension, site-src/performance/benchmark/sample.json
    /// at 61125a81, 59,999 requests; Apache-2.0), counted with the Llama-2 tokenizer, BOS included:
    /// - prompts: min 4, p50 109, p90 714, p99 987, max 1024 (mean 251.5, sd 281.6); LPG keeps
    ///   ShareGPT pairs whose prompt is 4…1024 tokens;
    /// - outputs as served (EOS allowed, `max_tokens` the conversation's completion length, the
    ///   text re-tokenized): min 3, p50 144, p90 564, p99 948, max 1025 (mean 225.3, sd 234.5),
    ///   here less the BOS the re-tokenization added.
    /// No joint statistics are published: the two are drawn independently. Interpolated, the
    /// means are 230 and 215 tokens, 9 % and 4 % under the published 251.5 and 224.3: five
    /// quantiles do not fix the shape between them (a check, not fitted to);
    /// `LoadTests.lpgShareGPTHasThePublishedQuantiles` checks the quantiles.
    public static let lpgShareGPT = QuantileLengths(
        input: [(0, 4), (0.5, 109), (0.9, 714), (0.99, 987), (1, 1024)],
        output: [(0, 2), (0.5, 143), (0.9, 563), (0.99, 947), (1, 1024)])

    public static func == (a: Self, b: Self) -> Bool {
        a.input.elementsEqual(b.input) { $0 == $1 } && a.output.elementsEqual(b.output) { $0 == $1 }
    }

    /// One (input, output) pair.
    public func draw(_ generator: inout SplitMix64) -> (input: Int, output: Int) {
        (Self.value(input, at: generator.nextUnit()), Self.value(output, at: generator.nextUnit()))
    }

    static func value(_ points: [(quantile: Double, tokens: Double)], at unit: Double) -> Int {
        var tokens = points[points.count - 1].tokens
        for (low, high) in zip(points, points.dropFirst()) where unit <= high.quantile {
            let fraction = (unit - low.quantile) / (high.quantile - low.quantile)
            tokens = exp(log(low.tokens) + (log(high.tokens) - log(low.tokens)) * fraction)
            break
        }
        return Int(tokens.rounded())
    }
}

/// What a benchmark sends: prompts and output lengths (synthetic, or from a ShareGPT file), a
/// mix of models or adapters, and optional shared-prefix groups. Deterministic: item `i` of a
/// workload with a given seed is always the same request, whoever asks (the live bench and the
/// simulator send identical requests).
public struct Workload: Sendable {
    public enum Source: Sendable {
        case synthetic(LengthDistribution)
        /// Prompts (token ids) and output lengths read from a dataset, drawn with replacement.
        case dataset(name: String, pairs: [(prompt: [Int], output: Int)])
        /// A recorded trace's requests in order, at its times (`BenchPlan` sends them then).
        case trace(RequestTrace)
        /// Lengths from a benchmark's published quantiles (`lpg-sharegpt`).
        case quantiles(name: String, QuantileLengths)
    }

    public var source: Source
    /// Models or adapters and their weights (requests pick one at random by weight).
    public var models: [(name: String, weight: Double)]
    /// Requests fall into this many groups at random; each group's prompts start with the same
    /// `prefixTokens` tokens (a system prompt, a shared document). 0: no shared prefixes.
    public var prefixGroups: Int
    public var prefixTokens: Int
    public var seed: UInt64

    public init(source: Source, models: [(name: String, weight: Double)], prefixGroups: Int = 0, prefixTokens: Int = 0, seed: UInt64 = 0) {
        self.source = source
        self.models = models
        self.prefixGroups = prefixGroups
        self.prefixTokens = prefixTokens
        self.seed = seed
    }

    /// The workload's name in reports.
    public var datasetName: String {
        switch source {
        case .synthetic: "sharegpt-synthetic"
        case .dataset(let name, _): name
        case .trace(let trace): trace.name
        case .quantiles(let name, _): name
        }
    }

    /// The `index`-th request.
    public func item(_ index: Int) -> WorkloadItem {
        var generator = SplitMix64(seed: seed &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03)
        var prompt: [Int]
        let output: Int
        switch source {
        case .synthetic(let distribution):
            let lengths = distribution.draw(&generator)
            // The drawn length counts BOS, as vLLM's tokenizer does.
            prompt = Self.words(lengths.input - 1, &generator)
            output = lengths.output
        case .dataset(_, let pairs):
            let pair = pairs[Int(generator.next() % UInt64(pairs.count))]
            prompt = pair.prompt
            output = pair.output
        case .quantiles(_, let lengths):
            let drawn = lengths.draw(&generator)
            // The drawn prompt length counts BOS.
            prompt = Self.words(drawn.input - 1, &generator)
            output = drawn.output
        case .trace(let trace):
            let entry = trace.entries[index % trace.entries.count]
            // The trace's count includes BOS, as the service's tokenizer counts it.
            prompt = Self.words(entry.inputTokens - 1, &generator)
            output = entry.outputTokens
        }
        if prefixGroups > 0, prefixTokens > 0 {
            let group = Int(generator.next() % UInt64(prefixGroups))
            var groupGenerator = SplitMix64(seed: seed ^ 0x5052_4546_4958 &+ UInt64(group))
            prompt = Self.words(prefixTokens, &groupGenerator) + prompt
        }
        return WorkloadItem(promptTokenIDs: prompt, outputTokens: output, model: pickModel(&generator))
    }

    private func pickModel(_ generator: inout SplitMix64) -> String {
        guard models.count > 1 else { return models.first?.name ?? "" }
        var point = generator.nextUnit() * models.reduce(0) { $0 + $1.weight }
        for model in models {
            point -= model.weight
            if point <= 0 { return model.name }
        }
        return models[models.count - 1].name
    }

    /// `count` random spaced words: each one token, and together a prompt no other request
    /// shares beyond its first word or two.
    static func words(_ count: Int, _ generator: inout SplitMix64) -> [Int] {
        let vocabulary = Tokenizer.shared.spacedWordIDs
        return (0..<max(0, count)).map { _ in vocabulary[Int(generator.next() % UInt64(vocabulary.count))] }
    }

    // MARK: ShareGPT files

    /// Reads a ShareGPT-format file (a JSON array of `{"conversations": [{"from", "value"}…]}`,
    /// as ShareGPT_V3_unfiltered_cleaned_split.json): the first turn is the prompt, the second
    /// the output, counted with the emulated tokenizer and filtered as vLLM's benchmark does.
    public static func shareGPTPairs(_ data: Data, filter: LengthDistribution = .shareGPTSynthetic) throws -> [(prompt: [Int], output: Int)] {
        let root: JSONValue
        do {
            root = try JSONValue.parse(ByteBuffer(bytes: data))
        } catch {
            throw WorkloadError("the dataset is not JSON: \(error)")
        }
        guard case .array(let entries) = root else { throw WorkloadError("a ShareGPT dataset is a JSON array of conversations") }
        let tokenizer = Tokenizer.shared
        var pairs: [(prompt: [Int], output: Int)] = []
        for entry in entries {
            guard case .array(let turns)? = entry["conversations"], turns.count >= 2,
                  let prompt = turns[0]["value"]?.string, let completion = turns[1]["value"]?.string else { continue }
            let promptIDs = tokenizer.encode(prompt)
            let output = tokenizer.encode(completion).count
            guard filter.accepts(input: promptIDs.count + 1, output: output) else { continue }
            pairs.append((promptIDs, output))
        }
        guard !pairs.isEmpty else { throw WorkloadError("the dataset has no conversation that passes the length filter (4…1024 prompt tokens, ≤ 2048 in all)") }
        return pairs
    }
}

/// Why a workload could not be built.
public struct WorkloadError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
