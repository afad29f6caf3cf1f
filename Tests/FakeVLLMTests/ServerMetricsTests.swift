import AsyncHTTPClient
import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import NIOPosix
import TestSupport
import Testing

@Suite struct ServerMetricsTests {
    /// What GIE's endpoint picker reads, present with the labels it parses.
    @Test func exposesWhatTheEndpointPickerReads() async throws {
        let live = try await LiveServer.start {
            $0.enableLoRA = true
            $0.maxLoras = 2
        }
        defer { Task { try? await live.stop() } }
        let samples = try await live.metrics()
        for name in ["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"] {
            let sample = try #require(samples.first { $0.name == name }, "\(name) missing")
            #expect(sample.labels["model_name"] == "meta-llama/Meta-Llama-3-8B")
            #expect(sample.labels["engine"] == "0")
        }
        let lora = try #require(samples.first { $0.name == "vllm:lora_requests_info" })
        #expect(lora.labels["max_lora"] == "2")
        #expect(lora.labels.keys.contains("running_lora_adapters") && lora.labels.keys.contains("waiting_lora_adapters"))
        #expect(lora.value > 1_700_000_000)  // a Unix timestamp
        let cache = try #require(samples.first { $0.name == "vllm:cache_config_info" })
        #expect(cache.labels["block_size"] == "16")
        #expect(Int(cache.labels["num_gpu_blocks"] ?? "") == live.server.setup.engineConfig.numGPUBlocks)
        #expect(samples.contains { $0.name == "vllm:request_success_total" && $0.labels["finished_reason"] == "abort" })
        #expect(samples.contains { $0.name == "vllm:time_to_first_token_seconds_bucket" && $0.labels["le"] == "2560.0" })
    }

    /// The process families prometheus_client adds to vLLM's page, with this process's numbers.
    @Test func processFamiliesAreThereAsPythonExportsThem() async throws {
        let live = try await LiveServer.start()
        let text = try await live.get("/metrics").body
        let samples = try Prometheus.parse(text)
        func value(_ name: String) -> Double? { samples.first { $0.name == name && $0.labels.isEmpty }?.value }
        let resident = try #require(value("process_resident_memory_bytes"))
        #expect(resident > 1_000_000 && resident <= (value("process_virtual_memory_bytes") ?? 0))
        let start = try #require(value("process_start_time_seconds"))
        #expect(abs(start - Date().timeIntervalSince1970) < 3600)
        #expect((value("process_open_fds") ?? 0) >= 3 && (value("process_max_fds") ?? 0) >= (value("process_open_fds") ?? 0))
        #expect(value("process_cpu_seconds_total") ?? -1 > 0)
        #expect(text.contains("# TYPE process_cpu_seconds_total counter\n"))
        // They come first, as prometheus_client's default registry writes them.
        #expect(text.hasPrefix("# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"))
        try await live.stop()
    }

