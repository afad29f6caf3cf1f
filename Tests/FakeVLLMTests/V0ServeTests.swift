import AsyncHTTPClient
@testable import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import TestSupport
import Testing

/// `serve --engine-profile vllm-v0`: vLLM V0's scheduler behind the same API.
struct V0ServeTests {
    /// V0 finishes a prompt that can never fit its KV cache with its 1 % watermark kept
    /// (FINISHED_IGNORED): an empty answer with finish_reason "length", and the scheduler's
    /// warning in the log.
    @Test func aPromptThatCanNeverFitIsAnsweredEmptyWithLength() async throws {
        // A memory budget that leaves an L4 a KV cache smaller than Llama 3's context: between
        // 100 blocks (so the watermark is at least one) and 511 (less than 8192 tokens).
        var configuration = ServerConfiguration()
        configuration.accelerator = "l4"
        configuration.engineProfile = "vllm-v0"
        configuration.maxModelLen = ServerConfiguration.fitMaxModelLen
        var chosen: (utilization: Double, blocks: Int)?
        for step in 0..<400 {
            configuration.gpuMemoryUtilization = 0.60 + Double(step) * 0.001
            guard let setup = try? EngineSetup(configuration, profiles: LiveServer.profiles) else { continue }
            let blocks = setup.engineConfig.numGPUBlocks
            if blocks > 110, blocks < 500 {
                chosen = (configuration.gpuMemoryUtilization, blocks)
                break
            }
        }
        let (utilization, blocks) = try #require(chosen)
        // Its blocks, less the watermark V0 keeps free, less vLLM's null block: one block more
        // than that can never be admitted, though it is well inside max_model_len.
        let watermark = Int(0.01 * Double(blocks))
        let promptTokens = (blocks - watermark - 1) * 16 + 1
        let server = try await ServeProcess.start([
            "--accelerator", "l4", "--engine-profile", "vllm-v0", "--gpu-memory-utilization", "\(utilization)", "--max-model-len", "auto",
        ])
        defer { server.stop() }
        let prompt = (0..<promptTokens).map { _ in "1000" }.joined(separator: ",")
        var request = HTTPClientRequest(url: server.base + "/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": [\#(prompt)], "max_tokens": 10, "stop": [" "]}"#))
        // Planned, it would stop at its first space (finish_reason "stop", stop_reason " "); the
        // engine ended it before any token.
        let response = try await HTTPClient.forTests.execute(request, timeout: .seconds(30))
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        #expect(response.status.code == 200, "\(body)")
        let json = try JSONValue.parse(body)
        let choice = try #require(json["choices"]?.array?.first)
        #expect(choice["text"] == .string("") && choice["finish_reason"] == .string("length") && choice["stop_reason"] == .null, "\(body)")
        #expect(json["usage"]?["completion_tokens"] == .integer(0), "\(body)")
        let warning = try await server.waitForLine(within: 10) { $0.contains("Input prompt (\(promptTokens) tokens) + lookahead slots (0) is too long and exceeds the capacity of block_manager") }
        #expect(warning != nil, "\(server.output)")

        // A prompt that fits is answered as V1 would.
        var short = HTTPClientRequest(url: server.base + "/v1/completions")
        short.method = .POST
        short.headers.add(name: "content-type", value: "application/json")
        short.body = .bytes(ByteBuffer(string: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello", "max_tokens": 3, "ignore_eos": true}"#))
        let answered = try await HTTPClient.forTests.execute(short, timeout: .seconds(30))
        let shortBody = String(buffer: try await answered.body.collect(upTo: 1 << 20))
        #expect(try JSONValue.parse(shortBody)["usage"]?["completion_tokens"] == .integer(3), "\(shortBody)")
    }
}
