import FakeVLLM
import Foundation
import Gateway
import InferenceAPI
import NIOCore

/// A fleet as Kubernetes objects, as GIE v1.5.0 deploys a model-server pool: per pod pool a
/// Deployment running `understudy serve` with vLLM's flags and the probes of GIE's vLLM
/// Deployment (`config/manifests/vllm/gpu-deployment.yaml`), and a Service; the InferencePool
/// (v1), its InferenceObjectives and InferenceModelRewrites, an HTTPRoute to it from the Gateway
/// `inference-gateway`; and the endpoint picker as GIE's `inferencepool` chart renders it (GIE's
/// own EPP image, which discovers the pods through the API server; Understudy's picker has no
/// Kubernetes discovery), serving ext_proc with TLS on 9002 and gRPC health on 9003.
public enum KubernetesManifests {
    public struct Options: Sendable {
        /// The image built from the Containerfile (its entry point is `understudy serve`).
        public var image = "understudy:latest"
        public var pickerImage = "registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0"
        /// The Gateway the HTTPRoute attaches to.
        public var gateway = "inference-gateway"

        public init() {}
    }

    /// The model server's port in every pod (vLLM's default, GIE's targetPort).
    static let serverPort = 8000

    public static func render(_ spec: FleetSpec, options: Options = Options()) throws -> String {
        guard let pool = spec.resources.pools.first else { throw FleetError("the fleet has no InferencePool") }
        guard spec.resources.pools.count == 1 else { throw FleetError("manifests are made for a fleet with one InferencePool") }
        let config = spec.resources.pickerConfig ?? .default
        if let own = config.plugins.first(where: { EndpointPickerConfig.baselineTypes.contains($0.type) }) {
            throw FleetError("the picker's plugin \(own.type) is Understudy's own baseline: GIE's picker, which the manifests deploy, has no such plugin")
        }
        guard spec.resources.models.isEmpty else {
            throw FleetError("InferenceModels (GIE v0.x) have no place in GIE v1.5.0's resources: use InferenceObjectives and InferenceModelRewrites")
        }
        let picker = "\(pool.name)-epp"
        var documents = [header(spec)]
        for podPool in spec.pools {
            documents.append(try deployment(podPool, namespace: pool.namespace, image: options.image))
            documents.append(service(podPool, namespace: pool.namespace))
        }
        documents.append(inferencePool(pool, picker: picker))
        documents += spec.resources.objectives.filter { $0.poolName == pool.name }.map(objective)
        documents += spec.resources.rewrites.filter { $0.poolName == pool.name }.map(rewrite)
        documents.append(httpRoute(pool, gateway: options.gateway))
        documents += endpointPicker(pool, name: picker, config: config, image: options.pickerImage)
        return documents.joined(separator: "\n---\n")
    }

    static func header(_ spec: FleetSpec) -> String {
        """
        # Fleet \(spec.name) for Kubernetes, made by `understudy manifests`. Needs GIE v1.5.0's CRDs
        # (InferencePool v1, InferenceObjective and InferenceModelRewrite v1alpha2), Gateway API's
        # HTTPRoute, a Gateway named as the HTTPRoute's parent, and the image built from the
        # Containerfile (podman build -t understudy:latest -f Containerfile .).
        """
    }

    /// A pod pool's Deployment: `understudy serve` with the flags its fleet pods get.
    static func deployment(_ pool: PodPoolSpec, namespace: String, image: String) throws -> String {
        var configuration = ServerConfiguration()
        try Fleet.configure(&configuration, pool: pool, port: serverPort)
        configuration.host = "0.0.0.0"
        configuration.startupDelay = pool.startupSeconds
        var arguments = ProcessPod.arguments(for: configuration)
        if pool.startupSeconds > 0 { arguments += ["--startup-delay", "\(pool.startupSeconds)"] }
        let labels = pool.labels.merging(["inference.networking.k8s.io/engine-type": "vllm"]) { own, _ in own }
        let runtimeLoRA = configuration.allowRuntimeLoRAUpdating
            ? "\n        - {name: VLLM_ALLOW_RUNTIME_LORA_UPDATING, value: \"true\"}" : ""
        return """
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: \(pool.name)
              namespace: \(namespace)
              labels: \(flow(pool.labels))
            spec:
              replicas: \(pool.replicas)
              selector:
                matchLabels: \(flow(pool.labels))
              template:
                metadata:
                  labels: \(flow(labels))
                spec:
                  containers:
                  - name: vllm
                    image: \(quoted(image))
                    imagePullPolicy: IfNotPresent
                    args: \(flow(arguments))
                    env:
                    - name: POD_NAME
                      valueFrom: {fieldRef: {fieldPath: metadata.name}}
                    - name: NAMESPACE
                      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}\(runtimeLoRA)
                    ports:
                    - {containerPort: \(serverPort), name: http, protocol: TCP}
                    lifecycle:
                      preStop:
                        sleep: {seconds: 30}
                    livenessProbe:
                      httpGet: {path: /health, port: http, scheme: HTTP}
                      periodSeconds: 1
                      successThreshold: 1
                      failureThreshold: 5
                      timeoutSeconds: 1
                    readinessProbe:
                      httpGet: {path: /health, port: http, scheme: HTTP}
                      periodSeconds: 1
                      successThreshold: 1
                      failureThreshold: 1
                      timeoutSeconds: 1
                    startupProbe:
                      httpGet: {path: /health, port: http, scheme: HTTP}
                      failureThreshold: 600
                      initialDelaySeconds: 2
                      periodSeconds: 1
                    resources:
                      requests: {cpu: 100m, memory: 128Mi}
                  restartPolicy: Always
                  enableServiceLinks: false
                  terminationGracePeriodSeconds: 130
            """
    }

