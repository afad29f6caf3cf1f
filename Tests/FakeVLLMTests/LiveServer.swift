import AsyncHTTPClient
import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import NIOHTTP1
import TestSupport

/// A real server on an ephemeral loopback port, with the checkout's profiles.
struct LiveServer {
    let server: VLLMServer
    var base: String { "http://127.0.0.1:\(server.port)" }

    static let profiles = ProfileStore(
        root: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("profiles"))

    static func start(_ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> LiveServer {
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.accelerator = "instant"
        configure(&configuration)
        return LiveServer(server: try await VLLMServer.start(configuration, profiles: profiles))
    }

    func stop() async throws { try await server.stop() }

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: String
        var json: JSONValue? { try? JSONValue.parse(body) }
    }

    func get(_ path: String, headers: [(String, String)] = []) async throws -> Response {
        try await request(path, method: .GET, headers: headers)
    }

    func request(_ path: String, method: HTTPMethod = .POST, body: String? = nil, headers: [(String, String)] = []) async throws -> Response {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "content-type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.forTests.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return Response(status: Int(response.status.code), headers: response.headers, body: String(buffer: bytes))
    }

    /// Samples of /metrics, parsed.
    func metrics() async throws -> [PrometheusSample] {
        try Prometheus.parse(try await get("/metrics").body)
    }

    func metric(_ name: String, _ labels: [String: String] = [:]) async throws -> Double? {
        try await metrics().first { (sample: PrometheusSample) in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }
}
