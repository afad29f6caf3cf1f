import Foundation
import InferenceAPI

/// GIE's EndpointPickerConfig (`inference.networking.x-k8s.io/v1alpha1`, v1.5.0): the plugins,
/// the scheduling profiles that weight them, and the saturation detector. Decoded strictly:
/// an unknown key or plugin type is an error, as the EPP's strict decoding makes it.
public struct EndpointPickerConfig: Sendable, Equatable {
    public struct Plugin: Sendable, Equatable {
        /// Defaults to the type.
        public var name: String
        public var type: String
        public var parameters: JSONValue?
    }

    public struct ProfilePlugin: Sendable, Equatable {
        public var pluginRef: String
        /// Scorer weight; weights are not normalised (total = Σ weight·score).
        public var weight: Double?
    }

    public struct Profile: Sendable, Equatable {
        public var name: String
        public var plugins: [ProfilePlugin]
    }

    public var featureGates: [String] = []
    public var plugins: [Plugin] = []
    public var profiles: [Profile] = []
    public var saturationDetector: String?

    /// Plugin types of GIE v1.5.0's in-tree registry (`registerInTreePlugins`), plus the legacy
    /// filter tree of v0.5 (`decision-tree-filter` and its filters).
    public static let knownTypes: Set<String> = [
        "queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer", "lora-affinity-scorer",
        "running-requests-size-scorer", "token-load-scorer", "latency-scorer", "predicted-latency-scorer",
        "prefix-cache-affinity-filter", "slo-headroom-tier-filter", "utilization-detector", "concurrency-detector",
        "header-based-testing-filter", "max-score-picker", "random-picker", "weighted-random-picker",
        "single-profile-handler", "approx-prefix-cache-producer", "inflight-load-producer", "predicted-latency-producer",
        "latency-slo-admitter", "request-attribute-reporter", "destination-endpoint-served-verifier",
        "global-strict-fairness-policy", "round-robin-fairness-policy", "fcfs-ordering-policy", "edf-ordering-policy",
        "slo-deadline-ordering-policy", "static-usage-limit-policy", "eviction-sheddable-filter",
        "eviction-priority-then-time-ordering", "metrics-data-source", "core-metrics-extractor",
        "k8s-notification-source", "endpoint-notification-source", "openai-parser", "vllmgrpc-parser", "passthrough-parser",
        "decision-tree-filter", "low-queue-filter", "lora-affinity-filter", "least-queue-filter", "least-kv-cache-filter",
    ]

    /// Ours, for comparisons (not GIE's): whole-policy baselines selectable by config.
    public static let baselineTypes: Set<String> = ["round-robin-picker", "least-request-picker"]

    public init() {}

    /// GIE v1.5.0's default (`loadDefaultConfig`, gie-examples/v1.5.0_epp_default_config_rendered.yaml):
    /// queue 2, KV cache 2, prefix cache 3 in one profile named `default`.
    public static let `default`: EndpointPickerConfig = {
        var config = EndpointPickerConfig()
        config.plugins = ["queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer", "metrics-data-source", "core-metrics-extractor"]
            .map { Plugin(name: $0, type: $0, parameters: nil) }
        config.plugins[3].parameters = .object(["insecureSkipVerify": .bool(true), "path": .string("/metrics"), "scheme": .string("http")])
        config.profiles = [Profile(name: "default", plugins: [
            ProfilePlugin(pluginRef: "queue-scorer", weight: 2),
            ProfilePlugin(pluginRef: "kv-cache-utilization-scorer", weight: 2),
            ProfilePlugin(pluginRef: "prefix-cache-scorer", weight: 3),
        ])]
        return config.resolved()
    }()

    /// Fills what the EPP injects when missing (gie-epp.md §2.3): a `max-score-picker` in every
    /// profile without a picker, weight 1 for unweighted scorers, a `default` profile with every
    /// filter, scorer and picker when none is given, and the `utilization-detector`.
    public func resolved() -> EndpointPickerConfig {
        var config = self
        func typeOf(_ ref: String) -> String? { config.plugins.first { $0.name == ref }?.type }
        if config.profiles.isEmpty {
            let refs = config.plugins.filter { Self.isScheduling($0.type) }.map { ProfilePlugin(pluginRef: $0.name, weight: nil) }
            config.profiles = [Profile(name: "default", plugins: refs)]
        }
        for index in config.profiles.indices {
            for pluginIndex in config.profiles[index].plugins.indices {
                let ref = config.profiles[index].plugins[pluginIndex]
                if ref.weight == nil, typeOf(ref.pluginRef).map(Self.isScorer) == true {
                    config.profiles[index].plugins[pluginIndex].weight = 1
                }
            }
            if !config.profiles[index].plugins.contains(where: { typeOf($0.pluginRef).map(Self.isPicker) == true }) {
                if typeOf("max-score-picker") == nil {
                    config.plugins.append(Plugin(name: "max-score-picker", type: "max-score-picker", parameters: nil))
                }
                config.profiles[index].plugins.append(ProfilePlugin(pluginRef: "max-score-picker", weight: nil))
            }
        }
        if config.saturationDetector == nil {
            if let detector = config.plugins.first(where: { $0.type == "utilization-detector" || $0.type == "concurrency-detector" }) {
                config.saturationDetector = detector.name
            } else {
                config.plugins.append(Plugin(name: "utilization-detector", type: "utilization-detector", parameters: nil))
                config.saturationDetector = "utilization-detector"
            }
        }
        return config
    }

