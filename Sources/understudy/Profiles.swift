import ArgumentParser
import FakeVLLM
import Foundation

struct Profiles: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List accelerator and model profiles, and predict a batch's timing.",
        subcommands: [List.self, Predict.self])

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
        @Option(help: "max_num_seqs (default: vLLM's for the device).") var maxNumSeqs: Int?
        @Option(help: "max_num_batched_tokens (default: vLLM's for the device).") var maxNumBatchedTokens: Int?

        func run() throws {
            var configuration = ServerConfiguration()
            configuration.accelerator = accelerator
            configuration.model = model
            configuration.modelProfile = (try? ProfileStore.locate().model(model)) != nil ? model : nil
            configuration.tensorParallelSize = tensorParallel
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
