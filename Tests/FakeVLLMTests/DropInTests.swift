import AsyncHTTPClient
@testable import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import TestSupport
import Testing

/// `understudy serve` started as `vllm serve` and llm-d-inference-sim are started.
@Suite struct DropInTests {
    static func get(_ url: String) async throws -> (status: Int, body: String) {
        let response = try await HTTPClient.forTests.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    @Test func aVLLMServeCommandLineStarts() async throws {
        let server = try await ServeProcess.start([
            "meta-llama/Meta-Llama-3-8B", "--dtype", "auto", "--trust-remote-code", "--enforce-eager", "--accelerator", "instant",
            "--enable-chunked-prefill", "--swap-space", "16", "--chat-template", "/nonexistent/template.jinja", "--disable-log-requests",
            "--uvicorn-log-level", "warning", "--max_num_seqs", "64", "-tp", "1",
        ])
        defer { server.stop() }
        let models = try await Self.get(server.base + "/v1/models")
        #expect(models.status == 200)
        #expect(try JSONValue.parse(models.body)["data"]?.array?.first?["id"]?.string == "meta-llama/Meta-Llama-3-8B")
        // Underscored names are vLLM's too; the no-effect flags are named, not silently dropped.
        #expect(server.output.contains("max_num_seqs 64"))
        #expect(server.output.contains("accepted with no effect on the emulation: --trust-remote-code, --enforce-eager"))
    }

    /// GIE v1.5.0's config/manifests/vllm/sim-deployment.yaml, arguments as written (the port
    /// aside): an llm-d-inference-sim command line.
    @Test func giesSimDeploymentArgumentsServeItsAdapter() async throws {
        let manifest = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("reference/gie-examples/v1.5.0_config_manifests_vllm_sim-deployment.yaml"), encoding: .utf8)
        let arguments = Self.containerArguments(manifest).map { $0 == "8000" ? "0" : $0 }
        #expect(arguments.contains("--lora-modules"))
        let server = try await ServeProcess.start(arguments + ["--accelerator", "instant"])
        defer { server.stop() }
        let models = try JSONValue.parse(try await Self.get(server.base + "/v1/models").body)
        let ids = models["data"]?.array?.compactMap { $0["id"]?.string } ?? []
        #expect(ids == ["Qwen/Qwen3-32B", "food-review-1"])
        // The profile was derived from the name, and the log says so.
        #expect(server.output.contains("assumed the qwen3 family's published 32B architecture"))
    }

    @Test func aModelThatNamesNoFamilyIsRefusedWithTheWayOut() async throws {
        let result = try await ServeProcess.runToExit(["acme/unknown-model", "--port", "0"])
        #expect(result.status != 0)
        #expect(result.output.contains("no model profile matches --model acme/unknown-model"))
        #expect(result.output.contains("--model-profile"))
    }

    @Test func anUnknownVLLMFlagIsStillRefused() async throws {
        let result = try await ServeProcess.runToExit(["meta-llama/Meta-Llama-3-8B", "--no-such-flag", "--port", "0"])
        #expect(result.status != 0)
        #expect(result.output.contains("--no-such-flag"))
    }

