import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import TestSupport
import Testing

/// SIGTERM as Kubernetes sends it to a pod or the gateway: what is in flight finishes, new
/// connections are refused, and the process exits 0.
struct GracefulShutdownTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A streamed completion of `tokens` tokens, started; returns once its first event arrived,
    /// with the task that reads the rest.
    static func startStream(_ base: String, tokens: Int) async throws -> Task<String, Error> {
        var request = HTTPClientRequest(url: base + "/v1/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello", "max_tokens": \#(tokens), "ignore_eos": true, "stream": true}"#))
        let response = try await HTTPClient.forTests.execute(request, timeout: .seconds(60))
        guard response.status == .ok else { throw ServeProcessError("the stream was answered \(response.status)") }
        var body = response.body.makeAsyncIterator()
        let first = try await body.next()
        #expect(first != nil)
        return Task {
            var text = first.map { String(buffer: $0) } ?? ""
            while let chunk = try await body.next() { text += String(buffer: chunk) }
            return text
        }
    }

    /// Whether a new TCP connection to the port is refused.
    static func refusesConnections(_ port: Int) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            try? await channel.close()
            return false
        } catch {
            return true
        }
    }

    static func exitStatus(_ process: UnderstudyProcess, within limit: Double) async throws -> Int32? {
        guard try await eventually(within: limit, { !process.process.isRunning }) else { return nil }
        return process.process.terminationStatus
    }

    @Test func sigtermLetsAPodFinishWhatItServesAndRefusesNewConnections() async throws {
        // An H100's pace: 200 tokens take about two seconds.
        let pod = try await ServeProcess.start([])
        defer { pod.stop() }
        let port = try #require(Int(pod.base.split(separator: ":").last ?? ""))
        let stream = try await Self.startStream(pod.base, tokens: 200)
        kill(pod.process.processIdentifier, SIGTERM)
        #expect(try await eventually { await Self.refusesConnections(port) }, "new connections refused")
        let text = try await stream.value
        #expect(text.hasSuffix("data: [DONE]\n\n"), "the stream in flight finished")
        #expect(try await Self.exitStatus(pod, within: 10) == 0, "\(pod.output)")
        #expect(pod.output.contains("INFO:     Shutting down"))
    }

    @Test func theGatewayLogsItsDecisionsAndOnSigtermFinishesWhatItProxiesAndRefusesNewConnections() async throws {
        let pod = try await ServeProcess.start([])
        defer { pod.stop() }
        let podAddress = String(pod.base.dropFirst("http://".count))
        let gateway = try UnderstudyProcess([
            "gateway", "--config", Self.root.appendingPathComponent("profiles/gateway/pool.yaml").path, "--endpoints", podAddress,
            "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--log-level", "debug",
        ])
        defer { gateway.stop() }
        let listening = try #require(try await gateway.waitForLine(within: 60) { $0.contains("listening on http://") }, "\(gateway.output)")
        let port = try #require(listening.split(separator: ";").first?.split(separator: ":").last.flatMap { Int($0) })
        // The gateway routes once it has scraped the pod.
        var started: Task<String, Error>?
        for _ in 0..<100 where started == nil {
            started = try? await Self.startStream("http://127.0.0.1:\(port)", tokens: 200)
            if started == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let stream = try #require(started, "\(gateway.output)")
        // Its decisions at debug, its refusals at info, as GIE's EPP logs them.
        #expect(try await gateway.waitForLine(within: 10) { $0.hasPrefix("DEBUG") && $0.contains("picked \(podAddress) for model meta-llama/Meta-Llama-3-8B") } != nil, "\(gateway.output)")
        var refused = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/completions")
        refused.method = .POST
        refused.headers.add(name: "content-type", value: "application/json")
        refused.body = .bytes(ByteBuffer(string: #"{"prompt": "no model"}"#))
        #expect(try await HTTPClient.forTests.execute(refused, timeout: .seconds(10)).status == .badRequest)
        #expect(try await gateway.waitForLine(within: 10) { $0.hasPrefix("INFO") && $0.contains("refused 400") } != nil, "\(gateway.output)")
        kill(gateway.process.processIdentifier, SIGTERM)
        #expect(try await eventually { await Self.refusesConnections(port) }, "new connections refused")
        let text = try await stream.value
        #expect(text.hasSuffix("data: [DONE]\n\n"), "the proxied stream finished")
        #expect(try await Self.exitStatus(gateway, within: 10) == 0, "\(gateway.output)")
    }
}
