import FakeVLLM
import Foundation
@testable import Gateway
import NIOCore
import NIOPosix
import TestSupport
import Testing

/// Real FakeVLLM pods on ephemeral loopback ports, scraped over HTTP.
extension EndToEnd {
@Suite struct DatastoreTests {
    static let profiles = ProfileStore(
        root: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("profiles"))

    static func pod(_ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> VLLMServer {
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.accelerator = "instant"
        configure(&configuration)
        return try await VLLMServer.start(configuration, profiles: profiles)
    }

    /// Polls `condition` on the datastore's loop until it holds.
    func eventually(_ store: Datastore, _ condition: @escaping @Sendable (Datastore) -> Bool) async throws -> Bool {
        try await TestSupport.eventually { try await store.loop.submit({ condition(store) }).get() }
    }

    @Test func scrapedPodsBecomeCandidatesAndAStoppedPodLeaves() async throws {
        let pods = [try await Self.pod { $0.enableLoRA = true; $0.maxLoras = 2 }, try await Self.pod(), try await Self.pod()]
        defer { Task { for pod in pods { try? await pod.stop() } } }
        let store = Datastore(loop: MultiThreadedEventLoopGroup.singleton.next())
        let endpoints = pods.enumerated().map {
            DiscoveredEndpoint(endpoint: Endpoint(address: "127.0.0.1:\($0.element.port)", podName: "pod-\($0.offset)"))
        }
        try await store.loop.submit { store.update(endpoints); store.start() }.get()
        defer { store.loop.execute { store.stop() } }
        #expect(try await eventually(store) { $0.candidates(now: $0.now).count == 3 })
        let lora = try await store.loop.submit { store.candidates(now: store.now).first { $0.endpoint.podName == "pod-0" }?.metrics?.maxActiveAdapters }.get()
        #expect(lora == 2)
        // A stopped pod's metrics go stale and it leaves the candidate set.
        try await pods[1].stop()
        #expect(try await eventually(store) { store in
            let names = store.candidates(now: store.now).map(\.endpoint.podName)
            return names == ["pod-0", "pod-2"] || names == ["pod-2", "pod-0"]
        })
        // Not Ready leaves at once.
        try await store.loop.submit {
            store.update(endpoints.enumerated().map { index, item in
                var item = item
                item.ready = index != 2
                return item
            })
        }.get()
        let names = try await store.loop.submit { store.candidates(now: store.now).map(\.endpoint.podName) }.get()
        #expect(!names.contains("pod-2"))
    }
}
}
