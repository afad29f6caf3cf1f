import FakeVLLM
import Foundation
@testable import Gateway
import Testing

/// Envoy's consecutive-5xx outlier detection: the rule alone, then through the gateway.
@Suite struct OutlierDetectionTests {
    func detection(_ configure: (inout OutlierDetection) -> Void = { _ in }) -> OutlierDetection {
        var detection = OutlierDetection()
        detection.consecutive5xx = 3
        detection.baseEjectionTime = 10
        detection.maxEjectionTime = 25
        detection.interval = 5
        configure(&detection)
        return detection
    }

    @Test func consecutiveFailuresEjectForLongerEachTimeInARow() {
        let rule = detection()
        var record = OutlierDetection.Record()
        // Two failures, a success, two failures: never three in a row.
        for status in [503, 500, 200, 502, 504] {
            #expect(!rule.record(status: status, in: &record, now: 0, ejectedCount: 0, endpointCount: 4))
        }
        #expect(rule.record(status: 503, in: &record, now: 1, ejectedCount: 0, endpointCount: 4))
        #expect(record.isEjected(now: 10.9) && !record.isEjected(now: 11))
        // Back at 11 and failing again at once: ejected for twice the base time.
        for _ in 0..<2 { _ = rule.record(status: 503, in: &record, now: 11, ejectedCount: 0, endpointCount: 4) }
        #expect(rule.record(status: 503, in: &record, now: 11, ejectedCount: 0, endpointCount: 4))
        #expect(record.ejectedUntil == 31)
        // A third time in a row: 30 s, capped at the 25 s maximum.
        for _ in 0..<3 { _ = rule.record(status: 503, in: &record, now: 31, ejectedCount: 0, endpointCount: 4) }
        #expect(record.ejectedUntil == 56)
        // Healthy for four intervals after returning: the multiplier decays back to the base.
        for _ in 0..<3 { _ = rule.record(status: 503, in: &record, now: 76, ejectedCount: 0, endpointCount: 4) }
        #expect(record.ejectedUntil == 86)
        // 4xx answers are the client's doing: they clear the run.
        var clean = OutlierDetection.Record()
        for status in [503, 503, 404, 503, 503] { #expect(!rule.record(status: status, in: &clean, now: 0, ejectedCount: 0, endpointCount: 4)) }
    }

    @Test func atMostTheMaximumShareIsEjectedButAlwaysOne() {
        let rule = detection { $0.maxEjectionPercent = 10 }
        var first = OutlierDetection.Record()
        var second = OutlierDetection.Record()
        for _ in 0..<2 { _ = rule.record(status: 503, in: &first, now: 0, ejectedCount: 0, endpointCount: 4) }
        // 10 % of 4 endpoints is none, yet one may go.
        #expect(rule.record(status: 503, in: &first, now: 0, ejectedCount: 0, endpointCount: 4))
        for _ in 0..<2 { _ = rule.record(status: 503, in: &second, now: 0, ejectedCount: 1, endpointCount: 4) }
        #expect(!rule.record(status: 503, in: &second, now: 0, ejectedCount: 1, endpointCount: 4))
        let half = detection { $0.maxEjectionPercent = 50 }
        #expect(half.record(status: 503, in: &second, now: 0, ejectedCount: 1, endpointCount: 4))
    }
}

extension EndToEnd {
    /// A pod that answers only 503: without outlier detection (GIE's default) it keeps its share;
    /// with it, it is ejected after its consecutive failures and the others serve the rest.
    @Suite struct OutlierDetectionThroughTheGateway {
        @Test(arguments: [false, true])
        func aPodAnsweringOnly503s(ejecting: Bool) async throws {
            var dataPlane = DataPlaneConfiguration()
            if ejecting {
                var detection = OutlierDetection()
                detection.consecutive5xx = 3
                detection.baseEjectionTime = 60
                detection.maxEjectionPercent = 50
                dataPlane.outlierDetection = detection
            }
            let stack = try await GatewayStack.start(pods: 2, dataPlane: dataPlane)
            try await stack.pods[0].apply(PodFault.errors(FaultInjection(rate: 1, kind: .status(503))))
            var failed = 0
            for index in 0..<40 {
                let response = try await stack.post("/v1/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello \#(index)", "max_tokens": 2}"#)
                if response.status == 503 { failed += 1 }
            }
            if ejecting {
                #expect(failed == 3)
                #expect(stack.gateway.picker.datastore.ejectedEndpoints(now: stack.gateway.picker.datastore.now) == [stack.address(of: 0)])
            } else {
                // Its share: roughly half of the requests (the picker balances two idle pods).
                #expect(failed >= 8, "\(failed) of 40 failed")
            }
            await stack.stop()
        }
    }
}
