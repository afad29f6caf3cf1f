import AsyncHTTPClient
import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestSupport
import Testing

/// What clients see when parts fail, and how endpoints come and go.
extension EndToEnd {
@Suite struct GatewayFailureTests {
    static let body = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello", "max_tokens": 2}"#

    static func pool(failureMode: String, targetPorts: String = "[{number: 8000}]") -> String {
        """
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {name: pool}
        spec:
          selector: {matchLabels: {app: vllm}}
          targetPorts: \(targetPorts)
          endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: \(failureMode)}
        """
    }

    @Test func whenThePickerIsDownFailCloseRefusesAndFailOpenStillServes() async throws {
        let closed = try await GatewayStack.start(pods: 2, manifests: Self.pool(failureMode: "FailClose"))
        defer { Task { await closed.stop() } }
        closed.gateway.picker.isReachable = false
        let refused = try await closed.post("/v1/completions", Self.body)
        #expect(refused.status == 500)
        #expect(refused.json?["error"]?["type"]?.string == "Internal")

        let open = try await GatewayStack.start(pods: 2, manifests: Self.pool(failureMode: "FailOpen"))
        defer { Task { await open.stop() } }
        open.gateway.picker.isReachable = false
        let served = try await open.post("/v1/completions", Self.body)
        #expect(served.status == 200)
        #expect(served.servedBy == open.address(of: 0) || served.servedBy == open.address(of: 1))
    }

