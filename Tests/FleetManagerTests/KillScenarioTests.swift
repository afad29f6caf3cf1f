import AsyncHTTPClient
import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import InferenceAPI
import NIOCore
import NIOConcurrencyHelpers
import TestSupport
import Testing

/// Issue 4's kill scenario at steady load on four pods: what clients see when a pod dies.
extension FleetEndToEnd {
@Suite(.serialized) struct KillScenarioTests {
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Four emulated H100 pods (time running 4× fast) behind the gateway, on ephemeral ports.
    static func fourPods(gateway: String = "") throws -> FleetSpec {
        try FleetSpec.parse("""
            apiVersion: understudy.dev/v1alpha1
            kind: Fleet
            metadata: {name: four}
            spec:
              gateway: {port: 0, metricsPort: 0\(gateway)}
              firstPodPort: 0
              pools:
              - {name: gpu, accelerator: h100-sxm, model: meta-llama/Meta-Llama-3-8B, replicas: 4, labels: {app: llama}, startupSeconds: 0.2,
                 engineArgs: {time-scale: 4}}
            """, file: "four.yaml")
    }

    typealias Answer = (status: Int, servedBy: String?, body: String)

    static func post(_ port: Int, _ body: String, onlyTo subset: String? = nil) async throws -> Answer {
        try await open(port, body, onlyTo: subset).value
    }

    /// Sends a request and returns once its response has begun (its head and, for a stream,
    /// its first event: tokens are flowing); the task collects the rest of the body.
    static func open(_ port: Int, _ body: String, onlyTo subset: String? = nil) async throws -> Task<Answer, Error> {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        if let subset { request.headers.add(name: "x-gateway-destination-endpoint-subset", value: subset) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await client.execute(request, timeout: .seconds(30))
        var chunks = response.body.makeAsyncIterator()
        let first = body.contains(#""stream": true"#) ? try await chunks.next() : nil
        return Task {
            var text = first.map { String(buffer: $0) } ?? ""
            while let chunk = try await chunks.next() {
                text += String(buffer: chunk)
                guard text.utf8.count <= 1 << 22 else { break }
            }
            return (Int(response.status.code), response.headers.first(name: "x-gateway-destination-endpoint-served"), text)
        }
    }

    /// Without a retry policy (GIE's Envoy config) a request the killed pod had taken gets a 503
    /// naming the reset; with Envoy's `retry_on: reset` it is retried elsewhere. Either way no
    /// request sent after the kill fails, and streams on the pod end with an error event.
    @Test(arguments: [false, true])
    func killingAPodFailsNoUnansweredRequestAndEndsItsStreamsClearly(retryOnReset: Bool) async throws {
        let spec = try Self.fourPods(gateway: retryOnReset ? ", retryOnReset: true" : "")
        let fleet = try await Fleet.start(spec, profiles: FleetTests.profiles, backoff: RestartBackoff(initial: 0.5, maximum: 5))
        let store = fleet.gateway.picker.datastore
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        let port = fleet.gateway.port

        // Steady load: eight clients sending short completions until told to stop.
        let stop = NIOLockedValueBox(false)
        let killed = NIOLockedValueBox(false)
        let load = (0..<8).map { worker in
            Task { () -> [(answer: Answer, sentAfterKill: Bool)] in
                var answers: [(answer: Answer, sentAfterKill: Bool)] = []
                var index = 0
                while !stop.withLockedValue({ $0 }) {
                    let prompt = "Worker \(worker) request \(index)"
                    let sentAfterKill = killed.withLockedValue { $0 }
                    answers.append((try await Self.post(port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "\#(prompt)", "max_tokens": 24}"#), sentAfterKill))
                    index += 1
                }
                return answers
            }
        }
        // Long streams: two held on the pod that will die (GIE's subset hint), six anywhere.
        let victim = fleet.list()[1]
        var streams: [Task<Answer, Error>] = []
        for index in 0..<8 {
            // Each stream's head has arrived (its tokens are flowing) before the kill.
            streams.append(try await Self.open(
                port, #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Story \#(index)", "max_tokens": 1500, "ignore_eos": true, "stream": true}"#,
                onlyTo: index < 2 ? victim.address : nil))
        }
        try await fleet.kill(victim.name)
        killed.withLockedValue { $0 = true }
        // The registry says so at once, and the gateway stops routing there.
        #expect(!store.candidates(now: store.now).map(\.endpoint.address).contains(victim.address))
        #expect(fleet.list()[1].phase.status == "CrashLoopBackOff")

        // It restarts after its back-off and rejoins once Ready.
        #expect(try await eventually { fleet.list()[1].isReady })
        #expect(try await eventually { store.candidates(now: store.now).count == 4 })
        #expect(fleet.list()[1].restarts == 1)
        stop.withLockedValue { $0 = true }

        var answers: [(answer: Answer, sentAfterKill: Bool)] = []
        for task in load { answers += try await task.value }
        #expect(answers.count > 20)
        #expect(answers.filter(\.sentAfterKill).count > 8)
        #expect(answers.filter(\.sentAfterKill).allSatisfy { $0.answer.status == 200 }, "nothing sent after the kill goes to the dead pod")
        for (answer, _) in answers where answer.status != 200 {
            #expect(!retryOnReset, "with retry_on reset, requests the pod had taken are retried elsewhere: \(answer)")
            #expect(answer.status == 503)
            #expect(answer.body.contains("disconnect/reset before headers. reset reason: connection termination (\(victim.address))"))
        }
        var cutStreams = 0
        for task in streams {
            let stream = try await task.value
            #expect(stream.status == 200)
            #expect(stream.body.hasSuffix("data: [DONE]\n\n"), "every stream ends, none is silently truncated")
            if stream.servedBy == victim.address {
                cutStreams += 1
                #expect(stream.body.contains(#""code":502"#), "a stream on the killed pod ends with an error event: …\(stream.body.suffix(400))")
            } else {
                #expect(!stream.body.contains(#""error""#))
            }
        }
        #expect(cutStreams >= 2, "the streams held on the killed pod")
        await fleet.stop()
    }
}
}
