@testable import Gateway
import Testing

@Suite struct MetricsExtractorTests {
    /// vLLM's exposition (vllm-metrics.md §8, plus two lora series and cache_config_info).
    static let vllmText = """
        # HELP vllm:num_requests_running Number of requests in model execution batches.
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{engine="0",model_name="m"} 3.0
        vllm:num_requests_waiting{engine="0",model_name="m"} 7.0
        vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.0421
        vllm:lora_requests_info{max_lora="2",running_lora_adapters="sql-lora",waiting_lora_adapters=""} 1.755e+09
        vllm:lora_requests_info{max_lora="2",running_lora_adapters="sql-lora,chat",waiting_lora_adapters="x"} 1.756e+09
        vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="28235"} 1.0
        """

    @Test func readsWhatThePickerNeedsFromVLLM() throws {
        let metrics = try MetricsExtractor.extract(Self.vllmText, now: 5)
        #expect(metrics.runningRequestsSize == 3)
        #expect(metrics.waitingQueueSize == 7)
        #expect(metrics.kvCacheUsage == 0.0421)
        // The newest lora_requests_info series wins.
        #expect(metrics.activeAdapters == ["sql-lora", "chat"])
        #expect(metrics.waitingAdapters == ["x"])
        #expect(metrics.maxActiveAdapters == 2)
        #expect(metrics.blockSize == 16 && metrics.numGPUBlocks == 28235)
        #expect(metrics.updateTime == 5)
    }

    @Test func otherEnginesByTheirMapping() throws {
        let triton = """
            nv_trt_llm_request_metrics{request_type="waiting"} 4
            nv_trt_llm_request_metrics{request_type="scheduled"} 9
            nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"} 0.5
            """
        let metrics = try MetricsExtractor.extract(triton, mapping: .forEngine("triton-tensorrt-llm"), now: 0)
        #expect(metrics.waitingQueueSize == 4 && metrics.runningRequestsSize == 9 && metrics.kvCacheUsage == 0.5)
    }

    @Test func aMissingFamilyIsAnError() {
        #expect(throws: MetricsExtractionError.self) { try MetricsExtractor.extract("other_metric 1", now: 0) }
    }

    @Test(arguments: ["NaN", "+Inf", "-1", "1e30"])
    func aCountThatIsNoCountIsAnErrorNotACrash(_ value: String) {
        let page = "vllm:num_requests_running{model_name=\"m\"} 0\nvllm:num_requests_waiting{model_name=\"m\"} \(value)\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0\n"
        #expect(throws: MetricsExtractionError.self) { try MetricsExtractor.extract(page, now: 0) }
    }
}
