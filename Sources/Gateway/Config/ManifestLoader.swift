import Foundation
import Yams

/// Everything the gateway was configured with, from one or more multi-document YAML files.
public struct GatewayResources: Sendable, Equatable {
    public var pools: [InferencePool] = []
    public var models: [InferenceModel] = []
    public var objectives: [InferenceObjective] = []
    public var rewrites: [InferenceModelRewrite] = []
    public var pickerConfig: EndpointPickerConfig?
    /// Objects of other kinds (Deployments, Services, HTTPRoutes…), skipped: a manifest bundle
    /// often carries them next to the inference resources.
    public var skipped: [String] = []

    public init() {}
}

/// Reads GIE manifests as `kubectl apply` would validate them: each document's apiVersion and
/// kind pick the schema, and the first violation stops loading with the file, the document,
/// the field and the reason.
public enum ManifestLoader {
    public static let poolV1 = "inference.networking.k8s.io/v1"
    public static let xK8sV1alpha2 = "inference.networking.x-k8s.io/v1alpha2"
    public static let pickerConfigVersion = "inference.networking.x-k8s.io/v1alpha1"

    /// Loads and validates files in order.
    public static func load(files: [String]) throws -> GatewayResources {
        var resources = GatewayResources()
        for file in files {
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw ConfigError(file: file, document: 0, object: "", field: "", reason: "cannot read the file: \(error.localizedDescription)")
            }
            try load(text, file: file, into: &resources)
        }
        return resources
    }

    /// Loads and validates the documents of one YAML text.
    public static func load(_ text: String, file: String, into resources: inout GatewayResources) throws(ConfigError) {
        let documents: [Any?]
        do {
            documents = try Array(Yams.load_all(yaml: text))
        } catch {
            throw ConfigError(file: file, document: 0, object: "", field: "", reason: "not valid YAML: \(error)")
        }
        for (index, document) in documents.enumerated() {
            guard let document = present(document) else { continue }
            var validator = FieldValidator(file: file, document: index + 1)
            guard let object = document as? [String: Any] else {
                throw validator.fail("", "a Kubernetes object must be a mapping")
            }
            let apiVersion = try validator.string(object["apiVersion"], "apiVersion", required: true)!
            let kind = try validator.string(object["kind"], "kind", required: true)!
            let metadata = try validator.map(object["metadata"], "metadata")
            let name = try validator.string(metadata?["name"], "metadata.name", required: kind != "EndpointPickerConfig") ?? ""
            let namespace = try validator.string(metadata?["namespace"], "metadata.namespace") ?? "default"
            validator.object = "\(kind) \"\(name)\""
            let spec = object["spec"]
            switch (apiVersion, kind) {
            case (poolV1, "InferencePool"):
                resources.pools.append(try poolV1(spec, name: name, namespace: namespace, validator))
            case (xK8sV1alpha2, "InferencePool"):
                resources.pools.append(try poolV1alpha2(spec, name: name, namespace: namespace, validator))
            case (xK8sV1alpha2, "InferenceModel"):
                resources.models.append(try model(spec, name: name, namespace: namespace, validator))
            case (xK8sV1alpha2, "InferenceObjective"):
                resources.objectives.append(try objective(spec, name: name, namespace: namespace, validator))
            case (xK8sV1alpha2, "InferenceModelRewrite"):
                resources.rewrites.append(try rewrite(spec, name: name, namespace: namespace, order: resources.rewrites.count, validator))
            case (pickerConfigVersion, "EndpointPickerConfig"):
                validator.object = ""
                resources.pickerConfig = try EndpointPickerConfig(object, validator)
            case (_, "InferencePool"), (_, "InferenceModel"), (_, "InferenceObjective"), (_, "InferenceModelRewrite"), (_, "EndpointPickerConfig"):
                throw validator.fail("apiVersion", "Unsupported value: \"\(apiVersion)\": \(kind) is served as "
                    + (kind == "InferencePool" ? "\"\(poolV1)\" or \"\(xK8sV1alpha2)\"" : kind == "EndpointPickerConfig" ? "\"\(pickerConfigVersion)\"" : "\"\(xK8sV1alpha2)\""))
            default:
                resources.skipped.append("\(apiVersion) \(kind) \(name)")
            }
        }
    }

    // MARK: Schemas

    /// `inference.networking.k8s.io/v1` InferencePool (gie-crds/v1.5.0; endpointPickerRef
    /// optional as of main-v1.6).
    static func poolV1(_ value: Any?, name: String, namespace: String, _ v: FieldValidator) throws(ConfigError) -> InferencePool {
        let spec = try v.map(value, "spec", required: true)!
        let selector = try v.map(spec["selector"], "spec.selector", required: true)!
        let labels = try matchLabels(selector["matchLabels"], "spec.selector.matchLabels", v)
        let ports = try v.list(spec["targetPorts"], "spec.targetPorts", required: true, minItems: 1, maxItems: 8)!
        var numbers: [Int] = []
        for (index, item) in ports.enumerated() {
            let port = try v.map(item, "spec.targetPorts[\(index)]", required: true)!
            numbers.append(try v.integer(port["number"], "spec.targetPorts[\(index)].number", required: true, minimum: 1, maximum: 65535)!)
        }
        if Set(numbers).count != numbers.count {
            throw v.fail("spec.targetPorts", "Invalid value: \"array\": port number must be unique")
        }
        let appProtocol = try v.string(spec["appProtocol"], "spec.appProtocol", allowed: ["http", "kubernetes.io/h2c"]) ?? "http"
        var pool = InferencePool(
            name: name, namespace: namespace, apiVersion: poolV1, selector: labels, targetPorts: numbers, appProtocol: appProtocol,
            endpointPickerName: nil, endpointPickerPort: nil, failureMode: .failClose)
        if let ref = try v.map(spec["endpointPickerRef"], "spec.endpointPickerRef") {
            let path = "spec.endpointPickerRef"
            _ = try v.string(ref["group"], path + ".group", maxLength: 253, pattern: (KubernetesPatterns.groupExpression, KubernetesPatterns.isGroup))
            let kind = try v.string(ref["kind"], path + ".kind", minLength: 1, maxLength: 63, pattern: (KubernetesPatterns.kindExpression, KubernetesPatterns.isKind)) ?? "Service"
            pool.endpointPickerName = try v.string(ref["name"], path + ".name", required: true, minLength: 1, maxLength: 253)
            if let port = try v.map(ref["port"], path + ".port") {
                pool.endpointPickerPort = try v.integer(port["number"], path + ".port.number", required: true, minimum: 1, maximum: 65535)
            } else if kind == "Service" {
                throw v.fail(path, "Invalid value: \"object\": port is required when kind is 'Service' or unspecified (defaults to 'Service')")
            }
            if let mode = try v.string(ref["failureMode"], path + ".failureMode", allowed: ["FailOpen", "FailClose"]) {
                pool.failureMode = FailureMode(rawValue: mode)!
            }
        }
        return pool
    }

    /// The deprecated `inference.networking.x-k8s.io/v1alpha2` InferencePool (gie-crds/v1.4.0).
    static func poolV1alpha2(_ value: Any?, name: String, namespace: String, _ v: FieldValidator) throws(ConfigError) -> InferencePool {
        let spec = try v.map(value, "spec", required: true)!
        let labels = try matchLabels(spec["selector"], "spec.selector", v)
        let port = try v.integer(spec["targetPortNumber"], "spec.targetPortNumber", required: true, minimum: 1, maximum: 65535)!
        var pool = InferencePool(
            name: name, namespace: namespace, apiVersion: xK8sV1alpha2, selector: labels, targetPorts: [port], appProtocol: "http",
            endpointPickerName: nil, endpointPickerPort: nil, failureMode: .failClose)
        let ref = try v.map(spec["extensionRef"], "spec.extensionRef", required: true)!
        let path = "spec.extensionRef"
        pool.endpointPickerName = try v.string(ref["name"], path + ".name", required: true, minLength: 1, maxLength: 253)
        // "Implementations SHOULD infer a default value of 9002 when the Kind is Service."
        pool.endpointPickerPort = try v.integer(ref["portNumber"], path + ".portNumber", minimum: 1, maximum: 65535) ?? 9002
        if let mode = try v.string(ref["failureMode"], path + ".failureMode", allowed: ["FailOpen", "FailClose"]) {
            pool.failureMode = FailureMode(rawValue: mode)!
        }
        return pool
    }

    static func matchLabels(_ value: Any?, _ path: String, _ v: FieldValidator) throws(ConfigError) -> [String: String] {
        let map = try v.map(value, path, required: true)!
        if map.isEmpty { throw v.fail(path, "Invalid value: 0: \(path) in body should have at least 1 properties") }
        if map.count > 64 { throw v.fail(path, "Too many: \(map.count): must have at most 64 items") }
        var labels: [String: String] = [:]
        for key in map.keys.sorted() {
            guard KubernetesPatterns.isLabelKey(key) else {
                throw v.fail("\(path).\(key)", "Invalid value: \"\(key)\": a label key must be a name of at most 63 characters, with an optional DNS subdomain prefix and '/'")
            }
            // YAML may read a label value like `8000` or `true` as a number or a boolean; Kubernetes needs strings.
            labels[key] = try v.string(map[key], "\(path).\(key)", maxLength: 63,
                                       pattern: (KubernetesPatterns.labelValueExpression, KubernetesPatterns.isLabelValue)) ?? ""
        }
        return labels
    }

    /// `spec.poolRef` of the x-k8s kinds: `{group, kind: InferencePool, name}`.
    static func poolRef(_ value: Any?, _ v: FieldValidator) throws(ConfigError) -> String {
        let ref = try v.map(value, "spec.poolRef", required: true)!
        _ = try v.string(ref["group"], "spec.poolRef.group", maxLength: 253, pattern: (KubernetesPatterns.groupExpression, KubernetesPatterns.isGroup))
        _ = try v.string(ref["kind"], "spec.poolRef.kind", maxLength: 63, allowed: ["InferencePool"])
        return try v.string(ref["name"], "spec.poolRef.name", required: true, minLength: 1, maxLength: 253)!
    }

    /// InferenceModel v1alpha2 (gie-crds/v0.5.1).
    static func model(_ value: Any?, name: String, namespace: String, _ v: FieldValidator) throws(ConfigError) -> InferenceModel {
        let spec = try v.map(value, "spec", required: true)!
        let modelName = try v.string(spec["modelName"], "spec.modelName", required: true, maxLength: 256)!
        let criticality = try v.string(spec["criticality"], "spec.criticality", allowed: ["Critical", "Standard", "Sheddable"]).flatMap(Criticality.init)
        let targets = try weightedTargets(spec["targetModels"], "spec.targetModels", nameKey: "name", maxItems: 10, v)
        return InferenceModel(
            name: name, namespace: namespace, modelName: modelName, criticality: criticality, targetModels: targets,
            poolName: try poolRef(spec["poolRef"], v))
    }

    /// InferenceObjective v1alpha2 (gie-crds/v1.5.0).
    static func objective(_ value: Any?, name: String, namespace: String, _ v: FieldValidator) throws(ConfigError) -> InferenceObjective {
        let spec = try v.map(value, "spec", required: true)!
        return InferenceObjective(
            name: name, namespace: namespace, priority: try v.integer(spec["priority"], "spec.priority"),
            poolName: try poolRef(spec["poolRef"], v))
    }

    /// InferenceModelRewrite v1alpha2 (gie-crds/v1.5.0).
    static func rewrite(_ value: Any?, name: String, namespace: String, order: Int, _ v: FieldValidator) throws(ConfigError) -> InferenceModelRewrite {
        let spec = try v.map(value, "spec", required: true)!
        let pool = try poolRef(spec["poolRef"], v)
        var rules: [InferenceModelRewrite.Rule] = []
        for (index, item) in (try v.list(spec["rules"], "spec.rules", maxItems: 8) ?? []).enumerated() {
            let path = "spec.rules[\(index)]"
            let rule = try v.map(item, path, required: true)!
            var matches: [String] = []
            for (matchIndex, matchItem) in (try v.list(rule["matches"], path + ".matches") ?? []).enumerated() {
                let matchPath = "\(path).matches[\(matchIndex)].model"
                let match = try v.map(try v.map(matchItem, "\(path).matches[\(matchIndex)]", required: true)!["model"], matchPath, required: true)!
                _ = try v.string(match["type"], matchPath + ".type", allowed: ["Exact"])
                matches.append(try v.string(match["value"], matchPath + ".value", required: true, minLength: 1)!)
            }
            let targets = try weightedTargets(rule["targets"], path + ".targets", nameKey: "modelRewrite", maxItems: .max, v)
            rules.append(.init(matches: matches, targets: targets))
        }
        return InferenceModelRewrite(name: name, namespace: namespace, poolName: pool, rules: rules, order: order)
    }

    /// A list of `{<nameKey>, weight 1..1000000}`, weights set on all or none.
    static func weightedTargets(_ value: Any?, _ path: String, nameKey: String, maxItems: Int, _ v: FieldValidator) throws(ConfigError) -> [WeightedTarget] {
        var targets: [WeightedTarget] = []
        for (index, item) in (try v.list(value, path, maxItems: maxItems) ?? []).enumerated() {
            let target = try v.map(item, "\(path)[\(index)]", required: true)!
            targets.append(WeightedTarget(
                model: try v.string(target[nameKey], "\(path)[\(index)].\(nameKey)", required: true, minLength: 1, maxLength: 253)!,
                weight: try v.integer(target["weight"], "\(path)[\(index)].weight", minimum: 1, maximum: 1_000_000)))
        }
        let weighted = targets.filter { $0.weight != nil }.count
        if weighted != 0, weighted != targets.count {
            throw v.fail(path, "Invalid value: \"array\": Weights should be set for all models, or none of the models.")
        }
        return targets
    }
}
