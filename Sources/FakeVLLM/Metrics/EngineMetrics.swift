import Foundation
import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore

/// vLLM V1's Prometheus metrics for one engine (reference/vllm-metrics.md §2–4), updated from
/// each step's outcome and rendered for /metrics. Names, labels, help texts and bucket sets are
/// vLLM's; counters are exposed with `_total`. Not thread-safe: the engine's driver owns it.
public final class EngineMetrics {
    /// Bucket sets of vllm-metrics.md §1.
    public enum Buckets {
        public static let ttft = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
        public static let itl = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0]
        public static let request = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
        public static let iteration = [1.0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
        public static let n = [1.0, 2, 5, 10, 20]

        /// vLLM's `build_1_2_5_buckets(max_value)`: 1, 2, 5, 10, 20, 50, … up to `max_value`.
        public static func oneTwoFive(upTo maxValue: Int) -> [Double] {
            var bounds: [Double] = []
            var exponent = 0.0
            while true {
                for mantissa in [1.0, 2.0, 5.0] {
                    let value = mantissa * Foundation.pow(10, exponent)
                    if value > Double(maxValue) { return bounds }
                    bounds.append(value)
                }
                exponent += 1
            }
        }
    }

    /// The `finished_reason` children vLLM 0.11 pre-creates.
    static let successReasons: [FinishReason] = [.stop, .length, .abort]

    /// What `--show-hidden-metrics-for-version` asks for: the deprecated aliases.
    public var showHiddenMetrics: Bool

    private let labels: [(String, String)]
    private let engineLabel: String
    private let cacheConfigLabels: [(String, String)]
    private let maxLoras: Int?
    /// `{engine="0",model_name="…"}`, rendered once.
    private let baseLabels: String
    /// Pre-rendered lines of every histogram, by metric name.
    private var histogramLines: [String: HistogramLines] = [:]
    /// The last page rendered, until a recorded change makes it stale: an idle pod is scraped 20
    /// times a second and its page does not change. Readable from any thread, so a fleet's
    /// in-process scrape of an idle pod needs no hop to its event loop.
    let renderedPage = PublishedPage()
    /// When the series were created: prometheus_client exposes it as `<name>_created`.
    private let createdAt: Double

    // Gauges, refreshed after each step.
    private var running = 0.0
    private var waiting = 0.0
    private var kvUsage = 0.0
    // lora_requests_info keeps one series per label set ever seen, each holding the time it was last set.
    /// Every LoRA label set shown so far (vLLM never drops one): its line's `name{labels} `
    /// prefix, the time it was last current, and the whole line as last rendered (most series
    /// never change again, and a busy multi-adapter pod shows hundreds).
    private var loraSeries: [(prefix: String, time: Double, line: String?)] = []
    private var loraSeriesIndex: [String: Int] = [:]

    // Counters.
    private var promptTokens = 0.0
    private var generationTokens = 0.0
    private var preemptions = 0.0
    private var prefixQueries = 0.0
    private var prefixHits = 0.0
    private var promptTokensComputed = 0.0
    private var promptTokensCacheHit = 0.0
    private var promptTokensRecomputed = 0.0
    private var success: [FinishReason: Double] = [:]

    // Histograms.
    private var ttft = PrometheusHistogram(upperBounds: Buckets.ttft)
    private var itl = PrometheusHistogram(upperBounds: Buckets.itl)
    private var tpot = PrometheusHistogram(upperBounds: Buckets.itl)
    private var e2e = PrometheusHistogram(upperBounds: Buckets.request)
    private var queueTime = PrometheusHistogram(upperBounds: Buckets.request)
    private var inferenceTime = PrometheusHistogram(upperBounds: Buckets.request)
    private var prefillTime = PrometheusHistogram(upperBounds: Buckets.request)
    private var decodeTime = PrometheusHistogram(upperBounds: Buckets.request)
    private var requestPromptTokens: PrometheusHistogram
    private var requestGenerationTokens: PrometheusHistogram
    private var maxGenerationTokens: PrometheusHistogram
    private var paramsMaxTokens: PrometheusHistogram
    private var prefillKVComputed: PrometheusHistogram
    private var paramsN = PrometheusHistogram(upperBounds: Buckets.n)
    private var iterationTokens = PrometheusHistogram(upperBounds: Buckets.iteration)

