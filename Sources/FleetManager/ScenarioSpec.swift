import Foundation
import Gateway

/// A scenario file (`kind: Scenario`, profiles/scenarios/*.yaml): a fleet, steady open-loop
/// load through its gateway, and a timeline of chaos actions; run by `understudy scenario`.
public struct ScenarioSpec: Sendable {
    public var name: String
    public var fleet: FleetSpec
    /// Seconds of load; the timeline's actions fall within it.
    public var duration: Double
    public var seed: UInt64
    public var load: [LoadSpec]
    /// In time order.
    public var timeline: [TimedAction]

    public init(name: String, fleet: FleetSpec, duration: Double, seed: UInt64 = 1, load: [LoadSpec], timeline: [TimedAction]) {
        self.name = name
        self.fleet = fleet
        self.duration = duration
        self.seed = seed
        self.load = load
        self.timeline = timeline.sorted { $0.at < $1.at }
    }
}

/// One stream of steady load: Poisson arrivals of like requests.
public struct LoadSpec: Sendable, Equatable {
    public var name: String
    /// Requests per second.
    public var rate: Double
    /// The model asked for (the fleet's first pool's model when nil).
    public var model: String?
    /// The InferenceObjective named in `x-gateway-inference-objective` (its priority decides
    /// whether the request may be shed).
    public var objective: String?
    /// Approximate prompt length in tokens, and the tokens generated (with `ignore_eos`, as
    /// vLLM's benchmark clients send).
    public var promptTokens: Int
    public var maxTokens: Int
    public var stream: Bool

    public init(name: String, rate: Double, model: String? = nil, objective: String? = nil, promptTokens: Int = 128, maxTokens: Int = 64, stream: Bool = false) {
        self.name = name
        self.rate = rate
        self.model = model
        self.objective = objective
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.stream = stream
    }
}

/// A chaos action at a time (seconds after the load starts).
public struct TimedAction: Sendable, Equatable {
    public var at: Double
    public var action: ChaosAction

    public init(at: Double, _ action: ChaosAction) {
        self.at = at
        self.action = action
    }
}

extension ScenarioSpec {
    /// Reads and validates a scenario file; the fleet file it names is read relative to it.
    public static func load(file: String) throws(ConfigError) -> ScenarioSpec {
        let text = try UnderstudyDocument.read(file: file)
        return try parse(text, file: file)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> ScenarioSpec {
        var v = FieldValidator(file: file, document: 1)
        let (top, name) = try UnderstudyDocument.open(text, kind: "Scenario", &v)
        let spec = try v.map(top["spec"], "spec", required: true)!
        let fleetPath = try v.string(spec["fleet"], "spec.fleet", required: true, minLength: 1)!
        let resolved = fleetPath.hasPrefix("/") ? fleetPath
            : URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent(fleetPath).path
        let fleet = try FleetSpec.load(file: resolved)
        let duration = try v.number(spec["durationSeconds"], "spec.durationSeconds", required: true)!
        guard duration > 0, duration <= 86_400 else { throw v.fail("spec.durationSeconds", "Invalid value: \(duration): must be within (0, 86400]") }
        let seed = try v.integer(spec["seed"], "spec.seed", minimum: 0, maximum: Int.max) ?? 1

        var load: [LoadSpec] = []
        for (index, item) in (try v.list(spec["load"], "spec.load", required: true, minItems: 1)!).enumerated() {
            let path = "spec.load[\(index)]"
            let map = try v.map(item, path, required: true)!
            try rejectUnknown(map, ["name", "rate", "model", "objective", "promptTokens", "maxTokens", "stream"], path, v)
            let rate = try v.number(map["rate"], path + ".rate", required: true)!
            guard rate > 0, rate <= 100_000 else { throw v.fail(path + ".rate", "Invalid value: \(rate): must be within (0, 100000] requests per second") }
            let model = try v.string(map["model"], path + ".model", minLength: 1)
            if let model, !fleet.pools.contains(where: { $0.model == model || $0.adapters.contains { $0.name == model } }),
               !fleet.resources.models.contains(where: { $0.modelName == model }) {
                throw v.fail(path + ".model", "Invalid value: \"\(model)\": no pool serves it and no InferenceModel names it")
            }
            load.append(LoadSpec(
                name: try v.string(map["name"], path + ".name") ?? "load-\(index)", rate: rate, model: model,
                objective: try v.string(map["objective"], path + ".objective", minLength: 1),
                promptTokens: try v.integer(map["promptTokens"], path + ".promptTokens", minimum: 1, maximum: 1_000_000) ?? 128,
                maxTokens: try v.integer(map["maxTokens"], path + ".maxTokens", minimum: 1, maximum: 1_000_000) ?? 64,
                stream: try v.bool(map["stream"], path + ".stream") ?? false))
        }

        var timeline: [TimedAction] = []
        for (index, item) in (try v.list(spec["timeline"], "spec.timeline") ?? []).enumerated() {
            let path = "spec.timeline[\(index)]"
            let map = try v.map(item, path, required: true)!
            try rejectUnknown(map, ["at", "action", "pod", "pool", "replicas", "factor", "rate", "status", "kind", "usable"], path, v)
            let at = try v.number(map["at"], path + ".at", required: true)!
            guard at >= 0, at < duration else { throw v.fail(path + ".at", "Invalid value: \(at): must be within the scenario's \(duration) s") }
            let verb = try v.string(map["action"], path + ".action", required: true, allowed: ChaosAction.podVerbs + ["scale"])!
            if verb == "scale" {
                let pool = try v.string(map["pool"], path + ".pool", required: true, minLength: 1)!
                guard fleet.pools.contains(where: { $0.name == pool }) else { throw v.fail(path + ".pool", "Invalid value: \"\(pool)\": no such pool in the fleet") }
                let replicas = try v.integer(map["replicas"], path + ".replicas", required: true, minimum: 0, maximum: 10_000)!
                timeline.append(TimedAction(at: at, .scale(pool: pool, replicas: replicas)))
                continue
            }
            let pod = try v.string(map["pod"], path + ".pod", required: true, minLength: 1)!
            // Pods are named <pool>-<n>, as a StatefulSet's would be.
            guard let dash = pod.lastIndex(of: "-"), Int(pod[pod.index(after: dash)...]) != nil,
                  fleet.pools.contains(where: { $0.name == pod[..<dash] }) else {
                throw v.fail(path + ".pod", "Invalid value: \"\(pod)\": pods are named <pool>-<n> after a pool of the fleet")
            }
            var parameters: [String: String] = [:]
            for key in ["factor", "rate", "status", "kind", "usable"] { if let value = map[key] { parameters[key] = "\(value)" } }
            do {
                timeline.append(TimedAction(at: at, try ChaosAction.pod(pod, verb: verb, parameters)))
            } catch {
                throw v.fail(path, "Invalid value: \(error.description)")
            }
        }
        return ScenarioSpec(name: name, fleet: fleet, duration: duration, seed: UInt64(seed), load: load, timeline: timeline)
    }

    private static func rejectUnknown(_ map: [String: Any], _ known: Set<String>, _ path: String, _ v: FieldValidator) throws(ConfigError) {
        if let unknown = map.keys.sorted().first(where: { !known.contains($0) }) {
            throw v.fail("\(path).\(unknown)", "field not declared in schema")
        }
    }
}
