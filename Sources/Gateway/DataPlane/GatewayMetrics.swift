import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore

/// GIE's EPP metrics (v1.5-era names, labels, HELP texts and buckets): per objective, per pool
/// and the scheduler's own. Recorded from every event loop under one lock. As in GIE, a request
/// is counted in `request_total` once it is scheduled, and refusals only in
/// `request_error_total`. The pool gauges are computed from the fresh candidates when scraped
/// (GIE refreshes them every 5 s from pods fresher than 2 s; scraping is the finer view).
public final class GatewayMetrics: Sendable {
    public enum Outcome: Sendable, Equatable {
        case success
        /// The client went away.
        case cancelled
        /// Ended with an error of this GIE code.
        case error(String)
    }

    private let poolName: String
    private let datastore: Datastore
    private let state = NIOLockedValueBox(State())

    struct ModelKey: Hashable {
        var model: String
        var target: String
    }

    struct State {
        var requests: [ModelKey: [Int: Double]] = [:]
        var errors: [ModelKey: [String: Double]] = [:]
        var durations: [ModelKey: PrometheusHistogram] = [:]
        var requestSizes: [ModelKey: PrometheusHistogram] = [:]
        var responseSizes: [ModelKey: PrometheusHistogram] = [:]
        var inputTokens: [ModelKey: PrometheusHistogram] = [:]
        var outputTokens: [ModelKey: PrometheusHistogram] = [:]
        var cachedTokens: [ModelKey: PrometheusHistogram] = [:]
        var normalizedTimePerOutputToken: [ModelKey: PrometheusHistogram] = [:]
        var running: [String: Double] = [:]
        var schedulerDuration = PrometheusHistogram(upperBounds: GatewayMetrics.schedulerBuckets)
        /// By status, target model and picked endpoint (pod, namespace, port).
        var schedulerAttempts: [[String]: Double] = [:]
    }

    public init(poolName: String, datastore: Datastore) {
        self.poolName = poolName
        self.datastore = datastore
    }

    /// Inference requests being proxied now, over every model.
    public var requestsInFlight: Int { state.withLockedValue { Int($0.running.values.reduce(0, +)) } }

    // MARK: Recording

    func requestStarted(_ model: String?, _ target: String?, priority: Int, requestBytes: Int) {
        let key = ModelKey(model: model ?? "", target: target ?? "")
        state.withLockedValue { state in
            state.requests[key, default: [:]][priority, default: 0] += 1
            state.running[key.model, default: 0] += 1
            state.requestSizes[key, default: PrometheusHistogram(upperBounds: Self.requestSizeBuckets)].observe(Double(requestBytes))
        }
    }

    /// Refused before reaching an endpoint (bad body, unknown model, shed, no endpoint).
    func requestRejected(_ model: String?, _ target: String?, code: String) {
        let key = ModelKey(model: model ?? "", target: target ?? "")
        state.withLockedValue { $0.errors[key, default: [:]][code, default: 0] += 1 }
    }

    func requestFinished(
        _ model: String?, _ target: String?, outcome: Outcome, status: Int, seconds: Double, responseBytes: Int, usage: UsageScanner.Usage?
    ) {
        let key = ModelKey(model: model ?? "", target: target ?? "")
        state.withLockedValue { state in
            state.running[key.model, default: 0] -= 1
            switch outcome {
            case .error(let code):
                state.errors[key, default: [:]][code, default: 0] += 1
                return
            case .cancelled:
                return
            case .success where status != 200:
                state.errors[key, default: [:]]["ModelServerError", default: 0] += 1
                return
            case .success:
                break
            }
            state.durations[key, default: PrometheusHistogram(upperBounds: Self.durationBuckets)].observe(seconds)
            state.responseSizes[key, default: PrometheusHistogram(upperBounds: Self.responseSizeBuckets)].observe(Double(responseBytes))
            if let usage {
                if usage.promptTokens > 0 {
                    state.inputTokens[key, default: PrometheusHistogram(upperBounds: Self.inputTokenBuckets)].observe(Double(usage.promptTokens))
                }
                if usage.completionTokens > 0 {
                    state.outputTokens[key, default: PrometheusHistogram(upperBounds: Self.outputTokenBuckets)].observe(Double(usage.completionTokens))
                }
                if let cached = usage.cachedTokens {
                    state.cachedTokens[key, default: PrometheusHistogram(upperBounds: Self.inputTokenBuckets)].observe(Double(cached))
                }
                if usage.completionTokens > 0 {
                    state.normalizedTimePerOutputToken[key, default: PrometheusHistogram(upperBounds: Self.ntpotBuckets)]
                        .observe(seconds / Double(usage.completionTokens))
                }
            }
        }
    }

