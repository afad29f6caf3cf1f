import AsyncHTTPClient
import FakeVLLM
@testable import FleetManager
import Foundation
import Gateway
import InferenceAPI
import NIOCore
import NIOHTTP1
import Testing

/// The admin API against a running fleet: listing, and chaos that clients can see.
@Suite(.serialized) struct AdminServerTests {
    func call(_ port: Int, _ method: HTTPMethod, _ path: String) async throws -> (status: Int, json: JSONValue?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), try? JSONValue.parse(body))
    }

    @Test func podsAreListedAndAHungPodIsRoutedAround() async throws {
        let fleet = try await Fleet.start(try FleetTests.spec(startup: 0), profiles: FleetTests.profiles)
        let admin = try await AdminServer.start(fleet: fleet, host: "127.0.0.1", port: 0)
        let port = admin.localAddress!.port!
        let store = fleet.gateway.picker.datastore
        #expect(try await FleetTests().eventually { store.candidates(now: store.now).count == 2 })

        let listing = try await call(port, .GET, "/pods")
        #expect(listing.status == 200)
        let pods = try #require(listing.json?.array)
        #expect(pods.map { $0["name"]?.string } == ["fast-0", "fast-1"])
        #expect(pods.first?["state"]?.string == "Running" && pods.first?["labels"]?["app"]?.string == "llama")

        let hung = try await call(port, .POST, "/pods/fast-0/hang")
        #expect(hung.json?.array?.first?["faults"]?.array?.first?.string == "hang")
        // Its scrapes hang too, so it goes stale and leaves the candidates; requests go to fast-1.
        #expect(try await FleetTests().eventually { store.candidates(now: store.now).map(\.endpoint.podName) == ["fast-1"] })
        let address = fleet.list()[1].address
        for _ in 0..<5 { #expect(try await FleetTests().complete(fleet).servedBy == address) }
        _ = try await call(port, .POST, "/pods/fast-0/restore")
        #expect(try await FleetTests().eventually { store.candidates(now: store.now).count == 2 })

        #expect(try await call(port, .POST, "/pods/nope/kill").status == 404)
        #expect(try await call(port, .POST, "/pods/fast-1/slow").status == 400)
        try await admin.close()
        await fleet.stop()
    }
}
