import ArgumentParser
import FakeVLLM
import Foundation

struct Profiles: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List accelerator and model profiles, and predict a batch's timing.",
        subcommands: [List.self, Predict.self, Validate.self, Fit.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the accelerator and model profiles.")

        func run() throws {
            let store = try ProfileStore.locate()
            print("Accelerators (\(store.root.path)/accelerators):")
            for name in try store.acceleratorNames() {
                let profile = try store.accelerator(name)
                print("  \(name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(profile.description)")
            }
            print("Models (\(store.root.path)/models):")
            for name in try store.modelNames() {
                let profile = try store.model(name)
                print("  \(name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(profile.huggingFaceID)")
            }
        }
    }

    struct Predict: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Predict TTFT, ITL, e2e latency and throughput of one batch, with the server's engine.")

        @Option(help: "Accelerator profile.") var accelerator = "h100-sxm"
        @Option(help: "Model profile, Hugging Face id or alias.") var model = "llama-3-8b"
        @Option(name: .customLong("tp"), help: "Tensor-parallel size.") var tensorParallel = 1
        @Option(help: "Requests in the batch.") var batch = 8
        @Option(help: "Prompt tokens per request.") var input = 32
        @Option(help: "Generated tokens per request.") var output = 128
        @Option(name: [.customShort("q"), .long], help: "Weight quantization: fp8.") var quantization: String?
        @Option(help: "KV cache dtype: auto or fp8.") var kvCacheDtype = "auto"
        @Option(help: "max_num_seqs (default: vLLM's for the device).") var maxNumSeqs: Int?
        @Option(help: "max_num_batched_tokens (default: vLLM's for the device).") var maxNumBatchedTokens: Int?

        func run() throws {
            var configuration = ServerConfiguration()
            configuration.accelerator = accelerator
            configuration.model = model
            // Not a profile name: EngineSetup matches it as a Hugging Face id or alias, and
            // reports a missing profile store itself.
            configuration.modelProfile = (try? ProfileStore.locate().model(model)) != nil ? model : nil
            configuration.tensorParallelSize = tensorParallel
            configuration.quantization = quantization
            configuration.kvCacheDtype = kvCacheDtype
            configuration.maxNumSeqs = maxNumSeqs
            configuration.maxNumBatchedTokens = maxNumBatchedTokens
            configuration.maxModelLen = input + output
            let setup = try EngineSetup(configuration, profiles: ProfileStore.locate())
            let prediction = Prediction.run(
                engineConfig: setup.engineConfig, costModel: setup.costModel, batch: batch, input: input, output: output)
            print("\(setup.model.name) on \(setup.accelerator.name) TP\(tensorParallel), batch \(batch), input \(input), output \(output)")
            print(String(format: "  TTFT               %10.2f ms", prediction.timeToFirstToken * 1000))
            print(String(format: "  ITL                %10.2f ms", prediction.interTokenLatency * 1000))
            print(String(format: "  e2e latency        %10.2f ms", prediction.endToEndLatency * 1000))
            print(String(format: "  output tokens/s    %10.1f", prediction.outputTokensPerSecond))
            print("  KV blocks per GPU  \(String(prediction.kvBlocks).leftPadded(10))  (block size \(setup.engineConfig.blockSize), \(prediction.kvBlocks * setup.engineConfig.blockSize) tokens)")
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

extension Profiles {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Predict every row of a published-serving CSV and report the errors (markdown).")

        @Option(help: "reference/timing/published_serving.csv") var published: String
        @Option(help: "Replace what follows the generated-tables marker in this markdown file (docs/timing-validation.md) instead of printing.")
        var write: String?

        /// The line after which `--write` replaces a file's contents with the tables.
        static let marker = "<!-- Everything below is written by `understudy profiles validate --write`. -->"

        func run() throws {
            var lines: [String] = []
            try tables { lines.append($0) }
            guard let write else {
                for line in lines { print(line) }
                return
            }
            let document = try String(contentsOfFile: write, encoding: .utf8)
            guard let range = document.range(of: Self.marker) else {
                throw ValidationError("\(write) has no line \(Self.marker) to write the tables after")
            }
            try (document[..<range.upperBound] + "\n\n" + lines.joined(separator: "\n") + "\n").write(toFile: write, atomically: true, encoding: .utf8)
            print("wrote the tables of \(published) into \(write)")
        }

        /// The summaries (per source, overall, per vLLM family and split), then every row.
        private func tables(_ print: (String) -> Void) throws {
            let text = try String(contentsOfFile: published, encoding: .utf8)
            let rows = try PublishedComparison(profiles: ProfileStore.locate()).compare(csv: text)
            func summary(_ errors: [Double]) -> String {
                "\(errors.count) | \(String(format: "%.1f", Self.median(errors))) % | \(errors.filter { $0 <= 10 }.count)"
            }
            print("## Per source")
            print("")
            print("| source (engine · metric) | rows | median abs error | within 10 % |")
            print("|---|---:|---:|---:|")
            var groups: [String: [Double]] = [:]
            for row in rows {
                guard let error = row.errorPercent else { continue }
                groups[row.summary.components(separatedBy: " · ").first! + " · " + row.metric, default: []].append(abs(error))
            }
            for (group, errors) in groups.sorted(by: { $0.key < $1.key }) { print("| \(group) | \(summary(errors)) |") }
            let errors = rows.compactMap(\.errorPercent).map(abs)
            if !errors.isEmpty {
                print("")
                print("Predicted \(errors.count) of \(rows.count) rows; median absolute error \(String(format: "%.1f", Self.median(errors))) %; within 10 %: \(errors.filter { $0 <= 10 }.count); within 20 %: \(errors.filter { $0 <= 20 }.count).")
            }
            print("")
            print("| vLLM family | split | rows predicted | median abs error | within 10 % |")
            print("|---|---|---:|---:|---:|")
            for split in [true, false] {
                let name = split ? "training" : "validation"
                for family in PublishedComparison.Family.allCases where family.isTraining == split {
                    let errors = rows.filter { $0.family == family }.compactMap(\.errorPercent).map(abs)
                    if !errors.isEmpty { print("| \(family.rawValue) | \(name) | \(summary(errors)) |") }
                }
                let errors = rows.filter { $0.family?.isTraining == split }.compactMap(\.errorPercent).map(abs)
                if !errors.isEmpty { print("| **all \(name)** | | \(summary(errors)) |") }
            }
            print("")
            print("## Every row")
            print("")
            print("| row | source setting | metric | published | predicted | error | note |")
            print("|---:|---|---|---:|---:|---:|---|")
            for row in rows {
                let predicted = row.predicted.map { String(format: "%.4g", $0) } ?? "—"
                let error = row.errorPercent.map { String(format: "%+.1f %%", $0) } ?? "—"
                print("| \(row.index) | \(row.summary.replacingOccurrences(of: "|", with: "/")) | \(row.metric) | \(String(format: "%.4g", row.published)) | \(predicted) | \(error) | \(row.note) |")
            }
        }

        static func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
    }
}

