@testable import FakeVLLM
import Foundation
import Testing

@Suite struct EngineSetupTests {
    /// vLLM refuses to start when one request of max_model_len cannot fit in the KV cache.
    @Test func refusesAKVCacheSmallerThanOneRequest() throws {
        var configuration = ServerConfiguration()
        configuration.accelerator = "l4"
        configuration.model = "meta-llama/Meta-Llama-3-70B"
        configuration.tensorParallelSize = 8
        #expect {
            try EngineSetup(configuration, profiles: LiveServer.profiles)
        } throws: { error in
            String(describing: error).hasPrefix("To serve at least one request with the models's max seq len (8192)")
        }
        configuration.maxModelLen = 2048
        #expect(try EngineSetup(configuration, profiles: LiveServer.profiles).engineConfig.maxModelLen == 2048)
    }

    /// vLLM's null block holds no tokens: a max_model_len that needs every block does not fit.
    @Test func theNullBlockDoesNotCount() throws {
        var configuration = ServerConfiguration()
        let blocks = try EngineSetup(configuration, profiles: LiveServer.profiles).engineConfig.numGPUBlocks
        configuration.maxModelLen = blocks * 16
        #expect(throws: ProfileError.self) { try EngineSetup(configuration, profiles: LiveServer.profiles) }
        configuration.maxModelLen = (blocks - 1) * 16
        #expect(try EngineSetup(configuration, profiles: LiveServer.profiles).engineConfig.numGPUBlocks == blocks)
    }

    /// `serve` is vLLM V1: each step pays V1's CPU time (profiles/engines/vllm-v1.yaml), which
    /// grows with the model's layers and the sequences in the batch.
    @Test func serveStepsPayV1sHostTime() throws {
        var configuration = ServerConfiguration()
        configuration.model = "meta-llama/Llama-2-7b-hf"
        let setup = try EngineSetup(configuration, profiles: LiveServer.profiles)
        let v1 = try LiveServer.profiles.engine("vllm-v1").host
        #expect(setup.costModel.host == v1)
        func decode(_ sequences: Int) -> BatchShape {
            var batch = BatchShape()
            batch.decodeSequences = sequences
            batch.sampledSequences = sequences
            batch.sequences = sequences
            batch.decodeContextTokens = sequences * 100
            return batch
        }
        let bare = CostModel(accelerator: setup.accelerator, model: setup.model, host: HostCost(perStepMs: 0, perLayerUs: 0, perSequenceUs: 0))
        for sequences in [1, 256] {
            let added = setup.costModel.stepSeconds(decode(sequences)) - bare.stepSeconds(decode(sequences))
            #expect(abs(added - v1.seconds(layers: setup.model.layers, sequences: sequences)) < 1e-12)
        }
        #expect(v1.seconds(layers: 32, sequences: 256) > v1.seconds(layers: 32, sequences: 1))
    }

    /// `--engine-profile vllm-v0`: V0's scheduler with V0's defaults (vLLM 0.6's EngineArgs)
    /// and its fitted host time; `--num-scheduler-steps` only there.
    @Test func theV0EngineHasV0sSchedulerDefaultsAndHostTime() throws {
        var configuration = ServerConfiguration()
        configuration.model = "meta-llama/Llama-2-7b-hf"
        configuration.engineProfile = "vllm-v0"
        configuration.numSchedulerSteps = 8
        let setup = try EngineSetup(configuration, profiles: LiveServer.profiles)
        #expect(setup.engineConfig.scheduling == .v0 && setup.engineConfig.numSchedulerSteps == 8)
        #expect(setup.engineConfig.maxNumSeqs == 256 && !setup.engineConfig.enablePrefixCaching)
        #expect(setup.engineConfig.maxNumBatchedTokens == 4096)  // max(max_model_len 4096, 2048)
        #expect(setup.costModel.host == (try LiveServer.profiles.engine("vllm-v0").host))

        configuration.enablePrefixCaching = true
        configuration.maxNumBatchedTokens = 2048
        #expect {
            try EngineSetup(configuration, profiles: LiveServer.profiles)
        } throws: { error in
            String(describing: error).hasPrefix("max_num_batched_tokens (2048) is smaller than max_model_len (4096).")
        }
        configuration.maxNumBatchedTokens = nil
        #expect(try EngineSetup(configuration, profiles: LiveServer.profiles).engineConfig.enablePrefixCaching)

        configuration.engineProfile = "vllm-v1"
        #expect {
            try EngineSetup(configuration, profiles: LiveServer.profiles)
        } throws: { error in
            String(describing: error).contains("--num-scheduler-steps 8 is a V0 engine setting")
        }
        configuration.numSchedulerSteps = 1
        let v1 = try EngineSetup(configuration, profiles: LiveServer.profiles).engineConfig
        #expect(v1.scheduling == .v1 && v1.maxNumSeqs > 256)
        configuration.engineProfile = "vllm-v2"
        #expect {
            try EngineSetup(configuration, profiles: LiveServer.profiles)
        } throws: { error in
            String(describing: error).contains("no engine profile 'vllm-v2' (known: vllm-v0, vllm-v1)")
        }
    }
}

