import AsyncHTTPClient
import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// What a hostile or careless client, or a large answer, does to the gateway.
extension EndToEnd {
@Suite struct GatewayHardeningTests {
    /// The same request through the gateway and straight to the pod. A pod busy with a large
    /// answer is late for its scrapes, so the picker may see it stale for a moment: the gateway
    /// is sent its request once the pod is a candidate again.
    func bothWays(_ stack: GatewayStack, _ path: String, _ body: String) async throws -> (direct: GatewayStack.Response, proxied: GatewayStack.Response) {
        try await stack.waitForCandidates(1)
        let proxied = try await stack.post(path, body, timeout: .seconds(60))
        var request = HTTPClientRequest(url: "http://\(stack.address(of: 0))\(path)")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await GatewayStack.client.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        let direct = GatewayStack.Response(status: Int(response.status.code), headers: response.headers, body: String(buffer: bytes))
        return (direct, proxied)
    }

    @Test func aTenMegabyteAnswerAndA256WayStreamArriveWholeThroughTheGateway() async throws {
        // An upstream timeout short enough that a stalled relay fails the test, not the suite.
        var dataPlane = DataPlaneConfiguration()
        dataPlane.upstreamTimeout = .seconds(20)

        // 10 MB at once from an upstream (a pod's /tokenize of a long prompt answers so): the
        // relay must keep reading as the client drains it.
        let large = #"{"count":1,"tokens":[""# + String(repeating: "7,", count: 5_000_000) + #"7]}"#
        let upstream = try await ScriptedUpstream.start(
            script: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \(large.utf8.count)\r\n\r\n" + large)
        defer { Task { try? await upstream.channel.close() } }
        let relay = try await GatewayStack.start(pods: 0, dataPlane: dataPlane, extraEndpoints: [upstream.address])
        defer { Task { await relay.stop() } }
        let answer = try await relay.post("/tokenize", #"{"prompt":"x"}"#, timeout: .seconds(60))
        #expect(answer.status == 200)
        #expect(answer.body.utf8.count == large.utf8.count)
        #expect(answer.body == large)

        // 256 streams in one request from a real pod: 16,384 events, the same through the gateway as straight from the pod.
        let stack = try await GatewayStack.start(pods: 1, dataPlane: dataPlane)
        defer { Task { await stack.stop() } }
        let stream = try await bothWays(
            stack, "/v1/completions", #"{"model":"meta-llama/Meta-Llama-3-8B","prompt":"x","max_tokens":64,"n":256,"ignore_eos":true,"stream":true}"#)
        func events(_ body: String) -> Int { body.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }.count }
        #expect(stream.direct.body.hasSuffix("data: [DONE]\n\n"))
        #expect(stream.proxied.body.hasSuffix("data: [DONE]\n\n"), "\(stream.proxied.body.suffix(300))")
        #expect(events(stream.proxied.body) == events(stream.direct.body))
        #expect(events(stream.direct.body) >= 256 * 64)
    }

    /// The requests that crashed or stalled a pod, or that vLLM refuses and a pod once took:
    /// through the gateway each gets the pod's 400, and the pod stays a candidate.
    @Test func requestsThatOnceBrokeAPodGetItsErrorsThroughTheGatewayAndThePodStays() async throws {
        let stack = try await GatewayStack.start(pods: 1)
        defer { Task { await stack.stop() } }
        let model = #""model":"meta-llama/Meta-Llama-3-8B""#
        let chat = #"\#(model),"messages":[{"role":"user","content":"x"}]"#
        let bodies = [
            ("/v1/completions", #"{\#(model),"prompt":"x","max_tokens":9223372036854775807}"#),
            ("/v1/completions", #"{\#(model),"prompt":"x","max_tokens":-9223372036854775808}"#),
            ("/v1/chat/completions", #"{\#(chat),"max_completion_tokens":9223372036854775807}"#),
            ("/v1/completions", #"{\#(model),"prompt":"x","n":2147483648}"#),
            ("/v1/completions", #"{\#(model),"prompt":"x","n":1000000000}"#),
            ("/v1/completions", #"{\#(model),"prompt":"x","n":1000000,"max_tokens":1}"#),
            ("/v1/chat/completions", #"{\#(chat),"tools":"x"}"#),
            ("/v1/chat/completions", #"{\#(chat),"tools":[1,2]}"#),
            ("/v1/completions", #"{\#(model),"prompt":"x","structured_outputs":[-1]}"#),
            ("/v1/completions", #"{\#(model),"prompt":"x","response_format":7}"#),
            ("/v1/chat/completions", #"{\#(chat),"stream":true,"stream_options":"x"}"#),
        ]
        for (path, body) in bodies {
            let response = try await stack.post(path, body)
            #expect(response.status == 400, "\(body) → \(response.status) \(response.body.prefix(200))")
            #expect(response.servedBy == stack.address(of: 0), "the pod answered it")
        }
        #expect(try await stack.post("/v1/completions", #"{\#(model),"prompt":"x","max_tokens":2}"#).status == 200)
        try await stack.waitForCandidates(1)
    }

    @Test func hopByHopAndProxyHeadersStayAtTheGatewayAndItsOwnHeadersAreNotDuplicated() async throws {
        let body = #"{"model":"m"}"#
        let upstream = try await ScriptedUpstream.start(
            script: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-gateway-destination-endpoint-served: 10.0.0.1:8000\r\n"
                + "x-envoy-attempt-count: 9\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { Task { try? await upstream.channel.close() } }
        let stack = try await GatewayStack.start(pods: 0, extraEndpoints: [upstream.address])
        defer { Task { await stack.stop() } }
        let response = try await stack.post(
            "/v1/completions", #"{"model":"m","prompt":"x"}"#,
            headers: [("connection", "keep-alive, x-hop"), ("x-hop", "secret"), ("proxy-authorization", "Basic c2VjcmV0"), ("x-end-to-end", "kept")])
        #expect(response.status == 200)
        let head = upstream.lastHead.withLockedValue { $0 }.lowercased()
        #expect(head.contains("x-end-to-end: kept"))
        #expect(!head.contains("x-hop"), "a header the Connection header names is hop-by-hop: \(head)")
        #expect(!head.contains("proxy-authorization"))
        #expect(response.headers[ProxyExchange.servedHeader] == [upstream.address])
        #expect(response.headers[ProxyExchange.attemptCountHeader] == ["1"])
    }

    @Test func slowClientsAreCutOffAndOversizedHeadsGet431WhileOthersAreServed() async throws {
        var dataPlane = DataPlaneConfiguration()
        dataPlane.connectionLimits.requestHeadersTimeout = .milliseconds(300)
        dataPlane.connectionLimits.requestBodyTimeout = .milliseconds(300)
        // Long enough that on a busy machine the other slow clients get their first bytes in first.
        dataPlane.connectionLimits.idleTimeout = .seconds(3)
        let stack = try await GatewayStack.start(pods: 1, dataPlane: dataPlane)
        defer { Task { await stack.stop() } }
        let port = stack.gateway.port
        let completion = #"{"model":"meta-llama/Meta-Llama-3-8B","prompt":"hi","max_tokens":2}"#

        let dripping = try await RawConnection.open(port: port)
        try await dripping.send("POST /v1/comp")
        let halfBody = try await RawConnection.open(port: port)
        try await halfBody.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"model\":")
        let idle = try await RawConnection.open(port: port)
        for byte in "letions HTTP/1.1\r\n" where !dripping.isClosed {
            try? await dripping.send(String(byte))
            #expect(try await stack.post("/v1/completions", completion).status == 200)
        }
        #expect(await dripping.waitForClose(within: .seconds(10)))
        #expect(dripping.text.hasPrefix("HTTP/1.1 408"))
        #expect(await halfBody.waitForClose(within: .seconds(10)))
        #expect(halfBody.text.hasPrefix("HTTP/1.1 408"))
        #expect(await idle.waitForClose(within: .seconds(20)))
        #expect(idle.text.isEmpty)

        let tooMany = try await RawConnection.open(port: port)
        try? await tooMany.send("GET /v1/models HTTP/1.1\r\nHost: x\r\n" + (0..<101).map { "X-H\($0): v\r\n" }.joined() + "\r\n")
        #expect(await tooMany.waitForClose(within: .seconds(10)))
        #expect(tooMany.text.hasPrefix("HTTP/1.1 431"))
        #expect(try await stack.post("/v1/completions", completion).status == 200)
    }
}
}
