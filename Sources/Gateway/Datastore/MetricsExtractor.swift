import InferenceAPI

/// Where a model server keeps the values the picker needs: GIE's model-server protocol
/// (docs/proposals/003, gie-epp.md §3.2). Each entry is a selector `name{label="value",…}`;
/// an empty one means "not exposed". Chosen per endpoint by the pod label
/// `inference.networking.k8s.io/engine-type`; unlabelled pods are vLLM.
public struct MetricsMapping: Sendable, Equatable {
    public var queuedRequests: String
    public var runningRequests: String
    public var kvCacheUsage: String
    public var lora: String
    public var cacheInfo: String

    public static let engineLabel = "inference.networking.k8s.io/engine-type"

    public static let vllm = MetricsMapping(
        queuedRequests: "vllm:num_requests_waiting", runningRequests: "vllm:num_requests_running",
        kvCacheUsage: "vllm:kv_cache_usage_perc", lora: "vllm:lora_requests_info", cacheInfo: "vllm:cache_config_info")
    public static let sglang = MetricsMapping(
        queuedRequests: "sglang:num_queue_reqs", runningRequests: "sglang:num_running_reqs",
        kvCacheUsage: "sglang:token_usage", lora: "", cacheInfo: "sglang:cache_config_info")
    public static let trtllmServe = MetricsMapping(
        queuedRequests: "trtllm_num_requests_waiting", runningRequests: "trtllm_num_requests_running",
        kvCacheUsage: "trtllm_kv_cache_utilization", lora: "", cacheInfo: "")
    public static let tritonTensorRTLLM = MetricsMapping(
        queuedRequests: #"nv_trt_llm_request_metrics{request_type="waiting"}"#,
        runningRequests: #"nv_trt_llm_request_metrics{request_type="scheduled"}"#,
        kvCacheUsage: #"nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}"#, lora: "", cacheInfo: "")

    /// The mapping for an engine-type label value (nil or unknown: vLLM).
    public static func forEngine(_ engine: String?) -> MetricsMapping {
        switch engine {
        case "sglang": sglang
        case "trtllm-serve": trtllmServe
        case "triton-tensorrt-llm": tritonTensorRTLLM
        default: vllm
        }
    }
}

/// Why a scrape could not be turned into metrics.
public struct MetricsExtractionError: Error, Equatable, CustomStringConvertible {
    public var description: String
}

/// Turns a `/metrics` body into the picker's view of an endpoint, as GIE's
/// `core-metrics-extractor` does.
public enum MetricsExtractor {
    public static func extract(_ text: String, mapping: MetricsMapping = .vllm, now: Double) throws -> EndpointMetrics {
        // A vLLM page has hundreds of series and the picker reads a handful: parse only the
        // lines of the families it reads (scrapes run 20 times a second per endpoint).
        let wanted = [mapping.queuedRequests, mapping.runningRequests, mapping.kvCacheUsage, mapping.cacheInfo]
            .filter { !$0.isEmpty }.map { Array(parseSelector($0).name.utf8) }
        // vLLM keeps every LoRA label set it ever showed as a series (prometheus_client never
        // drops a child), so with many adapters this family grows without bound; only its
        // newest series is read, and only that line is parsed.
        let newest = mapping.lora.isEmpty ? [] : [Array(parseSelector(mapping.lora).name.utf8)]
        let samples = try Prometheus.parse(lines(of: text, named: wanted, newestOf: newest))
        func value(_ selector: String) throws -> Double? {
            guard !selector.isEmpty else { return nil }
            let (name, labels) = parseSelector(selector)
            let sample = samples.first { sample in
                sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
            }
            guard let sample else {
                throw MetricsExtractionError(description: "metric family \(selector) not found")
            }
            return sample.value
        }
        /// A count as an Int; NaN, infinities, negatives and absurd sizes are a bad page, not a trap.
        func count(_ selector: String) throws -> Int {
            let number = try value(selector) ?? 0
            guard number.isFinite, number >= 0, number < 1e12 else {
                throw MetricsExtractionError(description: "metric \(selector) is \(number), not a count")
            }
            return Int(number)
        }
        var metrics = EndpointMetrics(updateTime: now)
        metrics.waitingQueueSize = try count(mapping.queuedRequests)
        metrics.runningRequestsSize = try count(mapping.runningRequests)
        let usage = try value(mapping.kvCacheUsage) ?? 0
        guard usage.isFinite, usage >= 0 else {
            throw MetricsExtractionError(description: "metric \(mapping.kvCacheUsage) is \(usage), not a fraction")
        }
        metrics.kvCacheUsage = usage
        if !mapping.lora.isEmpty {
            // One series per label set ever seen; the value is when it was set: the newest wins.
            let (name, _) = parseSelector(mapping.lora)
            if let newest = samples.filter({ $0.name == name }).max(by: { $0.value < $1.value }) {
                metrics.maxActiveAdapters = Int(newest.labels["max_lora"] ?? "") ?? 0
                metrics.activeAdapters = split(newest.labels["running_lora_adapters"])
                metrics.waitingAdapters = split(newest.labels["waiting_lora_adapters"])
            }
        }
        if !mapping.cacheInfo.isEmpty, let info = samples.first(where: { $0.name == parseSelector(mapping.cacheInfo).name }) {
            metrics.blockSize = Int(info.labels["block_size"] ?? info.labels["page_size"] ?? "")
            metrics.numGPUBlocks = Int(info.labels["num_gpu_blocks"] ?? info.labels["num_pages"] ?? "")
        }
        return metrics
    }