@Suite struct PublishedComparisonTests {
    @Test func csvKeepsQuotedCommasQuotesAndNewlines() {
        let rows = PublishedComparison.parseCSV("a,\"b,\"\"c\"\"\",d\n1,\"x\ny\",3\n")
        #expect(rows == [["a", "b,\"c\"", "d"], ["1", "x\ny", "3"]])
    }

    @Test func readsEveryRowOfThePublishedTable() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("reference/timing/published_serving.csv")
        let text = try String(contentsOf: file, encoding: .utf8)
        let rows = PublishedComparison.parseCSV(text)
        #expect(rows.count == 202)  // the header and 201 published numbers
        #expect(rows.allSatisfy { $0.count == 12 })
    }
}

/// `understudy profiles fit`: V0's host time per step fitted on the training families only.
@Suite struct HostCostFitTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let csv = root.appendingPathComponent("reference/timing/published_serving.csv")

    @Test func theSimplexFindsAQuadraticsMinimum() {
        let minimum = NelderMead.minimize([0, 0, 0], step: 1, iterations: 200) { point in
            pow(point[0] - 1, 2) + 2 * pow(point[1] + 2, 2) + 3 * pow(point[2] - 0.5, 2)
        }
        #expect(abs(minimum.point[0] - 1) < 1e-3 && abs(minimum.point[1] + 2) < 1e-3 && abs(minimum.point[2] - 0.5) < 1e-3, "\(minimum.point)")
    }

    @Test func everyVLLMRowHasAFamilyAndOnlyTrainingRowsTeachTheFit() throws {
        let text = try String(contentsOf: Self.csv, encoding: .utf8)
        let table = PublishedComparison.parseCSV(text)
        let header = table[0]
        var families: [PublishedComparison.Family: Int] = [:]
        for values in table.dropFirst() {
            let field = Dictionary(uniqueKeysWithValues: zip(header, values))
            let family = PublishedComparison.Family.of(source: field["source"]!, engine: field["engine"]!)
            #expect((family != nil) == field["engine"]!.contains("vLLM"), "\(field["source"]!)")
            if let family { families[family, default: 0] += 1 }
        }
        #expect(Set(families.keys) == Set(PublishedComparison.Family.allCases), "\(families)")

        // Changing every validation row's published value changes nothing the fit sees.
        let profiles = ProfileStore(root: Self.root.appendingPathComponent("profiles"))
        let valueColumn = header.firstIndex(of: "value")!
        var altered = [header]
        for values in table.dropFirst() {
            let field = Dictionary(uniqueKeysWithValues: zip(header, values))
            var row = values
            if PublishedComparison.Family.of(source: field["source"]!, engine: field["engine"]!)?.isTraining == false { row[valueColumn] = "1" }
            altered.append(row)
        }
        let alteredText = altered.map { $0.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: ",") }.joined(separator: "\n")
        let host = HostCost(perStepMs: 0.5, perLayerUs: 20, perSequenceUs: 50)
        let original = try HostCostFit(profiles: profiles, csv: text).loss(host)
        #expect(original.isFinite && original > 0)
        #expect(try HostCostFit(profiles: profiles, csv: alteredText).loss(host) == original)
    }
}