    /// The pool's pods as one Service, to reach them without the gateway.
    static func service(_ pool: PodPoolSpec, namespace: String) -> String {
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: \(pool.name)
          namespace: \(namespace)
        spec:
          type: ClusterIP
          selector: \(flow(pool.labels))
          ports:
          - {name: http, port: \(serverPort), targetPort: http, protocol: TCP}
        """
    }

    static func inferencePool(_ pool: InferencePool, picker: String) -> String {
        """
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata:
          name: \(pool.name)
          namespace: \(pool.namespace)
        spec:
          targetPorts: [\(pool.targetPorts.map { "{number: \($0)}" }.joined(separator: ", "))]
          appProtocol: \(pool.appProtocol)
          selector:
            matchLabels: \(flow(pool.selector))
          endpointPickerRef:
            name: \(picker)
            port: {number: 9002}
            failureMode: \(pool.failureMode.rawValue)
        """
    }

    static func objective(_ objective: InferenceObjective) -> String {
        """
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferenceObjective
        metadata:
          name: \(objective.name)
          namespace: \(objective.namespace)
        spec:
          \(objective.priority.map { "priority: \($0)\n  " } ?? "")poolRef: {group: inference.networking.k8s.io, name: \(objective.poolName)}
        """
    }

    static func rewrite(_ rewrite: InferenceModelRewrite) -> String {
        let rules = rewrite.rules.map { rule in
            let matches = rule.matches.map { "{model: {value: \(quoted($0))}}" }.joined(separator: ", ")
            let targets = rule.targets.map { "{modelRewrite: \(quoted($0.model))\($0.weight.map { ", weight: \($0)" } ?? "")}" }.joined(separator: ", ")
            return "  - matches: [\(matches)]\n    targets: [\(targets)]"
        }.joined(separator: "\n")
        return """
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModelRewrite
            metadata:
              name: \(rewrite.name)
              namespace: \(rewrite.namespace)
            spec:
              poolRef: {group: inference.networking.k8s.io, name: \(rewrite.poolName)}
              rules:
            \(rules)
            """
    }

    static func httpRoute(_ pool: InferencePool, gateway: String) -> String {
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata:
          name: \(pool.name)
          namespace: \(pool.namespace)
        spec:
          parentRefs:
          - {group: gateway.networking.k8s.io, kind: Gateway, name: \(gateway)}
          rules:
          - backendRefs:
            - {group: inference.networking.k8s.io, kind: InferencePool, name: \(pool.name)}
            matches:
            - path: {type: PathPrefix, value: /}
            timeouts: {request: 300s}
        """
    }