    static func isScorer(_ type: String) -> Bool { type.hasSuffix("-scorer") }
    static func isPicker(_ type: String) -> Bool { type.hasSuffix("-picker") }
    static func isFilter(_ type: String) -> Bool { type.hasSuffix("-filter") || type.hasSuffix("-detector") }
    static func isScheduling(_ type: String) -> Bool { isScorer(type) || isPicker(type) || isFilter(type) }

    /// Reads and checks a decoded document.
    init(_ object: [String: Any], _ v: FieldValidator) throws(ConfigError) {
        let allowed: Set<String> = ["apiVersion", "kind", "metadata", "featureGates", "plugins", "schedulingProfiles",
                                    "saturationDetector", "dataLayer", "flowControl", "parser"]
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw v.fail(unknown, "unknown field \"\(unknown)\"")
        }
        for (index, gate) in (try v.list(object["featureGates"], "featureGates") ?? []).enumerated() {
            featureGates.append(try v.string(gate, "featureGates[\(index)]", required: true)!)
        }
        for (index, item) in (try v.list(object["plugins"], "plugins") ?? []).enumerated() {
            let path = "plugins[\(index)]"
            let entry = try v.map(item, path, required: true)!
            let type = try v.string(entry["type"], path + ".type", required: true, minLength: 1)!
            guard Self.knownTypes.contains(type) || Self.baselineTypes.contains(type) else {
                throw v.fail(path + ".type", "Unsupported value: \"\(type)\": not a plugin type of the endpoint picker")
            }
            let name = try v.string(entry["name"], path + ".name") ?? type
            if plugins.contains(where: { $0.name == name }) {
                throw v.fail(path + ".name", "Duplicate value: \"\(name)\"")
            }
            plugins.append(Plugin(name: name, type: type, parameters: try present(entry["parameters"]).map { value throws(ConfigError) in
                try Self.json(value, path + ".parameters", v)
            }))
        }
        for (index, item) in (try v.list(object["schedulingProfiles"], "schedulingProfiles") ?? []).enumerated() {
            let path = "schedulingProfiles[\(index)]"
            let entry = try v.map(item, path, required: true)!
            let name = try v.string(entry["name"], path + ".name", required: true, minLength: 1)!
            if profiles.contains(where: { $0.name == name }) { throw v.fail(path + ".name", "Duplicate value: \"\(name)\"") }
            var refs: [ProfilePlugin] = []
            for (refIndex, refItem) in (try v.list(entry["plugins"], path + ".plugins") ?? []).enumerated() {
                let refPath = "\(path).plugins[\(refIndex)]"
                let ref = try v.map(refItem, refPath, required: true)!
                let pluginRef = try v.string(ref["pluginRef"], refPath + ".pluginRef", required: true)!
                guard plugins.contains(where: { $0.name == pluginRef }) else {
                    throw v.fail(refPath + ".pluginRef", "Not found: \"\(pluginRef)\": no plugin of that name is declared")
                }
                let weight = try v.number(ref["weight"], refPath + ".weight")
                if let weight, weight < 0 { throw v.fail(refPath + ".weight", "Invalid value: \(weight): must be non-negative") }
                refs.append(ProfilePlugin(pluginRef: pluginRef, weight: weight))
            }
            profiles.append(Profile(name: name, plugins: refs))
        }
        if let detector = try v.map(object["saturationDetector"], "saturationDetector") {
            let ref = try v.string(detector["pluginRef"], "saturationDetector.pluginRef", required: true)!
            guard plugins.contains(where: { $0.name == ref }) else {
                throw v.fail("saturationDetector.pluginRef", "Not found: \"\(ref)\": no plugin of that name is declared")
            }
            saturationDetector = ref
        }
        self = resolved()
    }

    /// A YAML value as JSON (plugin parameters are free-form).
    static func json(_ value: Any, _ path: String, _ v: FieldValidator) throws(ConfigError) -> JSONValue {
        switch value {
        case is NSNull: return .null
        case let flag as Bool: return .bool(flag)
        case let number as Int: return .integer(number)
        case let number as Double: return .double(number)
        case let text as String: return .string(text)
        case let items as [Any]:
            var out: [JSONValue] = []
            for (index, item) in items.enumerated() { out.append(try json(item, "\(path)[\(index)]", v)) }
            return .array(out)
        case let map as [String: Any]:
            var object = JSONObject()
            for key in map.keys.sorted() { object[key] = try json(map[key]!, "\(path).\(key)", v) }
            return .object(object)
        default:
            throw v.fail(path, "Invalid value: \(value): not representable as JSON")
        }
    }
}