    public init(
        modelName: String, engineIndex: Int = 0, config: EngineConfig, gpuMemoryUtilization: Double, cacheDtype: String = "auto",
        showHiddenMetrics: Bool = false
    ) {
        engineLabel = String(engineIndex)
        labels = [("model_name", modelName), ("engine", engineLabel)]
        baseLabels = Prometheus.labels(labels)
        createdAt = Date().timeIntervalSince1970
        self.showHiddenMetrics = showHiddenMetrics
        maxLoras = config.maxLoras > 0 ? config.maxLoras : nil
        let lengthBuckets = Buckets.oneTwoFive(upTo: config.maxModelLen)
        requestPromptTokens = PrometheusHistogram(upperBounds: lengthBuckets)
        requestGenerationTokens = PrometheusHistogram(upperBounds: lengthBuckets)
        maxGenerationTokens = PrometheusHistogram(upperBounds: lengthBuckets)
        paramsMaxTokens = PrometheusHistogram(upperBounds: lengthBuckets)
        prefillKVComputed = PrometheusHistogram(upperBounds: lengthBuckets)
        // vLLM 0.11.0's CacheConfig.metrics_info(): every dataclass field in declaration order,
        // str()-ed as Python does, then the engine index.
        cacheConfigLabels = [
            ("block_size", String(config.blockSize)),
            ("gpu_memory_utilization", String(gpuMemoryUtilization)),
            ("swap_space", "4.0"),
            ("cache_dtype", cacheDtype),
            ("is_attention_free", "False"),
            ("num_gpu_blocks_override", "None"),
            ("sliding_window", "None"),
            ("enable_prefix_caching", config.enablePrefixCaching ? "True" : "False"),
            ("prefix_caching_hash_algo", "sha256"),
            ("cpu_offload_gb", "0.0"),
            ("calculate_kv_scales", "False"),
            ("cpu_kvcache_space_bytes", "None"),
            ("mamba_page_size_padded", "None"),
            ("mamba_cache_dtype", "auto"),
            ("mamba_ssm_cache_dtype", "auto"),
            ("num_gpu_blocks", String(config.numGPUBlocks)),
            ("num_cpu_blocks", "0"),
            ("kv_sharing_fast_prefill", "False"),
            ("kv_cache_memory_bytes", "None"),
            ("engine", engineLabel),
        ]
        for reason in FinishReason.allCases { success[reason] = 0 }
        if let maxLoras {
            loraSeries.append((Self.loraPrefix(maxLoras: maxLoras, running: "", waiting: ""), createdAt, nil))
            loraSeriesIndex["\u{0}"] = 0
        }
        let histograms: [(String, [Double])] = [
            ("vllm:time_to_first_token_seconds", Buckets.ttft), ("vllm:inter_token_latency_seconds", Buckets.itl),
            ("vllm:time_per_output_token_seconds", Buckets.itl), ("vllm:request_time_per_output_token_seconds", Buckets.itl),
            ("vllm:e2e_request_latency_seconds", Buckets.request), ("vllm:request_queue_time_seconds", Buckets.request),
            ("vllm:request_inference_time_seconds", Buckets.request), ("vllm:request_prefill_time_seconds", Buckets.request),
            ("vllm:request_decode_time_seconds", Buckets.request), ("vllm:request_prompt_tokens", lengthBuckets),
            ("vllm:request_generation_tokens", lengthBuckets), ("vllm:request_max_num_generation_tokens", lengthBuckets),
            ("vllm:request_params_n", Buckets.n), ("vllm:request_params_max_tokens", lengthBuckets),
            ("vllm:iteration_tokens_total", Buckets.iteration), ("vllm:request_prefill_kv_computed_tokens", lengthBuckets),
        ]
        for (name, bounds) in histograms {
            histogramLines[name] = HistogramLines(name: name, labels: labels, upperBounds: bounds)
        }
    }