    /// The picker as GIE's chart renders it for one replica: its ServiceAccount and the Roles to
    /// read pods and GIE's resources, its EndpointPickerConfig, Deployment and Service.
    static func endpointPicker(_ pool: InferencePool, name: String, config: EndpointPickerConfig, image: String) -> [String] {
        let namespace = pool.namespace
        func role(_ suffix: String, _ rules: String) -> String {
            """
            apiVersion: rbac.authorization.k8s.io/v1
            kind: Role
            metadata:
              name: \(name)-\(suffix)
              namespace: \(namespace)
            rules:
            \(rules)
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: RoleBinding
            metadata:
              name: \(name)-\(suffix)
              namespace: \(namespace)
            subjects:
            - {kind: ServiceAccount, name: \(name), namespace: \(namespace)}
            roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: \(name)-\(suffix)}
            """
        }
        let configText = pickerConfigYAML(config).split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n")
        return [
            """
            apiVersion: v1
            kind: ServiceAccount
            metadata:
              name: \(name)
              namespace: \(namespace)
            """,
            role("sa", "- {apiGroups: [\"\"], resources: [pods], verbs: [get, watch, list]}"),
            role("non-sa", """
                - {apiGroups: [inference.networking.x-k8s.io], resources: [inferenceobjectives, inferencemodelrewrites], verbs: [get, watch, list]}
                - {apiGroups: [inference.networking.k8s.io], resources: [inferencepools], verbs: [get, watch, list]}
                """),
            """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: \(name)
              namespace: \(namespace)
            data:
              default-plugins.yaml: |
            \(configText)
            """,
            """
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: \(name)
              namespace: \(namespace)
              labels: {app.kubernetes.io/name: \(name)}
            spec:
              replicas: 1
              strategy: {type: Recreate}
              selector:
                matchLabels: {inferencepool: \(name)}
              template:
                metadata:
                  labels: {inferencepool: \(name)}
                spec:
                  serviceAccountName: \(name)
                  terminationGracePeriodSeconds: 130
                  containers:
                  - name: epp
                    image: \(quoted(image))
                    imagePullPolicy: IfNotPresent
                    args: [--pool-name, \(pool.name), --pool-namespace, \(namespace), --pool-group, inference.networking.k8s.io, --zap-encoder, json,
                      --config-file, /config/default-plugins.yaml, --v, "1", --tracing=false]
                    ports:
                    - {name: grpc, containerPort: 9002}
                    - {name: grpc-health, containerPort: 9003}
                    - {name: metrics, containerPort: 9090}
                    livenessProbe:
                      grpc: {port: 9003, service: inference-extension}
                      initialDelaySeconds: 5
                      periodSeconds: 10
                    readinessProbe:
                      grpc: {port: 9003, service: inference-extension}
                      periodSeconds: 2
                    env:
                    - name: NAMESPACE
                      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
                    - name: POD_NAME
                      valueFrom: {fieldRef: {fieldPath: metadata.name}}
                    volumeMounts:
                    - {name: plugins-config-volume, mountPath: /config}
                  volumes:
                  - name: plugins-config-volume
                    configMap: {name: \(name)}
            """,
            """
            apiVersion: v1
            kind: Service
            metadata:
              name: \(name)
              namespace: \(namespace)
            spec:
              type: ClusterIP
              selector: {inferencepool: \(name)}
              ports:
              - {name: grpc-ext-proc, protocol: TCP, port: 9002, targetPort: 9002, appProtocol: http2}
              - {name: http-metrics, protocol: TCP, port: 9090}
            """,
        ]
    }

    /// An EndpointPickerConfig as YAML (parameters as JSON, which YAML reads).
    static func pickerConfigYAML(_ config: EndpointPickerConfig) -> String {
        var lines = ["apiVersion: inference.networking.x-k8s.io/v1alpha1", "kind: EndpointPickerConfig"]
        if !config.featureGates.isEmpty { lines.append("featureGates: \(flow(config.featureGates))") }
        lines.append("plugins:")
        for plugin in config.plugins {
            var line = "- {name: \(quoted(plugin.name)), type: \(quoted(plugin.type))"
            if let parameters = plugin.parameters { line += ", parameters: \(parameters.jsonText())" }
            lines.append(line + "}")
        }
        lines.append("schedulingProfiles:")
        for profile in config.profiles {
            lines.append("- name: \(quoted(profile.name))")
            lines.append("  plugins:")
            for ref in profile.plugins {
                lines.append("  - {pluginRef: \(quoted(ref.pluginRef))\(ref.weight.map { ", weight: \($0.formatted(.number.grouping(.never)))" } ?? "")}")
            }
        }
        if let detector = config.saturationDetector { lines.append("saturationDetector: {pluginRef: \(quoted(detector))}") }
        return lines.joined(separator: "\n")
    }

    /// A YAML double-quoted scalar.
    static func quoted(_ text: String) -> String {
        var buffer = ByteBuffer()
        buffer.writeJSONString(text)
        return String(buffer: buffer)
    }

    /// A flow mapping with its keys in order.
    static func flow(_ map: [String: String]) -> String {
        "{" + map.sorted { $0.key < $1.key }.map { "\(quoted($0.key)): \(quoted($0.value))" }.joined(separator: ", ") + "}"
    }

    /// A flow sequence of strings.
    static func flow(_ items: [String]) -> String {
        "[" + items.map(quoted).joined(separator: ", ") + "]"
    }
}
