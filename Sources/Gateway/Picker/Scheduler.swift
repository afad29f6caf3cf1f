import InferenceAPI

/// The endpoint picker for one pool, built from an EndpointPickerConfig: the primary profile,
/// the prefix index its prefix scorer reads, and the saturation detector. Pure and
/// deterministic for a seed: no clock, no I/O; the caller passes candidates and the time.
public struct Scheduler: Sendable {
    public private(set) var profile: SchedulerProfile
    public let detector: UtilizationDetector
    public private(set) var prefixIndex: PrefixIndex?
    private var generator: SplitMix64

    public init(config: EndpointPickerConfig, seed: UInt64 = 0) throws(ConfigError) {
        let built = try PluginRegistry.build(config.resolved())
        profile = built.profile
        detector = built.detector
        prefixIndex = built.prefixIndex
        generator = SplitMix64(seed: seed)
    }

    /// Pool saturation as the saturation detector computes it (≥ 1 saturated).
    public func saturation(_ candidates: [Candidate], now: Double) -> Double {
        detector.saturation(candidates, now: now)
    }

    /// The picked endpoints (target first, then fallbacks), or nil when nothing fits (GIE: 429).
    /// The prefix index learns that the target was sent this request's blocks.
    public mutating func schedule(_ request: SchedulingRequest, candidates: [Candidate], now: Double) -> [Endpoint]? {
        var state = CycleState(now: now, seed: generator.next())
        if let index = prefixIndex {
            // GIE's approx-prefix-cache-producer, before scheduling.
            if let made = request.prefixHashes, made.model == request.targetModel {
                state.prefixHashes = made.hashes
            } else {
                state.prefixHashes = index.hasher.hashes(model: request.targetModel, text: request.prefixText)
            }
            state.prefixMatches = index.matches(state.prefixHashes)
        }
        guard let picked = profile.schedule(request, candidates, state: &state, generator: &generator) else { return nil }
        let endpoints = picked.map { candidates[$0].endpoint }
        if let target = endpoints.first, !state.prefixHashes.isEmpty {
            prefixIndex?.add(state.prefixHashes, to: target.address)
        }
        return endpoints
    }

    /// Forgets an endpoint that left the pool (its prefix entries).
    public mutating func removeEndpoint(_ address: String) {
        prefixIndex?.remove(address)
    }
}

/// The plugin types this gateway runs, by GIE type name, and how each reads its parameters.
enum PluginRegistry {
    /// Types that configure data collection or request parsing rather than scheduling; the
    /// gateway's scraper and parser stand in for them, so they are accepted and need no object.
    static let structural: Set<String> = [
        "metrics-data-source", "core-metrics-extractor", "openai-parser", "single-profile-handler", "approx-prefix-cache-producer",
    ]

    struct Built {
        var profile: SchedulerProfile
        var detector: UtilizationDetector
        var prefixIndex: PrefixIndex?
    }