    // MARK: Updates

    /// Records one step: tokens, cache stats, per-token latencies and finished requests, then
    /// refreshes the gauges from the engine.
    public func record(_ outcome: StepOutcome, engine: Engine, wallClock: Double) {
        renderedPage.current = nil
        // vLLM 0.11 counts a prompt when its first token appears, and observes that count plus
        // the generated tokens as the iteration's tokens (not the tokens computed in the step).
        iterationTokens.observe(Double(outcome.promptTokensCompleted + outcome.generatedTokens))
        promptTokens += Double(outcome.promptTokensCompleted)
        generationTokens += Double(outcome.generatedTokens)
        preemptions += Double(outcome.preemptions)
        prefixQueries += Double(outcome.prefixCacheQueries)
        prefixHits += Double(outcome.prefixCacheHits)
        for progress in outcome.progress where !progress.newTokens.isEmpty {
            if let previous = progress.previousTokenTime {
                itl.observe(outcome.end - previous)
            } else {
                ttft.observe(outcome.end - progress.arrival)
            }
        }
        for finished in outcome.finished { recordFinished(finished) }
        refreshGauges(engine, wallClock: wallClock)
    }

    /// Records a request leaving the engine (finished, or aborted when its client went away).
    public func recordFinished(_ finished: FinishedRequest) {
        renderedPage.current = nil
        // vLLM 0.11 records finished-request stats only for requests the engine finished; a
        // client's disconnect aborts without touching request_success or the histograms.
        guard finished.reason != .abort else { return }
        success[finished.reason, default: 0] += 1
        let times = finished.times
        e2e.observe(finished.finishTime - times.arrival)
        if let scheduled = times.firstScheduled {
            queueTime.observe(scheduled - times.arrival)
            if let first = times.firstToken, let last = times.lastToken {
                prefillTime.observe(first - scheduled)
                decodeTime.observe(last - first)
                inferenceTime.observe(last - scheduled)
                let decode = last - first
                tpot.observe(finished.generatedTokens > 1 ? decode / Double(finished.generatedTokens - 1) : 0)
            }
        }
        requestPromptTokens.observe(Double(finished.promptTokens))
        requestGenerationTokens.observe(Double(finished.generatedTokens))
        if let maxTokens = finished.maxTokensParam, maxTokens > 0 { paramsMaxTokens.observe(Double(maxTokens)) }
        let computed = finished.promptTokens - finished.cachedPromptTokens
        prefillKVComputed.observe(Double(computed))
        promptTokensComputed += Double(computed)
        promptTokensCacheHit += Double(finished.cachedPromptTokens)
        promptTokensRecomputed += Double(finished.recomputedPromptTokens)
    }

    /// Records a prompt whose `n` sequences have all finished, as vLLM's parent request:
    /// its `n` and the most tokens any of its sequences generated.
    public func recordParentFinished(n: Int, maxGeneratedTokens: Int) {
        renderedPage.current = nil
        paramsN.observe(Double(n))
        maxGenerationTokens.observe(Double(maxGeneratedTokens))
    }

