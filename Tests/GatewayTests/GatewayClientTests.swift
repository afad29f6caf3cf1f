import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import TestSupport
import Testing

/// Real clients and tools against the gateway: the OpenAI Python SDK and promtool.
extension EndToEnd {
@Suite struct GatewayClientTests {
    /// Pods as openai_sdk_check.py expects them: a context it can overflow, and tool calling.
    static func configureForSDKCheck(_ pod: inout ServerConfiguration) {
        pod.maxModelLen = 1024
        pod.enableAutoToolChoice = true
        pod.toolCallParser = "hermes"
    }

    @Test func theOpenAIPythonSDKWorksThroughTheGatewayAsAgainstAServer() async throws {
        let stack = try await GatewayStack.start { _, pod in Self.configureForSDKCheck(&pod) }
        defer { Task { await stack.stop() } }
        let result = try await runOpenAISDKCheck(base: stack.base + "/v1")
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("all OpenAI SDK checks passed"))
    }

    /// HTTPS and an API key on the gateway's listener; the pods behind it speak plain HTTP.
    @Test func theOpenAIPythonSDKWorksThroughTheGatewayOverHTTPSWithAKey() async throws {
        let (certificate, key) = try makeSelfSignedCertificate()
        var dataPlane = DataPlaneConfiguration()
        dataPlane.tls = ServerTLS(certificateFile: certificate, privateKeyFile: key)
        dataPlane.apiKey = "sk-gateway"
        let stack = try await GatewayStack.start(dataPlane: dataPlane) { _, pod in Self.configureForSDKCheck(&pod) }
        defer { Task { await stack.stop() } }
        let result = try await runOpenAISDKCheck(base: "https://127.0.0.1:\(stack.gateway.port)/v1", caCertificate: certificate, apiKey: "sk-gateway")
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("all OpenAI SDK checks passed"))
    }

    @Test func gatewayMetricsHaveGIEsNamesAndPromtoolAcceptsThem() async throws {
        let objectives = GatewayStack.objectives(["batch": -1])
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + objectives, metricsPort: 0) { _, pod in
            pod.enablePromptTokensDetails = true
        }
        defer { Task { await stack.stop() } }
        let body = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello there", "max_tokens": 4}"#
        #expect(try await stack.post("/v1/completions", body).status == 200)
        #expect(try await stack.post("/v1/completions", body, headers: [("x-gateway-inference-objective", "batch")]).status == 200)
        #expect(try await stack.post("/v1/completions", #"{"prompt": "no model"}"#).status == 400)
        #expect(try await stack.send("/v1/models", method: .GET).status == 200)  // not a GIE request: not counted

        let metricsURL = "http://127.0.0.1:\(try #require(stack.gateway.metricsPort))"
        let page = try await GatewayStack.client.execute(.init(url: metricsURL + "/metrics"), timeout: .seconds(5))
        #expect(page.headers.first(name: "content-type") == Prometheus.contentType)
        let text = String(buffer: try await page.body.collect(upTo: 1 << 22))
        let samples = try Prometheus.parse(text)
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
        }
        let model = "meta-llama/Meta-Llama-3-8B"
        #expect(value("inference_objective_request_total", ["model_name": model, "target_model_name": model, "priority": "0"]) == 1)
        #expect(value("inference_objective_request_total", ["model_name": model, "priority": "-1"]) == 1)
        #expect(value("inference_objective_request_error_total", ["error_code": "BadRequest"]) == 1)
        #expect(samples.filter { $0.name == "inference_objective_request_total" }.map(\.value).reduce(0, +) == 2)
        #expect(value("inference_objective_request_duration_seconds_count", ["model_name": model]) == 2)
        #expect(value("inference_objective_input_tokens_count", ["model_name": model]) == 2)
        #expect(value("inference_objective_output_tokens_sum", ["model_name": model]) == 8)
        #expect(value("inference_objective_running_requests", ["model_name": model]) == 0)
        #expect(value("inference_pool_ready_pods", ["name": "pool"]) == 3)
        #expect(samples.filter { $0.name == "inference_pool_per_pod_queue_size" }.count == 3)
        #expect(value("inference_extension_scheduler_e2e_duration_seconds_count") == 2)
        #expect(value("inference_extension_scheduler_attempts_total", ["status": "success"]) != nil)
        #expect(value("inference_extension_info") == 1)
        // Written as client_golang writes it: families sorted, Go's numbers.
        let families = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(families == families.sorted())
        #expect(text.contains(#"inference_extension_info{build_ref="understudy",commit="understudy"} 1\#n"#))
        #expect(text.contains(#"le="0.005""#) && text.contains(#"le="1""#) && !text.contains(#"le="1.0""#))
        let findings = try promtoolFindings(text)
        #expect(findings.isEmpty, "promtool: \(findings)")

        let missing = try await GatewayStack.client.execute(.init(url: metricsURL + "/nothing"), timeout: .seconds(5))
        #expect(missing.status == .notFound)
    }
}
}