    @Test func aStreamWhosePodDiesEndsWithAnErrorEventNotASilentCut() async throws {
        let stack = try await GatewayStack.start(pods: 1) { _, pod in pod.accelerator = "h100-sxm" }
        defer { Task { await stack.stop() } }
        let request = stack.completionRequest(#"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Go", "max_tokens": 3000, "stream": true}"#)
        let response = try await GatewayStack.client.execute(request, timeout: .seconds(30))
        #expect(response.status == .ok)
        var chunks = response.body.makeAsyncIterator()
        var text = String(buffer: try #require(try await chunks.next()))  // tokens are flowing
        try await stack.pods[0].stop()
        while let chunk = try await chunks.next() { text += String(buffer: chunk) }
        let events = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.last == "data: [DONE]")
        let error = try JSONValue.parse(String(try #require(events.dropLast().last).dropFirst(6)))
        #expect(error["error"]?["code"]?.int == 502, "\(events.suffix(2))")
    }

    @Test func bodiesOverTheLimitAreRefusedWith413() async throws {
        var dataPlane = DataPlaneConfiguration()
        dataPlane.maxBodyBytes = 1024
        let stack = try await GatewayStack.start(pods: 1, dataPlane: dataPlane)
        defer { Task { await stack.stop() } }
        let big = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "\#(String(repeating: "x", count: 2000))"}"#
        let response = try await stack.post("/v1/completions", big)
        #expect(response.status == 413)
        #expect(response.json?["error"]?["code"]?.int == 413)
        #expect(try await stack.post("/v1/completions", Self.body).status == 200)
    }

    @Test func overItsConnectionLimitTheGatewayClosesNewConnectionsAtOnceAsEnvoyDoes() async throws {
        var dataPlane = DataPlaneConfiguration()
        dataPlane.maxConnections = 2
        let stack = try await GatewayStack.start(pods: 1, dataPlane: dataPlane)
        defer { Task { await stack.stop() } }
        let shortagesBefore = OpenFileLimit.shortages
        // Two clients, each keeping its connection open after an answer: the limit is reached.
        let keepers = (0..<2).map { _ in HTTPClient(eventLoopGroupProvider: .singleton) }
        for keeper in keepers {
            let response = try await keeper.execute(stack.completionRequest(Self.body), timeout: .seconds(30))
            #expect(response.status == .ok)
            _ = try await response.body.collect(upTo: 1 << 20)
        }

        // A third connection is closed without an answer, at once rather than after a timeout.
        let third = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: stack.gateway.port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let answer = try? await third.executeThenClose { inbound, outbound in
            try? await outbound.write(ByteBuffer(string: "GET /v1/models HTTP/1.1\r\nHost: gateway\r\n\r\n"))
            var received = ""
            for try await chunk in inbound { received += String(buffer: chunk) }
            return received
        }
        #expect(answer ?? "" == "", "no answer over the limit")
        #expect(OpenFileLimit.shortages > shortagesBefore, "counted, so understudy up can say so")

        // Once a kept connection goes away, new clients are served again.
        try await keepers[0].shutdown()
        var status: Int?
        for _ in 0..<40 where status != 200 {
            status = try? await stack.post("/v1/completions", Self.body, timeout: .seconds(5)).status
            if status != 200 { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(status == 200)
        try await keepers[1].shutdown()
    }

    @Test func theSubsetHintLimitsTheChoice() async throws {
        let stack = try await GatewayStack.start(pods: 3)
        defer { Task { await stack.stop() } }
        for _ in 0..<6 {
            let response = try await stack.post("/v1/completions", Self.body, headers: [("x-gateway-destination-endpoint-subset", stack.address(of: 2))])
            #expect(response.servedBy == stack.address(of: 2))
        }
        let none = try await stack.post("/v1/completions", Self.body, headers: [("x-gateway-destination-endpoint-subset", "10.0.0.1:8000")])
        #expect(none.status == 503)
    }

    @Test func discoveredPodsJoinByLabelAndReadinessWithOneEndpointPerTargetPort() async throws {
        let pods = [try await EndToEnd.DatastoreTests.pod(), try await DatastoreTests.pod()]
        defer { Task { for pod in pods { try? await pod.stop() } } }
        let ports = pods.map(\.port)
        // Both pods' ports as two target ports (GIE's data-parallel ranks) of one address.
        var resources = GatewayResources()
        try ManifestLoader.load(Self.pool(failureMode: "FailClose", targetPorts: "[{number: \(ports[0])}, {number: \(ports[1])}]"), file: "pool.yaml", into: &resources)
        let gateway = try await GatewayServer.start(resources: resources, port: 0)
        defer { Task { try? await gateway.stop() } }
        let source = TestPodSource()
        gateway.follow(source)
        source.set([
            DiscoveredPod(name: "vllm-0", ip: "127.0.0.1", labels: ["app": "vllm"], ready: true),
            DiscoveredPod(name: "other", ip: "127.0.0.2", labels: ["app": "other"], ready: true),
        ])
        let store = gateway.picker.datastore
        func names() -> [String] { store.candidates(now: store.now).map(\.endpoint.podName).sorted() }
        _ = try await eventually { names().count >= 2 }
        #expect(names() == ["vllm-0-rank-0", "vllm-0-rank-1"])
        source.set([DiscoveredPod(name: "vllm-0", ip: "127.0.0.1", labels: ["app": "vllm"], ready: false)])
        _ = try await eventually { names().isEmpty }
        #expect(names().isEmpty, "a pod that is not Ready is not a candidate")
    }
}
}

/// An in-memory pod list with watchers, as the fleet manager's registry will serve.
final class TestPodSource: PodSource, Sendable {
    private let state = NIOLockedValueBox<(pods: [DiscoveredPod], watchers: [@Sendable ([DiscoveredPod]) -> Void])>(([], []))

    func set(_ pods: [DiscoveredPod]) {
        let watchers = state.withLockedValue { state in
            state.pods = pods
            return state.watchers
        }
        for watcher in watchers { watcher(pods) }
    }

    func watch(_ onChange: @escaping @Sendable ([DiscoveredPod]) -> Void) async throws {
        let current = state.withLockedValue { state in
            state.watchers.append(onChange)
            return state.pods
        }
        onChange(current)
        try await Task.sleep(for: .seconds(3600))
    }
}

extension EndToEnd {
    /// Upstreams that answer and then break, and clients the gateway must frame for.
    @Suite struct GatewayUpstreamMisbehaviourTests {
        static let body = #"{"model": "friendly", "prompt": "Hello", "max_tokens": 2}"#
        static let rewrite = GatewayStack.poolYAML + TestManifests.alias("friendly", to: "m")

        @Test func anUpstreamThatAnswersAndThenBreaksIsNotRetried() async throws {
            // A rewritten, non-streamed response is collected before it is sent: the head and part
            // of the body arrived, then the connection closed.
            let upstream = try await ScriptedUpstream.start(
                script: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"model\":\"m\",")
            defer { Task { try? await upstream.channel.close() } }
            let stack = try await GatewayStack.start(pods: 0, manifests: Self.rewrite, extraEndpoints: [upstream.address])
            defer { Task { await stack.stop() } }
            let response = try await stack.post("/v1/completions", Self.body)
            #expect(response.status == 502)
            #expect(response.json?["error"]?["type"]?.string == "BadGateway")
            #expect(upstream.inferenceRequests.withLockedValue { $0 } == 1, "the request was sent once")
        }

        @Test func aStreamCutMidEventEndsWithAWholeErrorEvent() async throws {
            let upstream = try await ScriptedUpstream.start(
                script: "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                    + "1b\r\ndata: {\"model\":\"m\",\"a\":1}\n\n\r\n" + "c\r\ndata: {\"mode\r\n")
            defer { Task { try? await upstream.channel.close() } }
            let stack = try await GatewayStack.start(pods: 0, manifests: Self.rewrite, extraEndpoints: [upstream.address])
            defer { Task { await stack.stop() } }
            let response = try await stack.post("/v1/completions", Self.body)
            #expect(response.status == 200)
            let events = response.body.components(separatedBy: "\n\n")
            #expect(events.first == #"data: {"model":"friendly","a":1}"#)
            #expect(response.body.hasSuffix("data: [DONE]\n\n"))
            // The cut event stays cut (and unparsable), and the error event is whole on its own.
            #expect(events.dropFirst().first == #"data: {"mode"#, "\(response.body)")
            let error = try #require(events.first { $0.contains("\"error\"") })
            #expect(error.hasPrefix("data: {\"error\""), "\(response.body)")
        }

        @Test func anHTTP10ClientGetsAStreamItCanRead() async throws {
            let stack = try await GatewayStack.start(pods: 1)
            defer { Task { await stack.stop() } }
            let body = #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hi", "max_tokens": 3, "stream": true}"#
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: stack.gateway.port) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                }
            let received = try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"))
                var text = ""
                for try await chunk in inbound { text += String(buffer: chunk) }  // ends when the gateway closes
                return text
            }
            #expect(received.hasPrefix("HTTP/1.0 200 OK\r\n"))
            #expect(!received.lowercased().contains("transfer-encoding"))
            #expect(received.hasSuffix("data: [DONE]\n\n"))
        }
    }
}
