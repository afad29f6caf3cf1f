/// Envoy's outlier detection by consecutive 5xx (`outlier_detection.consecutive_5xx`, with
/// `split_external_local_origin_errors` off, so connect failures, resets and timeouts count as
/// 5xx too): an endpoint whose last `consecutive5xx` answers were all failures is ejected, out of
/// the candidates, for `baseEjectionTime` × the times it was ejected in a row (up to
/// `maxEjectionTime`); the multiplier falls by one for each `interval` it then stays healthy. At
/// most `maxEjectionPercent` of the pool is ejected at once, but always at least one endpoint.
/// Off by default, as in GIE's Envoy configuration, which sets none.
public struct OutlierDetection: Sendable, Equatable {
    public var consecutive5xx = 5
    public var baseEjectionTime = 30.0
    public var maxEjectionTime = 300.0
    public var maxEjectionPercent = 10.0
    public var interval = 10.0

    /// Envoy's defaults.
    public init() {}

    /// One endpoint's history, as the detector keeps it.
    struct Record: Sendable, Equatable {
        var consecutiveFailures = 0
        var ejectedUntil: Double?
        /// Ejections in a row: the ejection time's multiplier.
        var ejections = 0
        /// When it last came back (or 0), for the multiplier's decay.
        var returnedAt = 0.0

        func isEjected(now: Double) -> Bool { ejectedUntil.map { now < $0 } ?? false }
    }

    /// An answer from the endpoint (its status, or 503 for a connection that failed); returns
    /// whether it is ejected by it. `ejectedCount` and `endpointCount` are the pool's, now.
    func record(status: Int, in record: inout Record, now: Double, ejectedCount: Int, endpointCount: Int) -> Bool {
        if let until = record.ejectedUntil, now >= until {
            record.ejectedUntil = nil
            record.returnedAt = until
        }
        guard status >= 500 else {
            record.consecutiveFailures = 0
            return false
        }
        record.consecutiveFailures += 1
        guard record.consecutiveFailures >= consecutive5xx, record.ejectedUntil == nil else { return false }
        let withinShare = ejectedCount == 0 || Double(ejectedCount + 1) * 100 <= maxEjectionPercent * Double(endpointCount)
        guard withinShare else { return false }
        if interval > 0 {
            let healthyIntervals = ((now - record.returnedAt) / interval).rounded(.down)
            if healthyIntervals.isFinite { record.ejections = max(0, record.ejections - Int(min(healthyIntervals, 1e6))) }
        }
        record.ejections += 1
        record.consecutiveFailures = 0
        record.ejectedUntil = now + min(baseEjectionTime * Double(record.ejections), max(baseEjectionTime, maxEjectionTime))
        return true
    }
}
