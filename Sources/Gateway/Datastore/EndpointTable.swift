import NIOCore

/// An endpoint as discovery reports it: a pod's address on one target port, its labels and
/// whether the pod is Ready.
public struct DiscoveredEndpoint: Sendable, Equatable {
    public var endpoint: Endpoint
    public var labels: [String: String]
    public var ready: Bool

    public init(endpoint: Endpoint, labels: [String: String] = [:], ready: Bool = true) {
        self.endpoint = endpoint
        self.labels = labels
        self.ready = ready
    }
}

/// The gateway's endpoints and what it knows of each, with no clock, lock or socket: the
/// live `Datastore` keeps one under a lock and fills it from scrapes, the simulator keeps one
/// in virtual time. An endpoint is a candidate when it is Ready, its last good scrape is no
/// older than `stalenessThreshold` (GIE: 200 ms), and outlier detection has not ejected it.
public struct EndpointTable: Sendable {
    public let stalenessThreshold: Double
    /// Ejects endpoints that keep failing (nil: off, as in GIE).
    public let outlierDetection: OutlierDetection?
    /// Ordered by address, the order candidates are given in; `positions` finds one by address.
    private var entries: [Entry] = []
    private var positions: [String: Int] = [:]

    struct Entry {
        var discovered: DiscoveredEndpoint
        var metrics: EndpointMetrics?
        var scrapeInFlight = false
        /// The page `metrics` came from: an identical page is not read again (comparing bytes
        /// costs a fraction of hashing them, and in-process pods hand over the same storage).
        var page: ByteBuffer?
        var outlier = OutlierDetection.Record()
    }

    public init(stalenessThreshold: Double = 0.2, outlierDetection: OutlierDetection? = nil) {
        self.stalenessThreshold = stalenessThreshold
        self.outlierDetection = outlierDetection
    }

