import Foundation
@testable import Gateway
import InferenceAPI
import Testing

/// GIE's own example manifests, copied into the project (reference/gie-examples).
let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("reference/gie-examples")

func load(_ yaml: String) throws(ConfigError) -> GatewayResources {
    var resources = GatewayResources()
    try ManifestLoader.load(yaml, file: "test.yaml", into: &resources)
    return resources
}

@Suite struct ManifestLoaderTests {
    @Test func readsGIEsExampleManifests() throws {
        let names = [
            "main_site-src_api-types_inferencepool_example.yaml", "v0.5.1_config_manifests_inferencepool-resources.yaml",
            "v0.5.1_config_manifests_inferencemodel.yaml", "v1.5.0_config_manifests_inferenceobjective.yaml",
            "v1.5.0_site-src_guides_adapter-rollout_inferencemodelrewrite_90-10.yaml", "v1.5.0_epp_default_config_rendered.yaml",
            "main_conformance_resources_base.yaml",
        ]
        let resources = try ManifestLoader.load(files: names.map { examples.appendingPathComponent($0).path })
        let v1 = try #require(resources.pools.first { $0.name == "vllm-qwen3-32b" })
        #expect(v1.selector == ["app": "vllm-qwen3-32b"])
        #expect(v1.targetPorts == [8000])
        #expect(v1.failureMode == .failOpen)
        #expect(v1.endpointPickerPort == 9002)
        let alpha = try #require(resources.pools.first { $0.name == "vllm-llama3-8b-instruct" })
        #expect(alpha.apiVersion == ManifestLoader.xK8sV1alpha2)
        #expect(alpha.targetPorts == [8000] && alpha.failureMode == .failClose && alpha.endpointPickerPort == 9002)
        #expect(resources.models.map(\.modelName) == ["food-review", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct"])
        #expect(resources.models[0].targetModels == [WeightedTarget(model: "food-review-1", weight: 100)])
        #expect(resources.models[1].criticality == .critical)
        #expect(resources.objectives.map(\.priority) == [1, 2, 2])
        let rewrite = try #require(resources.rewrites.first)
        #expect(rewrite.rules.first?.matches == ["small-segment-lora"])
        #expect(rewrite.rules.first?.targets.map(\.weight) == [90, 10])
        let config = try #require(resources.pickerConfig)
        #expect(config == EndpointPickerConfig.default)
        // Deployments, Services, Gateways… in the bundles are skipped, not refused.
        #expect(!resources.skipped.isEmpty)
        #expect(resources.pools.count >= 3)
    }

    @Test func defaultPickerConfigIsQueue2KV2Prefix3() {
        let profile = EndpointPickerConfig.default.profiles.first
        #expect(profile?.name == "default")
        #expect(profile?.plugins.map(\.pluginRef) == ["queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer", "max-score-picker"])
        #expect(profile?.plugins.map(\.weight) == [2, 2, 3, nil])
        #expect(EndpointPickerConfig.default.saturationDetector == "utilization-detector")
    }

    /// A bad manifest is refused with the file, the document, the field and the reason.
    @Test(arguments: [
        ("spec:\n  selector: {matchLabels: {app: x}}\n  targetPorts: [{number: 70000}]\n  endpointPickerRef: {name: epp, port: {number: 9002}}",
         "test.yaml: document 1: The InferencePool \"p\" is invalid: spec.targetPorts[0].number: Invalid value: 70000: spec.targetPorts[0].number in body should be less than or equal to 65535"),
        ("spec:\n  selector: {matchLabels: {app: x}}\n  targetPorts: [{number: 8000}, {number: 8000}]",
         "test.yaml: document 1: The InferencePool \"p\" is invalid: spec.targetPorts: Invalid value: \"array\": port number must be unique"),
        ("spec:\n  selector: {matchLabels: {app: x}}\n  targetPorts: [{number: 8000}]\n  endpointPickerRef: {name: epp}",
         "test.yaml: document 1: The InferencePool \"p\" is invalid: spec.endpointPickerRef: Invalid value: \"object\": port is required when kind is 'Service' or unspecified (defaults to 'Service')"),
        ("spec:\n  selector: {matchLabels: {app: x}}\n  targetPorts: [{number: 8000}]\n  endpointPickerRef: {name: e, port: {number: 1}, failureMode: Open}",
         "test.yaml: document 1: The InferencePool \"p\" is invalid: spec.endpointPickerRef.failureMode: Unsupported value: \"Open\": supported values: \"FailOpen\", \"FailClose\""),
        ("spec:\n  targetPorts: [{number: 8000}]",
         "test.yaml: document 1: The InferencePool \"p\" is invalid: spec.selector: Required value"),
    ])
    func refusesBadPools(_ spec: String, _ message: String) {
        let yaml = "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\n" + spec
        #expect { try load(yaml) } throws: { error in
            String(describing: error) == message
        }
    }

    @Test func refusesBadModelsAndConfigs() {
        let partialWeights = """
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModel
            metadata: {name: m}
            spec: {modelName: m, poolRef: {name: p}, targetModels: [{name: a, weight: 1}, {name: b}]}
            """
        #expect { try load(partialWeights) } throws: { String(describing: $0).hasSuffix("spec.targetModels: Invalid value: \"array\": Weights should be set for all models, or none of the models.") }
        let badCriticality = "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\nmetadata: {name: m}\nspec: {modelName: m, criticality: Low, poolRef: {name: p}}"
        #expect { try load(badCriticality) } throws: { String(describing: $0).contains("spec.criticality: Unsupported value: \"Low\"") }
        let unknownPlugin = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins: [{type: magic-scorer}]"
        #expect { try load(unknownPlugin) } throws: { String(describing: $0).contains("plugins[0].type: Unsupported value: \"magic-scorer\"") }
        let danglingRef = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: d, plugins: [{pluginRef: kv}]}]"
        #expect { try load(danglingRef) } throws: { String(describing: $0).contains("schedulingProfiles[0].plugins[0].pluginRef: Not found: \"kv\"") }
        let wrongVersion = "apiVersion: inference.networking.k8s.io/v2\nkind: InferencePool\nmetadata: {name: p}\nspec: {}"
        #expect { try load(wrongVersion) } throws: { String(describing: $0).contains("apiVersion: Unsupported value: \"inference.networking.k8s.io/v2\"") }
    }
}
