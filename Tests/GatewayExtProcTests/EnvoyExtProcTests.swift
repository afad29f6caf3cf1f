import Foundation
import Gateway
import InferenceAPI
import NIOCore
import TestSupport
import Testing

/// Understudy's picker behind real Envoy over ext_proc, speaking GIE's endpoint picker protocol:
/// GIE's conformance behaviours (their requests, sent to /v1/completions: the pods are vLLM, not
/// GIE's echo server), streaming, refusals and large bodies.
@Suite(.serialized) struct EnvoyExtProcTests {
    static func completion(_ model: String = EnvoyStack.model, prompt: String = "Hello there", maxTokens: Int = 3, stream: Bool = false) -> String {
        var body = ByteBuffer()
        body.writeJSON(.object([
            "model": .string(model), "prompt": .string(prompt), "max_tokens": .integer(maxTokens), "stream": .bool(stream),
        ]))
        return String(buffer: body)
    }

    @Test func aCompletionGoesThroughEnvoyToAPodThePickerChose() async throws {
        let stack = try await EnvoyStack.start()
        defer { Task { await stack.stop() } }
        let response = try await stack.post("/v1/completions", Self.completion())
        #expect(response.status == 200, "\(response.body)")
        #expect(response.json?["choices"]?.array?.first?["text"]?.string != nil)
        #expect(response.header("x-went-into-resp-headers") == "true")
        #expect(try await stack.accepted().reduce(0, +) == 1)
        // A request without a body goes to some endpoint too.
        let models = try await stack.get("/v1/models")
        #expect(models.status == 200)
        #expect(models.json?["data"]?.array?.first?["id"]?.string == EnvoyStack.model)
    }