    /// The `args:` list of the manifest's first container.
    static func containerArguments(_ manifest: String) -> [String] {
        var arguments: [String] = []
        var inArgs = false
        for line in manifest.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed == "args:" {
                inArgs = true
            } else if inArgs, trimmed.hasPrefix("- ") {
                var value = String(trimmed.dropFirst(2))
                if value.count >= 2, let first = value.first, first == "'" || first == "\"", value.last == first {
                    value = String(value.dropFirst().dropLast())
                }
                arguments.append(value)
            } else if inArgs {
                break
            }
        }
        return arguments
    }

    @Test func vllmCommandLinesAreNormalized() {
        let result = VLLMCommandLine.normalize([
            "--model", "m", "--max_num_seqs=8", "-tp", "2", "-O3", "--dtype", "auto", "--trust-remote-code", "--no-enable-chunked-prefill",
            "--hf-token", "secret", "--chat-template=t.jinja", "--port", "9",
        ])
        #expect(result.arguments == ["--model", "m", "--max-num-seqs=8", "--tensor-parallel-size", "2", "--dtype", "auto", "--port", "9"])
        #expect(result.ignored == ["-O3", "--trust-remote-code", "--no-enable-chunked-prefill", "--hf-token", "--chat-template=t.jinja"])
    }

    @Test(arguments: [
        ("Qwen/Qwen3-32B", 64, 5120, 151_936, true),
        ("meta-llama/Llama-3.2-1B-Instruct", 16, 2048, 128_256, true),
        ("Qwen/Qwen2.5-0.5B-Instruct", 24, 896, 151_936, true),
        ("meta-llama/Llama-2-13b-chat-hf", 40, 5120, 32_000, true),
        // Not a published size: the nearest size's layer shape, layers scaled to the count.
        // 14B shape: (16e9 − 2 × 151936 × 5120 embeddings) / 330.3M per layer ≈ 43.7 layers.
        ("Qwen/Qwen3-16B", 44, 5120, 151_936, false),
    ])
    func profilesAreDerivedFromAModelsName(name: String, layers: Int, hidden: Int, vocab: Int, published: Bool) throws {
        let families = try LiveServer.profiles.modelFamilyNames().map(LiveServer.profiles.modelFamily)
        let derived = try #require(ModelProfile.fromName(name, families: families))
        #expect(derived.profile.layers == layers)
        #expect(derived.profile.hidden == hidden)
        #expect(derived.profile.vocab == vocab)
        #expect(derived.assumption.contains(published ? "published" : "scaled"))
        if !published {
            // The scaled model has about the parameters its name states.
            #expect(abs(derived.profile.parameterCount / 16e9 - 1) < 0.05)
        }
    }

    @Test func aLocalModelDirectorysConfigIsRead() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Mistral 7B v0.3's config.json, abridged.
        let config = #"{"architectures":["MistralForCausalLM"],"hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":32768,"num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"torch_dtype":"bfloat16","vocab_size":32768,"tie_word_embeddings":false}"#
        try Data(config.utf8).write(to: directory.appendingPathComponent("config.json"))
        let derived = try #require(try LiveServer.profiles.derivedModel(for: directory.path))
        #expect(derived.profile.vocab == 32768)
        #expect(derived.profile.kvHeads == 8)
        #expect(derived.profile.headDim == 128)
        #expect(derived.profile.maxModelLen == 32768)
        let moe = #"{"hidden_size":4096,"intermediate_size":14336,"num_attention_heads":32,"num_hidden_layers":32,"vocab_size":32000,"num_local_experts":8}"#
        #expect(throws: ProfileError.self) { try ModelProfile.fromHuggingFaceConfig(Data(moe.utf8), modelID: "mixtral", file: "config.json") }
    }

    @Test func parameterCountsAreReadFromNames() {
        #expect(ModelProfile.parameterBillions(in: "llama-3.2-1b-instruct") == 1)
        #expect(ModelProfile.parameterBillions(in: "qwen2.5-0.5b") == 0.5)
        #expect(ModelProfile.parameterBillions(in: "qwen3-32b") == 32)
        #expect(ModelProfile.parameterBillions(in: "gpt2") == nil)
        #expect(ModelProfile.parameterBillions(in: "model-7bit") == nil)
    }

    @Test func greedyDecodingRepeatsItselfAcrossPods() async throws {
        let first = try await LiveServer.start()
        let second = try await LiveServer.start()
        let body = #"{"model":"meta-llama/Meta-Llama-3-8B","prompt":"The capital of France is","max_tokens":24,"temperature":0}"#
        let a = try await first.request("/v1/completions", body: body).json
        let b = try await first.request("/v1/completions", body: body).json
        let c = try await second.request("/v1/completions", body: body).json
        let text = a?["choices"]?.array?.first?["text"]?.string
        #expect(text != nil && text == b?["choices"]?.array?.first?["text"]?.string)
        #expect(text == c?["choices"]?.array?.first?["text"]?.string)
        // Sampling (the default temperature) still varies.
        let sampled = #"{"model":"meta-llama/Meta-Llama-3-8B","prompt":"The capital of France is","max_tokens":24}"#
        var texts: Set<String> = []
        for _ in 0..<4 { texts.insert(try await first.request("/v1/completions", body: sampled).json?["choices"]?.array?.first?["text"]?.string ?? "") }
        #expect(texts.count > 1)
        // Ids never repeat across pods, as uuid4s do not.
        #expect(a?["id"]?.string != c?["id"]?.string)
        try await first.stop()
        try await second.stop()
    }

    /// What a text-only generative model cannot do, refused in vLLM 0.11.0's words.
    @Test func embeddingsAndMediaAreRefusedAsVLLMRefusesThem() async throws {
        let live = try await LiveServer.start()
        let embeddings = try await live.request("/v1/embeddings", body: #"{"model": "meta-llama/Meta-Llama-3-8B", "input": "hello"}"#)
        // 0.11.0 sends this error object with status 200 (its route returns it unwrapped).
        #expect(embeddings.status == 200)
        #expect(embeddings.json?["error"]?["message"]?.string == "The model does not support Embeddings API")
        #expect(embeddings.json?["error"]?["code"]?.int == 400)
        let missing = try await live.request("/v1/embeddings", body: #"{"model": "m"}"#)
        #expect(missing.status == 400)
        #expect(missing.json?["error"]?["message"]?.string?.contains("('body', 'EmbeddingCompletionRequest', 'input')") == true)
        for part in [
            #"{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}"#,
            #"{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}"#,
        ] {
            let chat = try await live.request(
                "/v1/chat/completions",
                body: #"{"model": "meta-llama/Meta-Llama-3-8B", "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, \#(part)]}]}"#)
            #expect(chat.status == 400)
            #expect(chat.json?["error"]?["message"]?.string == "meta-llama/Meta-Llama-3-8B is not a multimodal model None")
            #expect(chat.json?["error"]?["type"]?.string == "BadRequestError")
        }
        try await live.stop()
    }

    /// With the model's tokenizer.json, ids, counts and the text written are that tokenizer's: a
    /// client that counts streamed text with it (as inference-perf does) agrees with usage.
    @Test func aModelsOwnTokenizerCountsAndWrites() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("tokenizer.json")
        try TokenizerFixtures.byteLevelFile().write(to: file)
        let live = try await LiveServer.start { $0.tokenizer = directory.path }
        // 267 <|begin_of_text|>, 259 hello, 265 Ġworld (TokenizerFixtures.byteLevelFile).
        let tokenized = try await live.request("/tokenize", body: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "hello world"}"#).json
        #expect(tokenized?["tokens"] == .array([267, 259, 265]))
        let completion = try await live.request(
            "/v1/completions", body: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "hello world", "max_tokens": 12, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}"#)
        let events = completion.body.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }.compactMap { try? JSONValue.parse(String($0.dropFirst(6))) }
        let usage = try #require(events.last?["usage"])
        #expect(usage["prompt_tokens"]?.int == 3 && usage["completion_tokens"]?.int == 12)
        let tokenizer = try HuggingFaceTokenizer(contentsOf: file)
        let recounted = events.compactMap { $0["choices"]?.array?.first?["text"]?.string }
            .reduce(0) { $0 + tokenizer.encode($1, addSpecialTokens: false).count }
        #expect(recounted == 12)
        try await live.stop()
        // A file that is not a tokenizer is refused when the server starts, naming it.
        try Data("{}".utf8).write(to: file)
        await #expect(throws: ProfileError.self) { try await LiveServer.start { $0.tokenizer = file.path } }
    }
}