extension Profiles {
    struct Fit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fit vLLM V0's host CPU time per step on the training sources of a published-serving CSV and write profiles/engines/vllm-v0.yaml.",
            discussion: """
                The split is fixed in docs/timing-validation.md ("Calibration plan"): only the training families' rows \
                are read. Deterministic: Nelder–Mead from BLIS's published trained-physics values, a fixed number of \
                iterations. `profiles validate` then reports training and validation errors apart.
                """)

        @Option(help: "reference/timing/published_serving.csv") var published: String
        @Option(help: "Simplex iterations.") var iterations = 40

        /// BLIS's trained-physics coefficients for vLLM v0.15.1 (inference-sim/inference-sim,
        /// defaults.yaml trained_physics_coefficients): the starting point, not a result.
        static let start = HostCost(perStepMs: 0.12602, perLayerUs: 32.095, perSequenceUs: 4.417)

        func run() throws {
            guard iterations > 0, iterations <= 1000 else { throw ValidationError("--iterations must be 1…1000") }
            let store = try ProfileStore.locate()
            let fit = try HostCostFit(profiles: store, csv: String(contentsOfFile: published, encoding: .utf8))
            let families = PublishedComparison.Family.allCases.filter(\.isTraining).map(\.rawValue).joined(separator: ", ")
            print("fitting vLLM V0's host time per step on \(families); start \(Self.describe(Self.start))")
            let result = try fit.fit(from: Self.start, iterations: iterations) { iteration, best, loss in
                print(String(format: "  iteration %3d  loss %.5f  ", iteration, loss) + Self.describe(best))
                fflush(nil)
            }
            print(String(format: "fitted: loss %.5f after %d evaluations; ", result.loss, result.evaluations) + Self.describe(result.host))
            let file = store.root.appendingPathComponent("engines/vllm-v0.yaml")
            try """
                # vLLM's V0 engine (0.5–0.7): its CPU time per step, beside the accelerator's. FITTED by
                #   understudy profiles fit --published \(published) --iterations \(iterations)
                # on the training families only (\(families); docs/timing-validation.md, "Calibration
                # plan"), from BLIS's trained-physics values for vLLM v0.15.1 (126.02 µs per step, 32.095 µs
                # per layer, 4.417 µs per request; inference-sim/inference-sim defaults.yaml). Loss (mean
                # over families of the mean squared log error): \(String(format: "%.5f", result.loss)).
                name: vllm-v0
                description: vLLM V0 engine (0.5–0.7), host CPU time per step
                scheduling: v0
                host:
                  perStepMs: \(String(format: "%.5f", result.host.perStepMs))
                  perLayerUs: \(String(format: "%.4f", result.host.perLayerUs))
                  perSequenceUs: \(String(format: "%.4f", result.host.perSequenceUs))

                """.write(to: file, atomically: true, encoding: .utf8)
            print("wrote \(file.path)")
        }

        static func describe(_ host: HostCost) -> String {
            String(format: "%.4f ms per step, %.3f µs per layer, %.3f µs per sequence", host.perStepMs, host.perLayerUs, host.perSequenceUs)
        }
    }
}