    /// Reads running/waiting/KV usage and the adapter lists from the engine.
    public func refreshGauges(_ engine: Engine, wallClock: Double) {
        renderedPage.current = nil
        running = Double(engine.numRunning)
        waiting = Double(engine.numWaiting)
        kvUsage = engine.kvCacheUsage
        guard let maxLoras else { return }
        let runningNames = engine.runningAdapters.joined(separator: ",")
        let waitingNames = engine.waitingAdapters.joined(separator: ",")
        let key = runningNames + "\u{0}" + waitingNames
        if let index = loraSeriesIndex[key] {
            loraSeries[index].time = wallClock
            loraSeries[index].line = nil
        } else {
            loraSeriesIndex[key] = loraSeries.count
            loraSeries.append((Self.loraPrefix(maxLoras: maxLoras, running: runningNames, waiting: waitingNames), wallClock, nil))
        }
    }

    private static func loraPrefix(maxLoras: Int, running: String, waiting: String) -> String {
        "vllm:lora_requests_info" + Prometheus.labels([
            ("max_lora", String(maxLoras)), ("waiting_lora_adapters", waiting), ("running_lora_adapters", running),
        ]) + " "
    }

    // MARK: Exposition

    /// The /metrics body.
    /// The counters the periodic stats line is computed from, as they stand.
    var statsTotals: EngineStatsLine.Totals {
        .init(promptTokens: promptTokens, generationTokens: generationTokens, prefixQueries: prefixQueries, prefixHits: prefixHits)
    }

    public func render() -> ByteBuffer {
        if let page = renderedPage.current { return page }
        let page = renderPage()
        renderedPage.current = page
        return page
    }