    /// GIE's GatewayFollowingEPPRouting: traffic goes only to the endpoints the picker named.
    @Test func gatewayFollowingEPPRouting() async throws {
        let stack = try await EnvoyStack.start(manifests: EnvoyStack.poolYAML + EnvoyStack.conformancePicker)
        defer { Task { await stack.stop() } }
        let ips = stack.pods.map(\.configuration.host)
        var before = try await stack.accepted()
        for selected in [[2], [0, 1], [0, 1, 2]] {
            let header = selected.map { ips[$0] }.joined(separator: ",")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await stack.post("/v1/completions", Self.completion(), headers: [("test-epp-endpoint-selection", header)]).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == 200 }, "statuses for \(header): \(statuses)")
            let after = try await stack.accepted()
            let received = zip(after, before).map { $0 - $1 }
            #expect(received.reduce(0, +) == 20)
            for pod in received.indices where !selected.contains(pod) {
                #expect(received[pod] == 0, "pod \(pod) was not selected by \(header) but got \(received[pod])")
            }
            before = after
        }
        // Nothing named: the filter leaves no candidate, and the picker refuses with 429.
        let none = try await stack.post("/v1/completions", Self.completion(), headers: [("test-epp-endpoint-selection", "10.9.9.9")])
        #expect(none.status == 429)
        #expect(none.body == "inference error: ResourceExhausted - failed to find target endpoint")
    }

    /// GIE's GatewayFollowingEPPRoutingWithDataParallelism: one pod serving on several ports,
    /// each port its own endpoint; `ip:port` names one rank.
    @Test func gatewayFollowingEPPRoutingWithDataParallelism() async throws {
        let stack = try await EnvoyStack.start(manifests: EnvoyStack.poolYAML + EnvoyStack.conformancePicker, sameIP: true)
        defer { Task { await stack.stop() } }
        let ranks = stack.pods.indices.map { stack.address(of: $0) }
        for selected in [[1], [2], [0]] {
            let before = try await stack.accepted()
            let header = selected.map { ranks[$0] }.joined(separator: ",")
            for _ in 0..<5 {
                let response = try await stack.post("/v1/completions", Self.completion(), headers: [("test-epp-endpoint-selection", header)])
                #expect(response.status == 200)
            }
            let received = zip(try await stack.accepted(), before).map { $0 - $1 }
            #expect(received == stack.pods.indices.map { selected.contains($0) ? 5 : 0 }, "\(header): \(received)")
        }
    }

    /// GIE's GatewayDestinationEndpointServed: the data plane reports the endpoint that served
    /// the request, and the picker's verifier echoes it.
    @Test func gatewayDestinationEndpointServed() async throws {
        let stack = try await EnvoyStack.start(manifests: EnvoyStack.poolYAML + EnvoyStack.conformancePicker)
        defer { Task { await stack.stop() } }
        for pod in stack.pods.indices {
            let response = try await stack.post(
                "/v1/completions", Self.completion(), headers: [("test-epp-endpoint-selection", stack.pods[pod].configuration.host)])
            #expect(response.status == 200)
            #expect(response.header("x-conformance-test-served-endpoint") == stack.address(of: pod))
        }
    }

    /// GIE's EppUnAvailableFailOpen: the picker's Service loses its endpoints, and a FailOpen
    /// pool's requests still reach a pod (Envoy's `failure_mode_allow`).
    @Test func eppUnavailableFailOpen() async throws {
        let stack = try await EnvoyStack.start(manifests: EnvoyStack.pool(failureMode: "FailOpen") + EnvoyStack.conformancePicker)
        defer { Task { await stack.stop() } }
        let selected = [("test-epp-endpoint-selection", stack.pods[0].configuration.host)]
        let first = try await stack.post("/v1/completions", Self.completion(), headers: selected)
        #expect(first.status == 200, "\(first.status): \(first.body)")
        #expect(try await stack.accepted() == [1, 0, 0])
        try stack.envoy.setPickerEndpoints([])
        // As the conformance test, the request is repeated until it is answered three times in a
        // row, here by a pod the header did not name (Envoy takes the new endpoints in a moment,
        // and the requests it no longer routes by the picker go round the pool).
        var before = try await stack.accepted()
        var inARow = 0
        #expect(try await eventually {
            let status = try await stack.post("/v1/completions", Self.completion(), headers: selected).status
            let after = try await stack.accepted()
            let unrouted = status == 200 && after[0] == before[0]
            before = after
            inARow = unrouted ? inARow + 1 : (status == 200 ? inARow : 0)
            return inARow == 3
        })
    }

    /// The FailClose counterpart: with the picker's Service empty, or the picker itself gone,
    /// Envoy answers 500 and no pod sees the request.
    @Test func eppUnavailableFailClose() async throws {
        let stack = try await EnvoyStack.start(manifests: EnvoyStack.pool(failureMode: "FailClose"))
        defer { Task { await stack.stop() } }
        #expect(try await stack.post("/v1/completions", Self.completion()).status == 200)
        // Until Envoy has read the emptied endpoints, requests still go through the picker.
        try stack.envoy.setPickerEndpoints([])
        #expect(try await eventually { try await stack.post("/v1/completions", Self.completion()).status == 500 })
        let whileEmpty = try await stack.accepted().reduce(0, +)
        #expect(try await stack.post("/v1/completions", Self.completion()).status == 500)
        #expect(try await stack.accepted().reduce(0, +) == whileEmpty, "a refused request reached no pod")
        try stack.envoy.setPickerEndpoints(["127.0.0.1:\(stack.extProc.port)"])
        #expect(try await eventually { try await stack.post("/v1/completions", Self.completion()).status == 200 })
        await stack.extProc.stop()
        let beforeGone = try await stack.accepted().reduce(0, +)
        let response = try await stack.post("/v1/completions", Self.completion())
        #expect(response.status == 500)
        #expect(response.body.isEmpty)
        #expect(try await stack.accepted().reduce(0, +) == beforeGone, "a refused request reached no pod")
    }

    /// A stream through Envoy keeps arriving as events, and names the model the client asked
    /// for although the pods were sent its rewrite target.
    @Test func aStreamThroughEnvoyHasItsModelNameWrittenBack() async throws {
        let stack = try await EnvoyStack.start(manifests: EnvoyStack.poolYAML + TestManifests.alias("assistant", to: EnvoyStack.model))
        defer { Task { await stack.stop() } }
        let stream = try await stack.post("/v1/completions", Self.completion("assistant", maxTokens: 20, stream: true))
        #expect(stream.status == 200)
        #expect(stream.header("content-type")?.hasPrefix("text/event-stream") == true)
        let events = stream.body.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }
        #expect(events.count >= 20)
        #expect(events.allSatisfy { $0.contains(#""model":"assistant""#) }, "\(events.prefix(2))")
        #expect(stream.body.hasSuffix("data: [DONE]\n\n"))
        // A whole body changes length when its model is written back: it still arrives whole.
        let whole = try await stack.post("/v1/completions", Self.completion("assistant", maxTokens: 5))
        #expect(whole.status == 200)
        #expect(whole.json?["model"]?.string == "assistant", "\(whole.body)")
        #expect(try await stack.accepted().reduce(0, +) == 2)
    }

    /// Shedding: a sheddable request to a saturated pool gets Envoy's immediate 429 with GIE's body.
    @Test func aShedRequestGetsEnvoysImmediate429() async throws {
        let objectives = ["critical": 10, "batch": -1].map { name, priority in
            """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceObjective
            metadata: {name: \(name)}
            spec: {priority: \(priority), poolRef: {name: pool}}
            """
        }.joined()
        let stack = try await EnvoyStack.start(manifests: EnvoyStack.poolYAML + objectives) { _, pod in
            pod.accelerator = "h100-sxm"
            pod.maxNumSeqs = 2
        }
        defer { Task { await stack.stop() } }
        func send(_ objective: String, _ tokens: Int) async throws -> EnvoyStack.Response {
            try await stack.post("/v1/completions", Self.completion(maxTokens: tokens), headers: [("x-gateway-inference-objective", objective)])
        }
        #expect(try await send("batch", 2).status == 200)
        let critical = (0..<36).map { _ in Task { try await send("critical", 200).status } }
        #expect(try await eventually { stack.gateway.picker.saturation() >= 1 })
        let shed = try await send("batch", 2)
        #expect(shed.status == 429)
        #expect(shed.body == "inference error: ResourceExhausted - system saturated, sheddable request dropped")
        for task in critical { #expect(try await task.value == 200) }
    }

    /// A 5 MiB prompt crosses Envoy and the picker (in gRPC messages under 4 MiB) whole: the
    /// pod answers it exactly as it answers the same request sent to it directly (its context
    /// is too short, and its refusal counts the prompt's tokens).
    @Test func aFiveMebibytePromptPassesThroughEnvoy() async throws {
        let stack = try await EnvoyStack.start(pods: 1)
        defer { Task { await stack.stop() } }
        let prompt = String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 5 * 1024 * 1024 / 45 + 1)
        let body = Self.completion(prompt: prompt, maxTokens: 1)
        #expect(body.utf8.count > 5 * 1024 * 1024)
        let response = try await stack.post("/v1/completions", body)
        let direct = try await stack.post("/v1/completions", body, base: "http://\(stack.address(of: 0))")
        #expect(direct.status == 400)
        #expect(response.status == direct.status)
        #expect(response.body == direct.body)
        #expect(response.body.contains("However, your request has"), "\(response.body.prefix(300))")
    }
}