    func observeScheduling(_ duration: Duration, decision: RoutingDecision, namespace: String) {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        // Label values in the order of `schedulerAttemptLabels`.
        var labels = ["failure", "", "", "", ""]
        if case .route(let endpoints, let target, _, _) = decision, let picked = endpoints.first {
            let port = picked.address.lastIndex(of: ":").map { String(picked.address[picked.address.index(after: $0)...]) } ?? ""
            labels = ["success", target, picked.podName, namespace, port]
        }
        state.withLockedValue { state in
            state.schedulerDuration.observe(seconds)
            state.schedulerAttempts[labels, default: 0] += 1
        }
    }

    static let schedulerAttemptLabels = ["status", "target_model_name", "pod_name", "namespace", "port"]

    // MARK: Buckets (GIE v1.5.0 pkg/epp/metrics)

    static let durationBuckets: [Double] = [
        0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 360,
        480, 600, 900, 1200, 1800, 2700, 3600,
    ]
    static let requestSizeBuckets: [Double] = [
        64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608,
        16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824,
    ]
    /// 32778, not 32768: GIE's own typo, kept so bucket boundaries match.
    static let responseSizeBuckets: [Double] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536]
    static let inputTokenBuckets: [Double] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144, 524288, 1048576]
    static let outputTokenBuckets: [Double] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    static let ntpotBuckets: [Double] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
    static let schedulerBuckets: [Double] = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]

    // MARK: Exposition

    /// The exposition as client_golang writes it: families sorted by name, a labelled family
    /// only once it has a series, numbers in Go's format, HELP texts with the `[ALPHA] ` prefix.
    public func render() -> ByteBuffer {
        let snapshot = state.withLockedValue { $0 }
        let now = datastore.now
        let candidates = datastore.candidates(now: now)
        var families: [(name: String, text: ByteBuffer)] = []
        func family(_ name: String, _ help: String, _ type: Prometheus.MetricType, _ samples: (inout PrometheusWriter) -> Void) {
            var body = PrometheusWriter(style: .go)
            samples(&body)
            guard body.buffer.readableBytes > 0 else { return }
            var text = PrometheusWriter(style: .go)
            text.family(name, help: "[ALPHA] " + help, type: type)
            text.buffer.writeBuffer(&body.buffer)
            families.append((name, text.buffer))
        }
        func labels(_ key: ModelKey) -> [(String, String)] { [("model_name", key.model), ("target_model_name", key.target)] }
        func byModel<Value>(_ series: [ModelKey: Value]) -> [(key: ModelKey, value: Value)] {
            series.sorted { ($0.key.model, $0.key.target) < ($1.key.model, $1.key.target) }
        }
        func histograms(_ name: String, _ help: String, _ series: [ModelKey: PrometheusHistogram]) {
            family(name, help, .histogram) { writer in
                for (key, histogram) in byModel(series) {
                    writer.histogram(HistogramLines(name: name, labels: labels(key), upperBounds: histogram.upperBounds, style: .go), histogram)
                }
            }
        }
        family("inference_objective_request_total", "Counter of inference objective requests broken out for each model and target model.", .counter) { writer in
            for (key, byPriority) in byModel(snapshot.requests) {
                for (priority, count) in byPriority.sorted(by: { $0.key < $1.key }) {
                    writer.sample("inference_objective_request_total", labels: labels(key) + [("priority", String(priority))], value: count)
                }
            }
        }
        family("inference_objective_request_error_total", "Counter of inference objective requests errors broken out for each model and target model.", .counter) { writer in
            for (key, byCode) in byModel(snapshot.errors) {
                for (code, count) in byCode.sorted(by: { $0.key < $1.key }) {
                    writer.sample("inference_objective_request_error_total", labels: labels(key) + [("error_code", code)], value: count)
                }
            }
        }
        histograms("inference_objective_request_duration_seconds", "Inference objective response latency distribution in seconds for each model and target model.", snapshot.durations)
        histograms("inference_objective_request_sizes", "Inference objective requests size distribution in bytes for each model and target model.", snapshot.requestSizes)
        histograms("inference_objective_response_sizes", "Inference objective responses size distribution in bytes for each model and target model.", snapshot.responseSizes)
        histograms("inference_objective_input_tokens", "Inference objective input token count distribution for requests in each model.", snapshot.inputTokens)
        histograms("inference_objective_output_tokens", "Inference objective output token count distribution for requests in each model.", snapshot.outputTokens)
        histograms("inference_objective_prompt_cached_tokens", "Inference objective prompt cached token count distribution for requests in each model.", snapshot.cachedTokens)
        histograms(
            "inference_objective_normalized_time_per_output_token_seconds",
            "Inference objective latency divided by number of output tokens in seconds for each model and target model.",
            snapshot.normalizedTimePerOutputToken)
        family("inference_objective_running_requests", "Inference objective number of running requests in each model.", .gauge) { writer in
            for (model, count) in snapshot.running.sorted(by: { $0.key < $1.key }) {
                writer.sample("inference_objective_running_requests", labels: [("model_name", model)], value: count)
            }
        }

        let pool = [("name", poolName)]
        let metrics = candidates.compactMap(\.metrics)
        func average(_ value: (EndpointMetrics) -> Double) -> Double {
            metrics.isEmpty ? 0 : metrics.map(value).reduce(0, +) / Double(metrics.count)
        }
        family("inference_pool_average_kv_cache_utilization", "The average kv cache utilization for an inference server pool.", .gauge) {
            $0.sample("inference_pool_average_kv_cache_utilization", labels: pool, value: average(\.kvCacheUsage))
        }
        family("inference_pool_average_queue_size", "The average number of requests pending in the model server queue.", .gauge) {
            $0.sample("inference_pool_average_queue_size", labels: pool, value: average { Double($0.waitingQueueSize) })
        }
        family("inference_pool_average_running_requests", "The average number of running requests across model servers in the pool.", .gauge) {
            $0.sample("inference_pool_average_running_requests", labels: pool, value: average { Double($0.runningRequestsSize) })
        }
        family("inference_pool_ready_pods", "The number of ready pods in the inference server pool.", .gauge) {
            $0.sample("inference_pool_ready_pods", labels: pool, value: Double(candidates.count))
        }
        family("inference_pool_per_pod_queue_size", "The total number of requests pending in the model server queue for each underlying pod.", .gauge) { writer in
            for candidate in candidates {
                writer.sample(
                    "inference_pool_per_pod_queue_size", labels: [("model_server_pod", candidate.endpoint.podName), ("name", poolName)],
                    value: Double(candidate.metrics?.waitingQueueSize ?? 0))
            }
        }

        family("inference_extension_scheduler_e2e_duration_seconds", "End-to-end scheduling latency distribution in seconds.", .histogram) { writer in
            guard snapshot.schedulerDuration.count > 0 else { return }
            writer.histogram(
                HistogramLines(name: "inference_extension_scheduler_e2e_duration_seconds", labels: [], upperBounds: Self.schedulerBuckets, style: .go),
                snapshot.schedulerDuration)
        }
        family("inference_extension_scheduler_attempts_total", "Total number of scheduling attempts.", .counter) { writer in
            for (values, count) in snapshot.schedulerAttempts.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                writer.sample("inference_extension_scheduler_attempts_total", labels: Array(zip(Self.schedulerAttemptLabels, values)), value: count)
            }
        }
        family("inference_extension_info", "General information of the current build of Inference Extension.", .gauge) {
            $0.sample("inference_extension_info", labels: [("build_ref", Self.buildRef), ("commit", Self.buildRef)], value: 1)
        }
        var out = ByteBuffer()
        for var family in families.sorted(by: { $0.name < $1.name }) { out.writeBuffer(&family.text) }
        return out
    }

    /// What `inference_extension_info` reports as the build: this emulator, not a GIE commit.
    static let buildRef = "understudy"
}