    static func build(_ config: EndpointPickerConfig) throws(ConfigError) -> Built {
        func fail(_ field: String, _ reason: String) -> ConfigError {
            ConfigError(file: "EndpointPickerConfig", document: 1, object: "", field: field, reason: reason)
        }
        guard config.profiles.count == 1, let profileConfig = config.profiles.first else {
            throw fail("schedulingProfiles", "exactly one scheduling profile is emulated (single-profile-handler); got \(config.profiles.count)")
        }
        var filters: [any Filter] = []
        var scorers: [(scorer: any Scorer, weight: Double)] = []
        var picker: (any Picker)?
        var prefixIndex: PrefixIndex?
        var detector = UtilizationDetector()
        for plugin in config.plugins where plugin.name == config.saturationDetector {
            detector = try utilizationDetector(plugin, fail)
        }
        for (position, ref) in profileConfig.plugins.enumerated() {
            let field = "schedulingProfiles[0].plugins[\(position)]"
            guard let plugin = config.plugins.first(where: { $0.name == ref.pluginRef }) else {
                throw fail(field + ".pluginRef", "Not found: \"\(ref.pluginRef)\"")
            }
            let parameters = Parameters(plugin.parameters, field: "plugins[\(plugin.name)].parameters")
            switch plugin.type {
            case "queue-scorer": scorers.append((QueueScorer(), ref.weight ?? 1))
            case "kv-cache-utilization-scorer": scorers.append((KVCacheUtilizationScorer(), ref.weight ?? 1))
            case "running-requests-size-scorer": scorers.append((RunningRequestsSizeScorer(), ref.weight ?? 1))
            case "lora-affinity-scorer": scorers.append((LoRAAffinityScorer(), ref.weight ?? 1))
            case "prefix-cache-scorer":
                prefixIndex = PrefixIndex(
                    blockSizeTokens: try parameters.int("blockSizeTokens", fail) ?? 16,
                    maxPrefixBlocksToMatch: try parameters.int("maxPrefixBlocksToMatch", fail) ?? 256,
                    capacityPerEndpoint: try parameters.int("lruCapacityPerServer", fail) ?? 31_250)
                scorers.append((PrefixCacheScorer(), ref.weight ?? 1))
            case "utilization-detector": filters.append(try utilizationDetector(plugin, fail))
            case "header-based-testing-filter": filters.append(HeaderBasedTestingFilter())
            case "decision-tree-filter":
                filters.append(LegacyDecisionTree(
                    queueingThresholdLoRA: try parameters.int("queueingThresholdLoRA", fail) ?? 128,
                    loraAffinityThreshold: try parameters.number("loraAffinityThreshold", fail) ?? 0.999,
                    queueThresholdCritical: try parameters.int("queueThresholdCritical", fail) ?? 5,
                    kvCacheThreshold: try parameters.number("kvCacheThreshold", fail) ?? 0.8))
            case "max-score-picker": picker = MaxScorePicker(maxNumOfEndpoints: try parameters.int("maxNumOfEndpoints", fail) ?? 1)
            case "random-picker": picker = RandomPicker(maxNumOfEndpoints: try parameters.int("maxNumOfEndpoints", fail) ?? 1)
            case "weighted-random-picker": picker = WeightedRandomPicker(maxNumOfEndpoints: try parameters.int("maxNumOfEndpoints", fail) ?? 1)
            case "round-robin-picker": picker = RoundRobinPicker()
            case "least-request-picker": picker = LeastRequestPicker()
            case let type where structural.contains(type): continue
            case let type:
                throw fail(field, "plugin type \"\(type)\" is not emulated yet")
            }
        }
        guard let picker else { throw fail("schedulingProfiles[0]", "no picker") }
        return Built(
            profile: SchedulerProfile(name: profileConfig.name, filters: filters, scorers: scorers, picker: picker),
            detector: detector, prefixIndex: prefixIndex)
    }

    static func utilizationDetector(_ plugin: EndpointPickerConfig.Plugin, _ fail: (String, String) -> ConfigError) throws(ConfigError) -> UtilizationDetector {
        let parameters = Parameters(plugin.parameters, field: "plugins[\(plugin.name)].parameters")
        return UtilizationDetector(
            queueDepthThreshold: try parameters.number("queueDepthThreshold", fail) ?? 5,
            kvCacheUtilThreshold: try parameters.number("kvCacheUtilThreshold", fail) ?? 0.8,
            metricsStalenessThreshold: try parameters.duration("metricsStalenessThreshold", fail) ?? 0.2,
            headroom: try parameters.number("headroom", fail) ?? 0)
    }

    /// Typed access to a plugin's free-form parameters.
    struct Parameters {
        let value: JSONValue?
        let field: String

        init(_ value: JSONValue?, field: String) {
            self.value = value
            self.field = field
        }

        func int(_ key: String, _ fail: (String, String) -> ConfigError) throws(ConfigError) -> Int? {
            switch value?[key] {
            case nil, .null?: return nil
            case .integer(let number)?: return number
            default: throw fail("\(field).\(key)", "must be an integer")
            }
        }

        func number(_ key: String, _ fail: (String, String) -> ConfigError) throws(ConfigError) -> Double? {
            switch value?[key] {
            case nil, .null?: return nil
            case .integer(let number)?: return Double(number)
            case .double(let number)?: return number
            default: throw fail("\(field).\(key)", "must be a number")
            }
        }

        /// A Go duration such as `200ms`, `1s` or `1.5m`, in seconds.
        func duration(_ key: String, _ fail: (String, String) -> ConfigError) throws(ConfigError) -> Double? {
            guard case .string(let text)? = value?[key] else {
                if value?[key] == nil { return nil }
                throw fail("\(field).\(key)", "must be a duration such as 200ms")
            }
            guard let seconds = GoDuration.seconds(text) else { throw fail("\(field).\(key)", "invalid duration \"\(text)\"") }
            return seconds
        }
    }
}
