import AsyncHTTPClient
@testable import FakeVLLM
import Foundation
import Logging
import NIOCore
import TestSupport
import Testing

/// What `understudy serve` prints while it serves, as vLLM does: uvicorn's access line per
/// request and the engine's periodic stats line.
struct ServerLogTests {
    func post(_ base: String, _ path: String, _ body: String) async throws -> Int {
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.forTests.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }

    @Test func serveLogsAnAccessLinePerRequestAndTheEngineStatsLine() async throws {
        // vLLM's own knob for the stats interval (10 s by default), so the test need not wait 10 s.
        let server = try await ServeProcess.start(["--accelerator", "instant"], environment: ["VLLM_LOG_STATS_INTERVAL": "0.5"])
        defer { server.stop() }
        #expect(try await post(server.base, "/v1/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello there", "max_tokens": 4}"#) == 200)
        #expect(try await post(server.base, "/v1/nope", "{}") == 404)

        let access = try await server.waitForLine(within: 10) { $0.contains(#""POST /v1/completions HTTP/1.1" 200 OK"#) }
        #expect(access?.hasPrefix("INFO:     127.0.0.1:") == true, "uvicorn's format: \(server.output)")
        #expect(try await server.waitForLine(within: 10) { $0.contains(#""POST /v1/nope HTTP/1.1" 404 Not Found"#) } != nil)

        // The interval with the request's tokens: throughput above zero, at info.
        let stats = try await server.waitForLine(within: 10) { $0.contains("Engine 000: Avg prompt throughput") && !$0.contains("prompt throughput: 0.0") }
        let line = try #require(stats, "no stats line with throughput: \(server.output)")
        #expect(line.hasPrefix("INFO "))
        #expect(line.contains("Running: 0 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%, Prefix cache hit rate:"))
    }

    @Test func theLinesCanBeTurnedOffAsInVLLM() async throws {
        // The flags are vLLM's and honoured: not among those accepted without effect.
        let server = try await ServeProcess.start(["--accelerator", "instant", "--disable-log-stats", "--disable-uvicorn-access-log"])
        server.stop()
        #expect(!server.output.contains("accepted with no effect"), "\(server.output)")
        // And they reach the server: no stats timer, no access log.
        let logging = ServerLogging(access: Logger(label: "access"), engine: Logger(label: "engine"))
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.accelerator = "instant"
        configuration.logStats = false
        configuration.accessLog = false
        let quiet = try await VLLMServer.start(configuration, profiles: LiveServer.profiles, logging: logging)
        #expect(quiet.statsTask == nil && quiet.router.accessLog == nil)
        try await quiet.stop()
        configuration.logStats = true
        configuration.accessLog = true
        let talkative = try await VLLMServer.start(configuration, profiles: LiveServer.profiles, logging: logging)
        #expect(talkative.statsTask != nil && talkative.router.accessLog != nil)
        try await talkative.stop()
    }
}
