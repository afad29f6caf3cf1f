@testable import FakeVLLM
import Testing

/// A partition cuts a pod off from its clients and the gateway, not from the kubelet on its node.
struct PartitionTests {
    @Test func aPartitionedServerRefusesScrapesButPassesItsProbes() async throws {
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.accelerator = "instant"
        let server = try await VLLMServer.start(configuration, profiles: LiveServer.profiles)
        try await server.apply(.partition(true))
        #expect(await server.checkHealth() == .status(200))
        let scrape = await withCheckedContinuation { continuation in server.scrapeMetrics { continuation.resume(returning: $0) } }
        guard case .refused = scrape else { Issue.record("a scrape of a partitioned pod got \(scrape)"); return }
        try await server.apply(.hang(true))
        #expect(await server.checkHealth() == .silent, "a hang, unlike a partition, silences the probe")
        try await server.apply(.restore)
        #expect(await server.checkHealth() == .status(200))
        try await server.stop()
    }
}
