import Foundation
import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

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

/// The gateway's view of a pool: the endpoints discovery reports and what each last reported on
/// `/metrics`, scraped every `scrapeInterval` (GIE: 50 ms). An endpoint that is not Ready, or
/// whose last good scrape is older than `stalenessThreshold` (GIE: 200 ms), is not a candidate.
/// Scrapes run on `loop`; the data plane reads candidates from any event loop under a lock held
/// only to copy a few values.
public final class Datastore: Sendable {
    public let loop: EventLoop
    public let scrapeInterval: TimeAmount
    public let stalenessThreshold: Double
    /// Ejects endpoints that keep failing (nil: off, as in GIE).
    public let outlierDetection: OutlierDetection?
    /// Where metrics pages come from: `GET /metrics` over HTTP, or a fleet's pods in this process.
    private let source: any MetricsSource
    private let origin = NIODeadline.now()
    private let endpoints = NIOLockedValueBox<[String: Entry]>([:])
    private let scrapeTask = NIOLockedValueBox<RepeatedTask?>(nil)

    struct Entry {
        var discovered: DiscoveredEndpoint
        var metrics: EndpointMetrics?
        var scrapeInFlight = false
        /// The page `metrics` came from: an identical page is not read again (comparing bytes
        /// costs a fraction of hashing them, and in-process pods hand over the same storage).
        var page: ByteBuffer?
        var outlier = OutlierDetection.Record()
    }

    public init(
        loop: EventLoop, scrapeInterval: TimeAmount = .milliseconds(50), stalenessThreshold: Double = 0.2, source: (any MetricsSource)? = nil,
        outlierDetection: OutlierDetection? = nil
    ) {
        self.loop = loop
        self.outlierDetection = outlierDetection
        self.source = source ?? HTTPMetricsSource(loop: loop)
        self.scrapeInterval = scrapeInterval
        self.stalenessThreshold = stalenessThreshold
    }

    /// Seconds since the datastore started (the clock metrics are stamped with).
    public var now: Double { Double((NIODeadline.now() - origin).nanoseconds) / 1e9 }

    /// Replaces the endpoint set (a static list, or a discovery watch's latest view).
    public func update(_ discovered: [DiscoveredEndpoint]) {
        endpoints.withLockedValue { endpoints in
            var next: [String: Entry] = [:]
            for item in discovered {
                var entry = endpoints[item.endpoint.address] ?? Entry(discovered: item)
                entry.discovered = item
                next[item.endpoint.address] = entry
            }
            endpoints = next
        }
    }

    /// Ready endpoints with fresh metrics and not ejected, ordered by address.
    public func candidates(now: Double) -> [Candidate] {
        let stalenessThreshold = self.stalenessThreshold
        return endpoints.withLockedValue { endpoints in
            endpoints.values
                .filter {
                    $0.discovered.ready && $0.metrics.map { now - $0.updateTime <= stalenessThreshold } == true && !$0.outlier.isEjected(now: now)
                }
                .map { Candidate(endpoint: $0.discovered.endpoint, metrics: $0.metrics) }
        }.sorted { $0.endpoint.address < $1.endpoint.address }
    }

    /// An endpoint answered with `status` (for outlier detection; a 5xx counts against it, any
    /// other status clears its run of failures).
    public func reportAnswer(_ address: String, status: Int) {
        guard let detection = outlierDetection else { return }
        let now = self.now
        endpoints.withLockedValue { endpoints in
            guard var record = endpoints[address]?.outlier else { return }
            let ejected = endpoints.values.count { $0.outlier.isEjected(now: now) }
            _ = detection.record(status: status, in: &record, now: now, ejectedCount: ejected, endpointCount: endpoints.count)
            endpoints[address]?.outlier = record
        }
    }

    /// Endpoints outlier detection has ejected, now.
    public func ejectedEndpoints(now: Double) -> [String] {
        endpoints.withLockedValue { $0.filter { $0.value.outlier.isEjected(now: now) }.map(\.key).sorted() }
    }

    /// Every Ready endpoint, fresh metrics or not: what a gateway failing open picks from.
    public func readyEndpoints() -> [Endpoint] {
        endpoints.withLockedValue { $0.values.filter(\.discovered.ready).map(\.discovered.endpoint) }
            .sorted { $0.address < $1.address }
    }

    /// The data plane could not connect to an endpoint: it stops being a candidate until a
    /// scrape succeeds again, rather than waiting for its metrics to go stale.
    public func reportConnectFailure(_ address: String) {
        endpoints.withLockedValue { $0[address]?.metrics = nil }
        // A locally originated failure is a 5xx to Envoy's outlier detection.
        reportAnswer(address, status: 503)
    }