    /// Replaces the endpoint set (a static list, or a discovery watch's latest view); what is
    /// known of endpoints that stay is kept.
    public mutating func update(_ discovered: [DiscoveredEndpoint]) {
        var next: [String: Entry] = [:]
        for item in discovered {
            var entry = positions[item.endpoint.address].map { entries[$0] } ?? Entry(discovered: item)
            entry.discovered = item
            next[item.endpoint.address] = entry
        }
        entries = next.values.sorted { $0.discovered.endpoint.address < $1.discovered.endpoint.address }
        positions = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.discovered.endpoint.address, $0) })
    }

    // MARK: What the picker sees

    /// Ready endpoints with fresh metrics and not ejected, ordered by address.
    public func candidates(now: Double) -> [Candidate] {
        // One pass, reading entries in place: filtering first copied every entry (its labels,
        // metrics and page) into an array of its own, a thousand after every scrape.
        var candidates: [Candidate] = []
        candidates.reserveCapacity(entries.count)
        for index in entries.indices where isCandidate(entries[index], now: now) {
            candidates.append(Candidate(endpoint: entries[index].discovered.endpoint, metrics: entries[index].metrics))
        }
        return candidates
    }

    /// Until when `candidates(now:)` stays as it is if nothing else happens: the first moment
    /// a candidate's metrics go stale or an ejection ends.
    public func candidatesUnchanged(after now: Double) -> Double {
        var until = Double.infinity
        for entry in entries where entry.discovered.ready {
            if let updated = entry.metrics?.updateTime, now - updated <= stalenessThreshold {
                until = min(until, updated + stalenessThreshold)
            }
            if let ejectedUntil = entry.outlier.ejectedUntil, ejectedUntil > now { until = min(until, ejectedUntil) }
        }
        // Strictly after: at `updated + threshold` an endpoint is still fresh.
        return until.nextUp
    }

    private func isCandidate(_ entry: Entry, now: Double) -> Bool {
        guard entry.discovered.ready, let updated = entry.metrics?.updateTime else { return false }
        return now - updated <= stalenessThreshold && !entry.outlier.isEjected(now: now)
    }

    /// Every Ready endpoint, fresh metrics or not: what a gateway failing open picks from.
    public func readyEndpoints() -> [Endpoint] {
        entries.filter(\.discovered.ready).map(\.discovered.endpoint)
    }

    /// Endpoints outlier detection has ejected, now.
    public func ejectedEndpoints(now: Double) -> [String] {
        entries.filter { $0.outlier.isEjected(now: now) }.map(\.discovered.endpoint.address)
    }

    // MARK: What the data plane reports

    /// An endpoint answered with `status` (for outlier detection; a 5xx counts against it, any
    /// other status clears its run of failures).
    public mutating func reportAnswer(_ address: String, status: Int, now: Double) {
        guard let detection = outlierDetection, let position = positions[address] else { return }
        let ejected = entries.count { $0.outlier.isEjected(now: now) }
        _ = detection.record(status: status, in: &entries[position].outlier, now: now, ejectedCount: ejected, endpointCount: entries.count)
    }

    /// The data plane could not connect to an endpoint: it stops being a candidate until a
    /// scrape succeeds again, rather than waiting for its metrics to go stale.
    public mutating func reportConnectFailure(_ address: String, now: Double) {
        if let position = positions[address] { entries[position].metrics = nil }
        // A locally originated failure is a 5xx to Envoy's outlier detection.
        reportAnswer(address, status: 503, now: now)
    }

    // MARK: Scrapes

    /// The Ready endpoints with no scrape running, now marked as being scraped.
    public mutating func beginScrapes() -> [DiscoveredEndpoint] {
        var due: [DiscoveredEndpoint] = []
        for position in entries.indices where entries[position].discovered.ready && !entries[position].scrapeInFlight {
            entries[position].scrapeInFlight = true
            due.append(entries[position].discovered)
        }
        return due
    }

    /// A scrape brought `page`: when it is the page last read, the metrics it gave are fresh
    /// again as of `now` and true is returned; otherwise the caller reads it (`scraped`).
    public mutating func refreshIfUnchanged(_ address: String, page: ByteBuffer, now: Double) -> Bool {
        guard let position = positions[address], entries[position].page == page, entries[position].metrics != nil else { return false }
        entries[position].metrics?.updateTime = now
        entries[position].scrapeInFlight = false
        return true
    }

    /// A scrape ended with these metrics (nil: an unreadable page, which leaves the last good
    /// metrics to age), read from `page`.
    public mutating func scraped(_ address: String, metrics: EndpointMetrics?, page: ByteBuffer? = nil) {
        if let position = positions[address] { scraped(at: position, metrics: metrics, page: page) }
    }

    /// A scrape brought nothing. Refused or reset (`unreachable`): the pod is gone, whatever
    /// its last metrics said; a timeout leaves them to go stale.
    public mutating func scrapeFailed(_ address: String, unreachable: Bool) {
        if let position = positions[address] { scrapeFailed(at: position, unreachable: unreachable) }
    }

    // MARK: By position

    /// The endpoints' addresses in the table's order: an endpoint's position, valid until the
    /// next `update`, for a caller that scrapes them all (a thousand lookups by address a scrape
    /// were a tenth of the simulator's own work).
    public var addresses: [String] { entries.map(\.discovered.endpoint.address) }

    /// `scraped` for the endpoint at `position` in `addresses`.
    public mutating func scraped(at position: Int, metrics: EndpointMetrics?, page: ByteBuffer? = nil) {
        entries[position].scrapeInFlight = false
        guard let metrics else { return }
        entries[position].metrics = metrics
        entries[position].page = page
    }

    /// `scrapeFailed` for the endpoint at `position` in `addresses`.
    public mutating func scrapeFailed(at position: Int, unreachable: Bool) {
        entries[position].scrapeInFlight = false
        if unreachable { entries[position].metrics = nil }
    }
}
