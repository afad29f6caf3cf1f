import Foundation
import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The gateway's view of a pool: the endpoints discovery reports and what each last reported on
/// `/metrics`, scraped every `scrapeInterval` (GIE: 50 ms). An endpoint that is not Ready, or
/// whose last good scrape is older than `stalenessThreshold` (GIE: 200 ms), is not a candidate.
/// Scrapes run on `loop`; the data plane reads candidates from any event loop under a lock held
/// only to copy a few values.
public final class Datastore: Sendable {
    public let loop: EventLoop
    public let scrapeInterval: TimeAmount
    /// Where metrics pages come from: `GET /metrics` over HTTP, or a fleet's pods in this process.
    private let source: any MetricsSource
    private let origin = NIODeadline.now()
    private let table: NIOLockedValueBox<EndpointTable>
    private let scrapeTask = NIOLockedValueBox<RepeatedTask?>(nil)

    public init(
        loop: EventLoop, scrapeInterval: TimeAmount = .milliseconds(50), stalenessThreshold: Double = 0.2, source: (any MetricsSource)? = nil,
        outlierDetection: OutlierDetection? = nil
    ) {
        self.loop = loop
        self.source = source ?? HTTPMetricsSource(loop: loop)
        self.scrapeInterval = scrapeInterval
        table = NIOLockedValueBox(EndpointTable(stalenessThreshold: stalenessThreshold, outlierDetection: outlierDetection))
    }

    /// Seconds since the datastore started (the clock metrics are stamped with).
    public var now: Double { Double((NIODeadline.now() - origin).nanoseconds) / 1e9 }

    /// Replaces the endpoint set (a static list, or a discovery watch's latest view).
    public func update(_ discovered: [DiscoveredEndpoint]) {
        table.withLockedValue { $0.update(discovered) }
    }

    /// Ready endpoints with fresh metrics and not ejected, ordered by address.
    public func candidates(now: Double) -> [Candidate] {
        table.withLockedValue { $0.candidates(now: now) }
    }

    /// An endpoint answered with `status` (outlier detection).
    public func reportAnswer(_ address: String, status: Int) {
        let now = self.now
        table.withLockedValue { $0.reportAnswer(address, status: status, now: now) }
    }

    /// Endpoints outlier detection has ejected, now.
    public func ejectedEndpoints(now: Double) -> [String] {
        table.withLockedValue { $0.ejectedEndpoints(now: now) }
    }

    /// Every Ready endpoint, fresh metrics or not: what a gateway failing open picks from.
    public func readyEndpoints() -> [Endpoint] {
        table.withLockedValue { $0.readyEndpoints() }
    }

    /// The data plane could not connect to an endpoint (see `EndpointTable.reportConnectFailure`).
    public func reportConnectFailure(_ address: String) {
        let now = self.now
        table.withLockedValue { $0.reportConnectFailure(address, now: now) }
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
        for discovered in table.withLockedValue({ $0.beginScrapes() }) {
            let address = discovered.endpoint.address
            let mapping = MetricsMapping.forEngine(discovered.labels[MetricsMapping.engineLabel])
            source.scrape(address) { [weak self] result in
                guard let self else { return }
                let now = self.now
                switch result {
                case .failure(let failure):
                    self.table.withLockedValue { $0.scrapeFailed(address, unreachable: failure == .unreachable) }
                case .success(let page):
                    if self.table.withLockedValue({ $0.refreshIfUnchanged(address, page: page, now: now) }) { return }
                    // Read outside the lock: the data plane reads candidates meanwhile.
                    // Unreadable (nil) leaves the last good metrics to go stale, which takes the
                    // endpoint out of the candidates; logging it 20 times a second would bury the rest.
                    let metrics = try? MetricsExtractor.extract(String(buffer: page), mapping: mapping, now: now)
                    self.table.withLockedValue { $0.scraped(address, metrics: metrics, page: page) }
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
    private var retry = FreshConnectionRetry()
    private var answered = false

    init(address: String, pool: UpstreamPool, timeout: TimeAmount, completion: @escaping (Result<ByteBuffer, ScrapeFailure>) -> Void) {
        self.address = address
        self.pool = pool
        self.timeout = timeout
        self.completion = completion
    }

    func start() {
        pool.acquire(address, fresh: retry.isSpent) { [self] result in
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
        if retry.shouldRetry(after: answered ? .duringResponse : .beforeResponse(connectionWasReused: reused)) {
            timer?.cancel()
            timer = nil
            return start()
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