    /// Starts scraping every endpoint each interval; a scrape still running is not doubled.
    public func start() {
        let task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: scrapeInterval) { [weak self] _ in
            self?.scrapeAll()
        }
        scrapeTask.withLockedValue { $0 = task }
    }

    public func stop() {
        scrapeTask.withLockedValue {
            $0?.cancel()
            $0 = nil
        }
        source.close()
    }

    private func scrapeAll() {
        let due: [DiscoveredEndpoint] = endpoints.withLockedValue { endpoints in
            var due: [DiscoveredEndpoint] = []
            for (address, entry) in endpoints where entry.discovered.ready && !entry.scrapeInFlight {
                endpoints[address]?.scrapeInFlight = true
                due.append(entry.discovered)
            }
            return due
        }
        for discovered in due {
            let address = discovered.endpoint.address
            let mapping = MetricsMapping.forEngine(discovered.labels[MetricsMapping.engineLabel])
            source.scrape(address) { [weak self] result in
                guard let self else { return }
                let now = self.now
                guard case .success(let page) = result else {
                    self.endpoints.withLockedValue { endpoints in
                        endpoints[address]?.scrapeInFlight = false
                        // Refused or reset: the pod is gone, whatever its last metrics said.
                        if case .failure(.unreachable) = result { endpoints[address]?.metrics = nil }
                    }
                    return
                }
                let unchanged = self.endpoints.withLockedValue { endpoints -> Bool in
                    guard let entry = endpoints[address], entry.page == page, entry.metrics != nil else { return false }
                    endpoints[address]?.metrics?.updateTime = now
                    endpoints[address]?.scrapeInFlight = false
                    return true
                }
                if unchanged { return }
                let metrics = try? MetricsExtractor.extract(String(buffer: page), mapping: mapping, now: now)
                self.endpoints.withLockedValue { endpoints in
                    endpoints[address]?.scrapeInFlight = false
                    guard let metrics else { return }  // an unreadable page leaves the last good metrics to age
                    endpoints[address]?.metrics = metrics
                    endpoints[address]?.page = page
                }
            }
        }
    }
}

/// Where the datastore gets an endpoint's metrics page.
public protocol MetricsSource: Sendable {
    /// Fetches the page of the endpoint at `address`; calls back once, on any thread.
    func scrape(_ address: String, completion: @escaping @Sendable (Result<ByteBuffer, ScrapeFailure>) -> Void)
    func close()
}

/// `GET /metrics` on keep-alive connections to every endpoint, on the datastore's loop: scrapes
/// never wait for a thread pool shared with anything else. A scrape gets 1 s.
final class HTTPMetricsSource: MetricsSource {
    private let connections: UpstreamPool

    init(loop: EventLoop) { connections = UpstreamPool(loop: loop, connectTimeout: .seconds(1)) }

    func scrape(_ address: String, completion: @escaping @Sendable (Result<ByteBuffer, ScrapeFailure>) -> Void) {
        let connections = self.connections
        if connections.loop.inEventLoop {
            MetricsScrape(address: address, pool: connections, timeout: .seconds(1), completion: completion).start()
        } else {
            connections.loop.execute { MetricsScrape(address: address, pool: connections, timeout: .seconds(1), completion: completion).start() }
        }
    }

    func close() {
        let connections = self.connections
        connections.loop.execute { connections.closeAll() }
    }
}

/// Why a scrape brought no metrics.
public enum ScrapeFailure: Error, Sendable {
    /// Refused, reset or closed: nothing is serving there.
    case unreachable
    /// No complete answer within the timeout (a hung pod): staleness takes it out.
    case timeout
    /// An answer that is not a metrics page (non-200, or too large).
    case badResponse
}

/// One `GET /metrics` on a pooled connection; calls back with the page or why there is none.
final class MetricsScrape: UpstreamResponseHandler {
    private let address: String
    private let pool: UpstreamPool
    private let timeout: TimeAmount
    private var completion: ((Result<ByteBuffer, ScrapeFailure>) -> Void)?
    private var connection: UpstreamConnection?
    private var body = ByteBuffer()
    private var status: HTTPResponseStatus = .ok
    private var timer: Scheduled<Void>?
    private var fresh = false
    private var answered = false

    init(address: String, pool: UpstreamPool, timeout: TimeAmount, completion: @escaping (Result<ByteBuffer, ScrapeFailure>) -> Void) {
        self.address = address
        self.pool = pool
        self.timeout = timeout
        self.completion = completion
    }

    func start(fresh: Bool = false) {
        self.fresh = fresh
        pool.acquire(address, fresh: fresh) { [self] result in
            guard case .success(let connection) = result else { return finish(.failure(.unreachable)) }
            self.connection = connection
            timer = pool.loop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                self.connection?.close()
                finish(.failure(.timeout))
            }
            var headers = HTTPHeaders()
            headers.add(name: "host", value: address)
            headers.add(name: "accept", value: "text/plain")
            connection.send(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/metrics", headers: headers), body: ByteBuffer(), to: self)
        }
    }

    func upstreamHead(_ head: HTTPResponseHead) {
        answered = true
        status = head.status
    }
    func upstreamBody(_ buffer: ByteBuffer) {
        var buffer = buffer
        body.writeBuffer(&buffer)
        if body.readableBytes > Self.maxBodyBytes {
            connection?.close()
            connection = nil
            finish(.failure(.badResponse))
        }
    }

    /// A metrics page larger than this is refused (a real vLLM page is tens of kilobytes).
    static let maxBodyBytes = 8 * 1024 * 1024
    func upstreamReadComplete() {}
    func upstreamEnd() {
        connection = nil
        finish(status == .ok ? .success(body) : .failure(.badResponse))
    }
    func upstreamFailed() {
        let reused = connection?.reused == true
        connection = nil
        // A kept-alive connection the pod closed as it was reused says nothing about the pod:
        // one fresh connection decides.
        if reused, !fresh, !answered {
            timer?.cancel()
            timer = nil
            return start(fresh: true)
        }
        finish(.failure(.unreachable))
    }

    private func finish(_ result: Result<ByteBuffer, ScrapeFailure>) {
        timer?.cancel()
        timer = nil
        let completion = self.completion
        self.completion = nil
        completion?(result)
    }
}
