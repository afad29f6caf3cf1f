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
