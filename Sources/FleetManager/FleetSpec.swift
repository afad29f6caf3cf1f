import FakeVLLM
import Foundation
import Gateway

/// A fleet file: pods grouped in pools, the GIE resources the gateway reads, and where
/// everything listens. Read from YAML (`kind: Fleet`, profiles/fleets/*.yaml).
public struct FleetSpec: Sendable {
    public var name: String
    public var pools: [PodPoolSpec]
    /// The gateway's resources: from `spec.manifests`, or a generated InferencePool selecting
    /// the labels every pod pool shares.
    public var resources: GatewayResources
    public var gateway: Listener
    /// How the gateway treats its upstreams (timeouts, retries).
    public var dataPlane: DataPlaneConfiguration
    public var admin: Listener
    /// Pods listen from this port upward, one port each (vLLM's 8000 by default).
    public var firstPodPort: Int

    /// The port the pod created after the one on `port` gets: the next one up that is not the
    /// gateway's, its metrics' or the admin API's.
    public func podPort(after port: Int) -> Int {
        let reserved = Set([gateway.port, gateway.metricsPort ?? 0, admin.port].filter { $0 != 0 })
        var next = port + 1
        while reserved.contains(next) { next += 1 }
        return next
    }

    public struct Listener: Sendable, Equatable {
        public var host: String
        public var port: Int
        /// The gateway's metrics port (GIE's EPP: 9090); unused for the admin API.
        public var metricsPort: Int?

        public init(host: String, port: Int, metricsPort: Int? = nil) {
            self.host = host
            self.port = port
            self.metricsPort = metricsPort
        }
    }
}

/// A group of identical pods: what a Deployment of vLLM would be.
public struct PodPoolSpec: Sendable, Equatable {
    public var name: String
    /// Accelerator profile (profiles/accelerators).
    public var accelerator: String
    /// The model as `vllm serve --model` names it.
    public var model: String
    public var tensorParallelSize: Int
    public var replicas: Int
    /// The pods' labels; InferencePools select pods by them.
    public var labels: [String: String]
    public var adapters: [AdapterSpec]
    /// `vllm serve` flags without their dashes (`max-num-seqs: 64`), applied to every pod.
    public var engineArgs: [(name: String, value: String)]
    /// The emulated model load: seconds from start to Ready.
    public var startupSeconds: Double
    /// The kubelet's readiness and liveness probes on /health.
    public var probes = ProbeSettings()

    public static func == (lhs: PodPoolSpec, rhs: PodPoolSpec) -> Bool {
        lhs.name == rhs.name && lhs.accelerator == rhs.accelerator && lhs.model == rhs.model
            && lhs.tensorParallelSize == rhs.tensorParallelSize && lhs.replicas == rhs.replicas && lhs.labels == rhs.labels
            && lhs.adapters == rhs.adapters && lhs.engineArgs.elementsEqual(rhs.engineArgs, by: { $0 == $1 })
            && lhs.startupSeconds == rhs.startupSeconds && lhs.probes == rhs.probes
    }
}

/// A LoRA adapter a pool serves: registered at start (`--lora-modules`), loaded on first use
/// or at start when `preload`; or only loadable later through the runtime-loading API.
public struct AdapterSpec: Sendable, Equatable {
    public var name: String
    /// Loaded into GPU memory when the pod starts, rather than on its first request.
    public var preload: Bool
    /// Not registered at start; `POST /v1/load_lora_adapter` adds it later.
    public var runtimeOnly: Bool
}

extension FleetSpec {
    public static let apiVersion = "understudy.dev/v1alpha1"

    /// The engine flags a pool may set, as `vllm serve` names them (`PodFlags`).
    public static var engineFlags: Set<String> { PodFlags.names }

