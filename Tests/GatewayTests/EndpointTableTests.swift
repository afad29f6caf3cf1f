@testable import Gateway
import Testing

/// The datastore's rules with no sockets and no clock: the times are given.
struct EndpointTableTests {
    static let endpoints = (0..<3).map { DiscoveredEndpoint(endpoint: Endpoint(address: "10.0.0.\($0):8000", podName: "pod-\($0)")) }

    static func names(_ candidates: [Candidate]) -> [String] { candidates.map(\.endpoint.podName) }

    @Test func staleMetricsNotReadyAndUnreachableEndpointsAreNotCandidates() {
        var table = EndpointTable(stalenessThreshold: 0.2)
        table.update(Self.endpoints)
        #expect(table.candidates(now: 0).isEmpty, "no endpoint is a candidate before its first scrape")
        for endpoint in Self.endpoints { table.scraped(endpoint.endpoint.address, metrics: EndpointMetrics(updateTime: 1.0)) }
        #expect(Self.names(table.candidates(now: 1.2)) == ["pod-0", "pod-1", "pod-2"], "200 ms old is still fresh")
        #expect(table.candidatesUnchanged(after: 1.1) > 1.2)
        // pod-1 answers its scrapes again; the others' metrics age past the threshold.
        table.scraped("10.0.0.1:8000", metrics: EndpointMetrics(updateTime: 1.15))
        #expect(Self.names(table.candidates(now: 1.3)) == ["pod-1"])
        // Refused: gone at once, without waiting to go stale.
        table.scrapeFailed("10.0.0.1:8000", unreachable: true)
        #expect(table.candidates(now: 1.3).isEmpty)
        // A timeout leaves the last metrics to age; not Ready leaves at once, yet a gateway
        // failing open still sees every Ready endpoint.
        table.scraped("10.0.0.0:8000", metrics: EndpointMetrics(updateTime: 2.0))
        table.scraped("10.0.0.2:8000", metrics: EndpointMetrics(updateTime: 2.0))
        table.scrapeFailed("10.0.0.0:8000", unreachable: false)
        var notReady = Self.endpoints
        notReady[2].ready = false
        table.update(notReady)
        #expect(Self.names(table.candidates(now: 2.1)) == ["pod-0"])
        #expect(table.readyEndpoints().map(\.podName) == ["pod-0", "pod-1"])
    }

    @Test func aConnectFailureTakesAnEndpointOutUntilItsNextGoodScrape() {
        var table = EndpointTable()
        table.update(Self.endpoints)
        for endpoint in Self.endpoints { table.scraped(endpoint.endpoint.address, metrics: EndpointMetrics(updateTime: 0)) }
        table.reportConnectFailure("10.0.0.2:8000", now: 0.05)
        #expect(Self.names(table.candidates(now: 0.05)) == ["pod-0", "pod-1"])
        table.scraped("10.0.0.2:8000", metrics: EndpointMetrics(updateTime: 0.1))
        #expect(Self.names(table.candidates(now: 0.1)) == ["pod-0", "pod-1", "pod-2"])
    }

    @Test func outlierDetectionEjectsForItsTimeAndTheTableSaysWhenItEnds() {
        var detection = OutlierDetection()
        detection.consecutive5xx = 2
        detection.baseEjectionTime = 10
        detection.maxEjectionPercent = 50
        var table = EndpointTable(stalenessThreshold: 100, outlierDetection: detection)
        table.update(Self.endpoints)
        for endpoint in Self.endpoints { table.scraped(endpoint.endpoint.address, metrics: EndpointMetrics(updateTime: 0)) }
        table.reportAnswer("10.0.0.0:8000", status: 503, now: 1)
        #expect(table.candidates(now: 1).count == 3, "one failure is not a run")
        table.reportAnswer("10.0.0.0:8000", status: 500, now: 2)
        #expect(Self.names(table.candidates(now: 2)) == ["pod-1", "pod-2"])
        #expect(table.ejectedEndpoints(now: 2) == ["10.0.0.0:8000"])
        #expect(table.candidatesUnchanged(after: 2) == (12.0).nextUp, "the ejection's end changes the candidates")
        #expect(Self.names(table.candidates(now: 12)) == ["pod-0", "pod-1", "pod-2"])
    }
}