    private func renderPage() -> ByteBuffer {
        var out = PrometheusWriter(buffer: ByteBuffer())
        out.buffer.reserveCapacity(24 * 1024)
        gauge(&out, "vllm:num_requests_running", "Number of requests in model execution batches.", running)
        gauge(&out, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
        out.family("vllm:num_requests_waiting_by_reason", help: "Number of requests waiting to be processed, by reason.", type: .gauge)
        out.sample("vllm:num_requests_waiting_by_reason", labels: labels + [("reason", "capacity")], value: waiting)
        out.sample("vllm:num_requests_waiting_by_reason", labels: labels + [("reason", "deferred")], value: 0)
        gauge(&out, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kvUsage)
        if showHiddenMetrics {
            // Help texts exactly as vLLM 0.11.0 concatenates them (no space before DEPRECATED).
            gauge(&out, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.", kvUsage)
        }
        out.family("vllm:engine_sleep_state", help: "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.", type: .gauge)
        for (state, value) in [("awake", 1.0), ("weights_offloaded", 0), ("discard_all", 0)] {
            out.sample("vllm:engine_sleep_state", labels: labels + [("sleep_state", state)], value: value)
        }
        if maxLoras != nil {
            out.family("vllm:lora_requests_info", help: "Running stats on lora requests.", type: .gauge)
            for index in loraSeries.indices {
                if loraSeries[index].line == nil {
                    loraSeries[index].line = loraSeries[index].prefix + out.style.format(loraSeries[index].time) + "\n"
                }
                out.buffer.writeString(loraSeries[index].line!)
            }
        }
        out.family("vllm:cache_config_info", help: "Information of the LLMEngine CacheConfig", type: .gauge)
        out.sample("vllm:cache_config_info", labels: cacheConfigLabels, value: 1)

        counter(&out, "vllm:prompt_tokens", "Number of prefill tokens processed.", promptTokens)
        counter(&out, "vllm:generation_tokens", "Number of generation tokens processed.", generationTokens)
        out.family("vllm:request_success_total", help: "Count of successfully processed requests.", type: .counter)
        for reason in EngineMetrics.successReasons {
            out.sample("vllm:request_success_total", labels: labels + [("finished_reason", reason.rawValue)], value: success[reason] ?? 0)
        }
        out.family("vllm:request_success_created", help: "Count of successfully processed requests.", type: .gauge)
        for reason in EngineMetrics.successReasons {
            out.sample("vllm:request_success_created", labels: labels + [("finished_reason", reason.rawValue)], value: createdAt)
        }
        counter(&out, "vllm:num_preemptions", "Cumulative number of preemption from the engine.", preemptions)
        counter(&out, "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", prefixQueries)
        counter(&out, "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", prefixHits)
        if showHiddenMetrics {
            counter(&out, "vllm:gpu_prefix_cache_queries", "GPU prefix cache queries, in terms of number of queriedtokens. DEPRECATED: Use vllm:prefix_cache_queries instead.", prefixQueries)
            counter(&out, "vllm:gpu_prefix_cache_hits", "GPU prefix cache hits, in terms of number of cached tokens. DEPRECATED: Use vllm:prefix_cache_hits instead.", prefixHits)
        }
        counter(&out, "vllm:external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.", 0)
        counter(&out, "vllm:external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.", 0)
        out.family("vllm:prompt_tokens_by_source_total", help: "Number of prompt tokens by source.", type: .counter)
        for (source, value) in [("local_compute", promptTokensComputed), ("local_cache_hit", promptTokensCacheHit), ("external_kv_transfer", 0)] {
            out.sample("vllm:prompt_tokens_by_source_total", labels: labels + [("source", source)], value: value)
        }
        counter(&out, "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).", promptTokensCacheHit)
        counter(&out, "vllm:prompt_tokens_recomputed", "Number of cached tokens recomputed for forward pass.", promptTokensRecomputed)

        histogram(&out, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft)
        histogram(&out, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl)
        if showHiddenMetrics {
            histogram(&out, "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.DEPRECATED: Use vllm:inter_token_latency_seconds instead.", itl)
        }
        histogram(&out, "vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", tpot)
        histogram(&out, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", e2e)
        histogram(&out, "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", queueTime)
        histogram(&out, "vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", inferenceTime)
        histogram(&out, "vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", prefillTime)
        histogram(&out, "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", decodeTime)
        histogram(&out, "vllm:request_prompt_tokens", "Number of prefill tokens processed.", requestPromptTokens)
        histogram(&out, "vllm:request_generation_tokens", "Number of generation tokens processed.", requestGenerationTokens)
        histogram(&out, "vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", maxGenerationTokens)
        histogram(&out, "vllm:request_params_n", "Histogram of the n request parameter.", paramsN)
        histogram(&out, "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", paramsMaxTokens)
        histogram(&out, "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", iterationTokens)
        histogram(&out, "vllm:request_prefill_kv_computed_tokens", "Histogram of new KV tokens computed during prefill (excluding cached tokens).", prefillKVComputed)
        return out.buffer
    }

    private func gauge(_ out: inout PrometheusWriter, _ name: String, _ help: String, _ value: Double) {
        out.family(name, help: help, type: .gauge)
        out.line(name + baseLabels + " ", value)
    }

    /// A counter as prometheus_client exposes it: `<name>_total`, then its `<name>_created` gauge.
    private func counter(_ out: inout PrometheusWriter, _ name: String, _ help: String, _ value: Double) {
        out.family(name + "_total", help: help, type: .counter)
        out.line(name + "_total" + baseLabels + " ", value)
        created(&out, name, help)
    }

    private func histogram(_ out: inout PrometheusWriter, _ name: String, _ help: String, _ histogram: PrometheusHistogram) {
        out.family(name, help: help, type: .histogram)
        out.histogram(histogramLines[name]!, histogram)
        created(&out, name, help)
    }

    private func created(_ out: inout PrometheusWriter, _ name: String, _ help: String) {
        out.family(name + "_created", help: help, type: .gauge)
        out.line(name + "_created" + baseLabels + " ", createdAt)
    }
}

/// A rendered metrics page shared across threads: written on the pod's loop, read by anyone.
final class PublishedPage: Sendable {
    private let page = NIOLockedValueBox<ByteBuffer?>(nil)

    var current: ByteBuffer? {
        get { page.withLockedValue { $0 } }
        set { page.withLockedValue { $0 = newValue } }
    }
}