    /// Under load on an emulated H100: the queue grows past max_num_seqs, KV usage rises with
    /// context, lora_requests_info names running and waiting adapters, and promtool accepts it all.
    @Test func gaugesMoveWithLoadAndPromtoolAcceptsThem() async throws {
        let live = try await LiveServer.start {
            $0.accelerator = "h100-sxm"
            $0.maxNumSeqs = 2
            $0.enableLoRA = true
            $0.maxLoras = 1
            $0.loraModules = [LoRAModule(name: "alpha", path: "/a"), LoRAModule(name: "beta", path: "/b")]
        }
        defer { Task { try? await live.stop() } }
        let idleUsage = try #require(try await live.metric("vllm:kv_cache_usage_perc"))
        async let load: [Int] = withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<6 {
                let model = index % 3 == 0 ? "alpha" : (index % 3 == 1 ? "beta" : "meta-llama/Meta-Llama-3-8B")
                group.addTask {
                    try await live.request("/v1/completions", body: #"{"model":"\#(model)","prompt":"\#(String(repeating: "the cache ", count: 40))","max_tokens":300,"ignore_eos":true}"#).status
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        // Once all six have arrived (on a loaded machine that takes a moment), two run and four wait.
        var text = ""
        var samples: [PrometheusSample] = []
        func value(_ name: String) -> Double? { samples.first { $0.name == name }?.value }
        _ = try await eventually {
            text = try await live.get("/metrics").body
            samples = try Prometheus.parse(text)
            return (value("vllm:num_requests_running") ?? 0) + (value("vllm:num_requests_waiting") ?? 0) == 6
        }
        #expect(value("vllm:num_requests_running") == 2)
        #expect(value("vllm:num_requests_waiting") == 4)
        #expect(try #require(value("vllm:kv_cache_usage_perc")) > idleUsage)
        let latest = try #require(samples.filter { $0.name == "vllm:lora_requests_info" }.max { $0.value < $1.value })
        #expect(!(latest.labels["running_lora_adapters"] ?? "").isEmpty)
        #expect(!(latest.labels["waiting_lora_adapters"] ?? "").isEmpty)
        // promtool 2.42 parses the exposition (exit 1 on a format error) and then lints it
        // (exit 3). vLLM's own names trip two lints that no exact emulation can avoid: the
        // colon in `vllm:` and the histogram `vllm:iteration_tokens_total`. Any other finding fails.
        let findings = try promtoolFindings(text) {
            $0.hasSuffix("metric names should not contain ':'")
                || $0 == #"vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix"#
        }
        #expect(findings.isEmpty, "promtool: \(findings)")

        #expect(try await load == Array(repeating: 200, count: 6))
        #expect(try await live.metric("vllm:num_requests_running") == 0)
        #expect(try await live.metric("vllm:request_success_total", ["finished_reason": "length"]) == 6)
        #expect(try await live.metric("vllm:generation_tokens_total") == 6 * 300)
    }

    /// A client that goes away mid-stream frees its slot and KV blocks at once.
    @Test func disconnectAbortsTheSequence() async throws {
        let live = try await LiveServer.start { $0.accelerator = "h100-sxm" }
        defer { Task { try? await live.stop() } }
        let idleUsage = try #require(try await live.metric("vllm:kv_cache_usage_perc"))
        var request = HTTPClientRequest(url: live.base + "/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"prompt":"\#(String(repeating: "a b ", count: 300))","max_tokens":4000,"ignore_eos":true,"stream":true}"#))
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let response = try await client.execute(request, timeout: .seconds(30))
        var iterator = response.body.makeAsyncIterator()
        _ = try await iterator.next()
        #expect(try await live.metric("vllm:num_requests_running") == 1)
        #expect(try #require(try await live.metric("vllm:kv_cache_usage_perc")) > idleUsage)
        try await client.shutdown()
        var running = 1.0
        _ = try await eventually {
            running = try await live.metric("vllm:num_requests_running") ?? -1
            return running == 0
        }
        #expect(running == 0)
        let usageAfter = try await live.metric("vllm:kv_cache_usage_perc")
        #expect(usageAfter == idleUsage, "KV usage \(String(describing: usageAfter)) after abort, \(idleUsage) idle")
        // vLLM 0.11 does not count client aborts as finished requests.
        #expect(try await live.metric("vllm:request_success_total", ["finished_reason": "abort"]) == 0)
    }

    /// A pipelined request that starts inside the previous response's final write is still
    /// aborted when its client goes away.
    @Test func pipelinedStreamIsAbortedOnDisconnect() async throws {
        let live = try await LiveServer.start { $0.accelerator = "h100-sxm" }
        defer { Task { try? await live.stop() } }
        func post(_ body: String) -> String {
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: live.server.port).get()
        try await channel.writeAndFlush(ByteBuffer(string: post(#"{"prompt":"hi","max_tokens":1}"#)
            + post(#"{"prompt":"hi","max_tokens":3000,"ignore_eos":true,"stream":true}"#))).get()
        var running = 0.0
        _ = try await eventually {
            running = try await live.metric("vllm:num_requests_running") ?? 0
            return running >= 1
        }
        #expect(running == 1)
        try await channel.close().get()
        _ = try await eventually {
            running = try await live.metric("vllm:num_requests_running") ?? -1
            return running == 0
        }
        #expect(running == 0)
    }

    @Test func prefixCacheHitsShowInUsage() async throws {
        let live = try await LiveServer.start { $0.enablePromptTokensDetails = true }
        defer { Task { try? await live.stop() } }
        let body = #"{"prompt":"\#(String(repeating: "shared system prompt ", count: 30))","max_tokens":2}"#
        let first = try await live.request("/v1/completions", body: body).json
        let second = try await live.request("/v1/completions", body: body).json
        #expect(first?["usage"]?["prompt_tokens_details"] == .null)
        let cached = try #require(second?["usage"]?["prompt_tokens_details"]?["cached_tokens"]?.int)
        #expect(cached > 0 && cached % 16 == 0)
        #expect(try #require(try await live.metric("vllm:prefix_cache_hits_total")) == Double(cached))
    }

    /// Per-request histograms are observed as vLLM 0.11 does: n and the most generated tokens
    /// once per prompt, max_tokens once per sequence.
    @Test func requestParameterHistograms() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        #expect(try await live.request("/v1/completions", body: #"{"prompt":"x","n":3,"max_tokens":5,"ignore_eos":true}"#).status == 200)
        #expect(try await live.metric("vllm:request_params_n_count") == 1)
        #expect(try await live.metric("vllm:request_params_n_sum") == 3)
        #expect(try await live.metric("vllm:request_max_num_generation_tokens_sum") == 5)
        #expect(try await live.metric("vllm:request_params_max_tokens_count") == 3)
        #expect(try await live.metric("vllm:request_generation_tokens_sum") == 15)
        #expect(try await live.metric("vllm:e2e_request_latency_seconds_count") == 3)
    }

    @Test func hiddenMetricsAddTheDeprecatedNames() async throws {
        let live = try await LiveServer.start { $0.showHiddenMetricsForVersion = "0.11" }
        defer { Task { try? await live.stop() } }
        let names = Set(try await live.metrics().map(\.name))
        #expect(names.contains("vllm:gpu_cache_usage_perc"))
        #expect(names.contains("vllm:time_per_output_token_seconds_count"))
    }
}
