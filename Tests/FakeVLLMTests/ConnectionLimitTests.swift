import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import TestSupport
import Testing

/// Clients that send slowly, stop half-way, sit idle or send oversized heads: the pod closes
/// them by its timeouts and limits, and keeps serving everyone else.
@Suite struct ConnectionLimitTests {
    /// A pod whose timeouts are short enough for a test (the defaults are 10 s, 60 s and 5 s).
    /// Idle connections are kept long unless a test is about them, so that on a busy machine
    /// each connection gets its first bytes in before the idle timeout.
    static func pod(idle: TimeAmount = .seconds(30)) async throws -> LiveServer {
        try await LiveServer.start {
            $0.connectionLimits.requestHeadersTimeout = .milliseconds(300)
            $0.connectionLimits.requestBodyTimeout = .milliseconds(300)
            $0.connectionLimits.idleTimeout = idle
        }
    }

    func stillServes(_ live: LiveServer) async throws {
        let response = try await live.request("/v1/completions", body: #"{"prompt":"hello","max_tokens":2}"#)
        #expect(response.status == 200)
    }

    @Test func aHeadSentOneByteAtATimeIsCutOffWith408() async throws {
        let live = try await Self.pod()
        defer { Task { try? await live.stop() } }
        var slow: [RawConnection] = []
        for _ in 0..<20 {
            let connection = try await RawConnection.open(port: live.server.port)
            try await connection.send("P")
            slow.append(connection)
        }
        // They keep dripping bytes, each well within any per-byte idle time, never finishing.
        for byte in "OST /v1/completions HTTP/1.1\r\nHost: x\r\n" {
            for connection in slow where !connection.isClosed { try? await connection.send(String(byte)) }
            try await stillServes(live)
            if slow.allSatisfy(\.isClosed) { break }
        }
        for connection in slow {
            #expect(await connection.waitForClose(within: .seconds(10)))
            #expect(connection.text.hasPrefix("HTTP/1.1 408 Request Timeout"))
            #expect(connection.text.contains("request header timeout"))
        }
        try await stillServes(live)
    }

    @Test func aBodyThatStopsHalfWayGets408AndTheConnectionCloses() async throws {
        let live = try await Self.pod()
        defer { Task { try? await live.stop() } }
        let connection = try await RawConnection.open(port: live.server.port)
        try await connection.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\":")
        #expect(await connection.waitForClose(within: .seconds(10)))
        #expect(connection.text.hasPrefix("HTTP/1.1 408 Request Timeout"))
        #expect(connection.text.contains(#""message":"request timeout""#))
        try await stillServes(live)
    }

    @Test func idleConnectionsAreClosedAfterTheKeepAliveTimeout() async throws {
        let live = try await Self.pod(idle: .seconds(1))
        defer { Task { try? await live.stop() } }
        let fresh = try await RawConnection.open(port: live.server.port)
        // A connection that served a request. On a busy machine a second can pass between
        // connecting and sending, and the server rightly closes the connection first: try again.
        var served: RawConnection?
        for _ in 0..<5 where served == nil {
            let connection = try await RawConnection.open(port: live.server.port)
            try? await connection.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if await connection.waitFor("HTTP/1.1 200 OK", within: .seconds(10)) { served = connection }
        }
        let kept = try #require(served)
        #expect(await fresh.waitForClose(within: .seconds(10)))
        #expect(await kept.waitForClose(within: .seconds(10)))
        #expect(fresh.text.isEmpty, "an idle connection is closed without an answer, as uvicorn does")
    }

    @Test func oversizedHeadsGet431() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let cases = [
            "X-Big: " + String(repeating: "a", count: 70 * 1024) + "\r\n",  // over 60 KiB, under the parser's limit
            "X-Big: " + String(repeating: "a", count: 100 * 1024) + "\r\n",  // over the parser's limit
            (0..<101).map { "X-H\($0): v\r\n" }.joined(),  // over 100 headers
        ]
        for headers in cases {
            let connection = try await RawConnection.open(port: live.server.port)
            try? await connection.send("GET /health HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n")
            #expect(await connection.waitForClose(within: .seconds(10)))
            #expect(connection.text.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large"), "\(connection.text.prefix(200))")
        }
        try await stillServes(live)
    }

    /// Garbage pipelined behind a request answered later (a generation): the answer arrives
    /// whole, then the connection closes.
    @Test func aMalformedPipelinedRequestDoesNotCutTheAnswerBeforeIt() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let body = #"{"prompt":"hello","max_tokens":64,"ignore_eos":true}"#
        let connection = try await RawConnection.open(port: live.server.port)
        try await connection.send(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                + "GARBAGE\u{1}\r\n\r\n")
        #expect(await connection.waitForClose(within: .seconds(10)))
        let answer = connection.text
        #expect(answer.hasPrefix("HTTP/1.1 200 OK"))
        let parts = answer.components(separatedBy: "\r\n\r\n")
        let length = parts.first?.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
        #expect(length != nil && parts.count >= 2 && parts[1].utf8.count >= length!, "the whole body: \(answer.suffix(200))")
        #expect(try JSONValue.parse(String(parts[1].utf8.prefix(length ?? 0))!)["usage"]?["completion_tokens"] == .integer(64))
    }
}