    /// The sample lines of `text` whose metric name is one of `names`, and of each family in
    /// `newestOf` only the line with the largest value (a timestamp), joined.
    static func lines(of text: String, named names: [[UInt8]], newestOf families: [[UInt8]] = []) -> String {
        var text = text
        return text.withUTF8 { bytes in
            var selected: [UInt8] = []
            var newest: [(value: Double, line: Range<Int>)?] = Array(repeating: nil, count: families.count)
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
                func named(_ name: [UInt8]) -> Bool {
                    guard end - start > name.count else { return false }
                    let next = bytes[start + name.count]
                    guard next == UInt8(ascii: "{") || next == UInt8(ascii: " ") else { return false }
                    return (0..<name.count).allSatisfy { bytes[start + $0] == name[$0] }
                }
                if bytes[start] != UInt8(ascii: "#") {
                    if names.contains(where: named) {
                        selected.append(contentsOf: bytes[start..<end])
                        selected.append(UInt8(ascii: "\n"))
                    } else if let family = families.firstIndex(where: named) {
                        // The value is the line's last field (no timestamps on these pages).
                        var space = end
                        while space > start, bytes[space - 1] != UInt8(ascii: " ") { space -= 1 }
                        let value = Double(String(decoding: bytes[space..<end], as: UTF8.self)) ?? -.infinity
                        if newest[family] == nil || value > newest[family]!.value { newest[family] = (value, start..<end) }
                    }
                }
                start = end + 1
            }
            for case let (_, line)? in newest {
                selected.append(contentsOf: bytes[line])
                selected.append(UInt8(ascii: "\n"))
            }
            return String(decoding: selected, as: UTF8.self)
        }
    }

    /// `name{a="b",c="d"}` → the name and the label constraints.
    static func parseSelector(_ selector: String) -> (name: String, labels: [String: String]) {
        guard let open = selector.firstIndex(of: "{"), selector.hasSuffix("}") else { return (selector, [:]) }
        let name = String(selector[..<open])
        let body = selector[selector.index(after: open)..<selector.index(before: selector.endIndex)]
        var labels: [String: String] = [:]
        for pair in body.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            labels[parts[0].trimmingCharacters(in: " ")] = parts[1].trimmingCharacters(in: " \"")
        }
        return (name, labels)
    }

    private static func split(_ list: String?) -> [String] {
        (list ?? "").split(separator: ",").map { String($0) }.filter { !$0.isEmpty }
    }
}

private extension Substring {
    func trimmingCharacters(in characters: String) -> String {
        var view = self
        while let first = view.first, characters.contains(first) { view.removeFirst() }
        while let last = view.last, characters.contains(last) { view.removeLast() }
        return String(view)
    }
}