    /// Reads and validates a fleet file; manifests it names are read relative to it.
    public static func load(file: String) throws(ConfigError) -> FleetSpec {
        let text = try UnderstudyDocument.read(file: file)
        return try parse(text, file: file)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> FleetSpec {
        var v = FieldValidator(file: file, document: 1)
        let (top, name) = try UnderstudyDocument.open(text, kind: "Fleet", &v)
        let spec = try v.map(top["spec"], "spec", required: true)!
        var pools: [PodPoolSpec] = []
        for (index, item) in (try v.list(spec["pools"], "spec.pools", required: true, minItems: 1)!).enumerated() {
            pools.append(try pool(item, "spec.pools[\(index)]", v))
        }
        for (index, pool) in pools.enumerated() where pools[..<index].contains(where: { $0.name == pool.name }) {
            throw v.fail("spec.pools[\(index)].name", "Duplicate value: \"\(pool.name)\"")
        }
        let gatewayMap = try v.map(spec["gateway"], "spec.gateway") ?? [:]
        let gateway = Listener(
            host: try v.string(gatewayMap["host"], "spec.gateway.host") ?? "127.0.0.1",
            port: try v.integer(gatewayMap["port"], "spec.gateway.port", minimum: 0, maximum: 65535) ?? 8080,
            metricsPort: try v.integer(gatewayMap["metricsPort"], "spec.gateway.metricsPort", minimum: 0, maximum: 65535) ?? 9090)
        var dataPlane = DataPlaneConfiguration()
        if let seconds = try v.number(gatewayMap["upstreamTimeoutSeconds"], "spec.gateway.upstreamTimeoutSeconds") {
            guard seconds > 0, seconds.isFinite else { throw v.fail("spec.gateway.upstreamTimeoutSeconds", "Invalid value: \(seconds): must be > 0") }
            dataPlane.upstreamTimeout = .nanoseconds(Int64(seconds * 1e9))
        }
        if let seconds = try v.number(gatewayMap["connectTimeoutSeconds"], "spec.gateway.connectTimeoutSeconds") {
            guard seconds > 0, seconds.isFinite else { throw v.fail("spec.gateway.connectTimeoutSeconds", "Invalid value: \(seconds): must be > 0") }
            dataPlane.connectTimeout = .nanoseconds(Int64(seconds * 1e9))
        }
        dataPlane.maxAttempts = try v.integer(gatewayMap["maxAttempts"], "spec.gateway.maxAttempts", minimum: 1, maximum: 10) ?? dataPlane.maxAttempts
        dataPlane.retryOnReset = try v.bool(gatewayMap["retryOnReset"], "spec.gateway.retryOnReset") ?? false
        if let map = try v.map(gatewayMap["outlierDetection"], "spec.gateway.outlierDetection") {
            dataPlane.outlierDetection = try outlierDetection(map, "spec.gateway.outlierDetection", v)
        }
        let adminMap = try v.map(spec["admin"], "spec.admin") ?? [:]
        let admin = Listener(
            host: try v.string(adminMap["host"], "spec.admin.host") ?? "127.0.0.1",
            port: try v.integer(adminMap["port"], "spec.admin.port", minimum: 0, maximum: 65535) ?? 8070, metricsPort: nil)
        let firstPodPort = try v.integer(spec["firstPodPort"], "spec.firstPodPort", minimum: 0, maximum: 65535) ?? 8000

        let podCount = pools.reduce(0) { $0 + $1.replicas }
        if firstPodPort != 0 {
            // Pods take consecutive ports, skipping the gateway's, its metrics' and the admin API's.
            let reserved = Set([gateway.port, gateway.metricsPort ?? 0, admin.port].filter { $0 != 0 })
            let lastPort = firstPodPort + podCount - 1 + reserved.filter { $0 >= firstPodPort && $0 < firstPodPort + podCount + reserved.count }.count
            guard lastPort <= 65535 else {
                throw v.fail("spec.firstPodPort", "Invalid value: \(firstPodPort): \(podCount) pods from here would need ports up to \(lastPort)")
            }
        }
        var resources = GatewayResources()
        for (index, item) in (try v.list(spec["manifests"], "spec.manifests") ?? []).enumerated() {
            let path = "spec.manifests[\(index)]"
            let entry = try v.map(item, path, required: true)!
            if let inline = try v.string(entry["inline"], path + ".inline") {
                try ManifestLoader.load(inline, file: "\(file) (\(path).inline)", into: &resources)
            } else if let relative = try v.string(entry["file"], path + ".file", required: true, minLength: 1) {
                let resolved = relative.hasPrefix("/") ? relative
                    : URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent(relative).path
                let more: GatewayResources
                do {
                    more = try ManifestLoader.load(files: [resolved])
                } catch let error as ConfigError {
                    throw error
                } catch {
                    throw v.fail(path + ".file", "\(error)")
                }
                resources.pools += more.pools
                resources.models += more.models
                resources.objectives += more.objectives
                resources.rewrites += more.rewrites
                if let config = more.pickerConfig { resources.pickerConfig = config }
            }
        }
        if resources.pools.isEmpty {
            resources.pools = [try generatedPool(name: name, pools: pools, v)]
        }
        return FleetSpec(
            name: name, pools: pools, resources: resources, gateway: gateway, dataPlane: dataPlane, admin: admin, firstPodPort: firstPodPort)
    }

    /// Envoy's `outlier_detection` fields, in seconds; absent fields keep Envoy's defaults.
    static func outlierDetection(_ map: [String: Any], _ path: String, _ v: FieldValidator) throws(ConfigError) -> OutlierDetection {
        let known: Set<String> = ["consecutive5xx", "baseEjectionSeconds", "maxEjectionSeconds", "maxEjectionPercent", "intervalSeconds"]
        if let unknown = map.keys.sorted().first(where: { !known.contains($0) }) {
            throw v.fail("\(path).\(unknown)", "field not declared in schema")
        }
        var detection = OutlierDetection()
        detection.consecutive5xx = try v.integer(map["consecutive5xx"], path + ".consecutive5xx", minimum: 1, maximum: 1_000_000) ?? detection.consecutive5xx
        let durations: [(String, WritableKeyPath<OutlierDetection, Double>)] = [
            ("baseEjectionSeconds", \.baseEjectionTime), ("maxEjectionSeconds", \.maxEjectionTime), ("intervalSeconds", \.interval),
        ]
        for (key, keyPath) in durations {
            guard let seconds = try v.number(map[key], "\(path).\(key)") else { continue }
            guard seconds > 0, seconds <= 86_400 else { throw v.fail("\(path).\(key)", "Invalid value: \(seconds): must be > 0 and at most a day") }
            detection[keyPath: keyPath] = seconds
        }
        if let percent = try v.number(map["maxEjectionPercent"], path + ".maxEjectionPercent") {
            guard (0...100).contains(percent) else { throw v.fail(path + ".maxEjectionPercent", "Invalid value: \(percent): must be 0 to 100") }
            detection.maxEjectionPercent = percent
        }
        return detection
    }

    private static func pool(_ item: Any, _ path: String, _ v: FieldValidator) throws(ConfigError) -> PodPoolSpec {
        let map = try v.map(item, path, required: true)!
        let known: Set<String> = ["name", "accelerator", "model", "tensorParallelSize", "replicas", "labels", "adapters", "engineArgs", "startupSeconds", "probes"]
        if let unknown = map.keys.sorted().first(where: { !known.contains($0) }) {
            throw v.fail("\(path).\(unknown)", "field not declared in schema")
        }
        let name = try v.string(map["name"], path + ".name", required: true, minLength: 1, maxLength: 50,
                                pattern: ("DNS label", { KubernetesPatterns.isLabelValue($0) && !$0.contains(".") && !$0.contains("_") }))!
        var labels: [String: String] = [:]
        for (key, value) in try v.map(map["labels"], path + ".labels") ?? [:] {
            guard KubernetesPatterns.isLabelKey(key) else { throw v.fail("\(path).labels", "Invalid value: \"\(key)\": not a label key") }
            guard let text = try v.string(value, "\(path).labels.\(key)", required: true), KubernetesPatterns.isLabelValue(text) else {
                throw v.fail("\(path).labels.\(key)", "Invalid value: not a label value")
            }
            labels[key] = text
        }
        var adapters: [AdapterSpec] = []
        for (index, entry) in (try v.list(map["adapters"], path + ".adapters") ?? []).enumerated() {
            let adapterPath = "\(path).adapters[\(index)]"
            let adapter = try v.map(entry, adapterPath, required: true)!
            let preload = try v.bool(adapter["preload"], adapterPath + ".preload") ?? false
            let runtimeOnly = try v.bool(adapter["runtimeOnly"], adapterPath + ".runtimeOnly") ?? false
            if preload && runtimeOnly { throw v.fail(adapterPath, "Invalid value: an adapter loaded at start cannot be runtime-only") }
            adapters.append(AdapterSpec(
                name: try v.string(adapter["name"], adapterPath + ".name", required: true, minLength: 1)!, preload: preload, runtimeOnly: runtimeOnly))
        }
        var engineArgs: [(name: String, value: String)] = []
        for (flag, value) in (try v.map(map["engineArgs"], path + ".engineArgs") ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard engineFlags.contains(flag) else {
                throw v.fail("\(path).engineArgs.\(flag)", "Unsupported value: supported flags: " + engineFlags.sorted().joined(separator: ", "))
            }
            guard value is String || value is Int || value is Double || value is Bool else {
                throw v.fail("\(path).engineArgs.\(flag)", "Invalid value: must be a string, number or boolean")
            }
            // Checked now, by the same table a pod applies it with, so the file names the field.
            var scratch = ServerConfiguration()
            do {
                try PodFlags.apply(flag, "\(value)", to: &scratch)
            } catch {
                throw v.fail("\(path).engineArgs.\(flag)", "Invalid value: \(error)")
            }
            engineArgs.append((flag, "\(value)"))
        }
        let startup = try v.number(map["startupSeconds"], path + ".startupSeconds") ?? 5
        guard startup >= 0, startup.isFinite else { throw v.fail(path + ".startupSeconds", "Invalid value: \(startup): must be ≥ 0") }
        var probes = ProbeSettings()
        if let map = try v.map(map["probes"], path + ".probes") {
            let known: Set<String> = ["periodSeconds", "timeoutSeconds", "readinessFailureThreshold", "livenessFailureThreshold"]
            if let unknown = map.keys.sorted().first(where: { !known.contains($0) }) {
                throw v.fail("\(path).probes.\(unknown)", "field not declared in schema")
            }
            for key in ["periodSeconds", "timeoutSeconds"] {
                guard let seconds = try v.number(map[key], "\(path).probes.\(key)") else { continue }
                guard seconds >= 0.01, seconds <= 3600 else { throw v.fail("\(path).probes.\(key)", "Invalid value: \(seconds): must be within 0.01…3600") }
                if key == "periodSeconds" { probes.periodSeconds = seconds } else { probes.timeoutSeconds = seconds }
            }
            probes.readinessFailureThreshold = try v.integer(
                map["readinessFailureThreshold"], path + ".probes.readinessFailureThreshold", minimum: 1, maximum: 1000) ?? probes.readinessFailureThreshold
            probes.livenessFailureThreshold = try v.integer(
                map["livenessFailureThreshold"], path + ".probes.livenessFailureThreshold", minimum: 0, maximum: 1000) ?? probes.livenessFailureThreshold
        }
        return PodPoolSpec(
            name: name, accelerator: try v.string(map["accelerator"], path + ".accelerator", required: true, minLength: 1)!,
            model: try v.string(map["model"], path + ".model", required: true, minLength: 1)!,
            tensorParallelSize: try v.integer(map["tensorParallelSize"], path + ".tensorParallelSize", minimum: 1, maximum: 64) ?? 1,
            replicas: try v.integer(map["replicas"], path + ".replicas", required: true, minimum: 0, maximum: 10_000)!,
            labels: labels, adapters: adapters, engineArgs: engineArgs, startupSeconds: startup, probes: probes)
    }

    /// Without manifests: one InferencePool, named after the fleet, selecting the labels every
    /// pod pool has in common.
    private static func generatedPool(name: String, pools: [PodPoolSpec], _ v: FieldValidator) throws(ConfigError) -> InferencePool {
        var shared = pools[0].labels
        for pool in pools.dropFirst() { shared = shared.filter { pool.labels[$0.key] == $0.value } }
        guard !shared.isEmpty else {
            throw v.fail("spec.pools", "no label common to every pool: give the pools a shared label, or an InferencePool in spec.manifests")
        }
        let selector = shared.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        var resources = GatewayResources()
        try ManifestLoader.load("""
            apiVersion: inference.networking.k8s.io/v1
            kind: InferencePool
            metadata: {name: \(name)}
            spec:
              selector: {matchLabels: {\(selector)}}
              targetPorts: [{number: 8000}]
              endpointPickerRef: {name: \(name)-epp, port: {number: 9002}}
            """, file: "generated InferencePool", into: &resources)
        return resources.pools[0]
    }
}
