import InferenceAPI
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The running gateway for one InferencePool: the HTTP/1.1 data plane on `port`, the endpoint
/// picker over a datastore that scrapes the pool's endpoints, and GIE's metrics on
/// `metricsPort`. Each event loop keeps its own upstream connections, so a request stays on the
/// thread that accepted it.
public final class GatewayServer: Sendable {
    public let picker: EndpointPicker
    public let port: Int
    public let metricsPort: Int?
    private let channels: [Channel]
    private let pools: [UpstreamPool]
    private let watch = NIOLockedValueBox<Task<Void, Error>?>(nil)

    private let scrapeGroup: MultiThreadedEventLoopGroup

    private init(
        picker: EndpointPicker, port: Int, metricsPort: Int?, channels: [Channel], pools: [UpstreamPool], scrapeGroup: MultiThreadedEventLoopGroup
    ) {
        self.scrapeGroup = scrapeGroup
        self.picker = picker
        self.port = port
        self.metricsPort = metricsPort
        self.channels = channels
        self.pools = pools
    }

    /// Builds the picker for `poolName` (the only pool when nil) from the resources, binds the
    /// data plane and the metrics listener, and starts scraping `endpoints`.
    public static func start(
        resources: GatewayResources, poolName: String? = nil, endpoints: [DiscoveredEndpoint] = [], host: String = "127.0.0.1",
        port: Int = 8080, metricsPort: Int? = nil, configuration: DataPlaneConfiguration = DataPlaneConfiguration(),
        group: MultiThreadedEventLoopGroup = .singleton, seed: UInt64 = 0, metricsSource: (any MetricsSource)? = nil,
        logger: Logger = Logger(label: "gateway", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> GatewayServer {
        let pool = try selectPool(resources, poolName)
        let tls = try configuration.tls?.makeContext()
        let scheduler = try Scheduler(config: resources.pickerConfig ?? .default, seed: seed)
        // Scrapes get a thread of their own: a data plane busy serving must not delay them past
        // the staleness threshold, which would empty the candidate set just when it is needed.
        let scrapeGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let datastore = Datastore(loop: scrapeGroup.next(), source: metricsSource, outlierDetection: configuration.outlierDetection)
        let metrics = GatewayMetrics(poolName: pool.name, datastore: datastore)
        let picker = EndpointPicker(
            pool: pool, director: Director(resources: resources, pool: pool, scheduler: scheduler, seed: seed), datastore: datastore,
            metrics: metrics, logger: logger)
        datastore.update(endpoints)
        datastore.start()
        var channels: [Channel] = []
        do {
            var routers: [ObjectIdentifier: GatewayRouter] = [:]
            var pools: [UpstreamPool] = []
            for loop in group.makeIterator() {
                let upstream = UpstreamPool(loop: loop, connectTimeout: configuration.connectTimeout)
                routers[ObjectIdentifier(loop)] = GatewayRouter(context: GatewayContext(picker: picker, pool: upstream, configuration: configuration))
                pools.append(upstream)
            }
            let routerByLoop = RouterTable(routers: routers)
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { [maxConnections = configuration.maxConnections ?? OpenFileLimit.connectionBudget(descriptorsPerConnection: 2)] channel in
                    AcceptGuard.install(on: channel, limit: maxConnections)
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 262_144))
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Outbound headers are the upstream's, already parsed and validated as they
                        // came in, or the gateway's own: validating them again cost 5 % of req/s.
                        try channel.pipeline.syncOperations.addHTTPServerHandlers(
                            router: routerByLoop.router(for: channel.eventLoop), limits: configuration.connectionLimits, tls: tls,
                            answersInClientVersion: true, outboundHeaderValidation: false)
                    }
                }
                .bind(host: host, port: port)
                .get()
            channels.append(channel)
            var boundMetricsPort: Int?
            if let metricsPort {
                let metricsChannel = try await MetricsListener.bind(host: host, port: metricsPort, metrics: metrics, group: group)
                channels.append(metricsChannel)
                boundMetricsPort = metricsChannel.localAddress?.port
            }
            return GatewayServer(
                picker: picker, port: channel.localAddress?.port ?? port, metricsPort: boundMetricsPort, channels: channels, pools: pools,
                scrapeGroup: scrapeGroup)
        } catch {
            // Nothing half-started stays behind: the scrape thread, a bound listener.
            datastore.stop()
            // Best effort: the start's own error, thrown below, is the one the caller needs.
            for channel in channels { try? await channel.close() }
            try? await scrapeGroup.shutdownGracefully()
            throw error
        }
    }

    /// A graceful shutdown's first half: the data plane's listener closes, so new connections
    /// are refused; requests on open connections go on. `stop()` ends the rest.
    public func beginDraining() async throws {
        try await channels[0].close()
    }

    /// Waits until the data plane's listener closes.
    public func waitUntilClosed() async throws {
        try await channels[0].closeFuture.get()
    }

    /// The endpoint set changed (a discovery watch, or a static list).
    public func update(_ endpoints: [DiscoveredEndpoint]) {
        picker.datastore.update(endpoints)
    }

    /// Follows a pod source until stopped: the pool's selected pods become its endpoints.
    public func follow(_ source: any PodSource) {
        let pool = picker.pool
        let task = Task { [picker] in
            try await source.watch { pods in picker.datastore.update(pool.endpoints(from: pods)) }
        }
        watch.withLockedValue { $0 = task }
    }

    /// Stops listening, scraping and pooling; requests in flight end with their connections.
    public func stop() async throws {
        watch.withLockedValue { $0?.cancel() }
        picker.datastore.stop()
        for channel in channels { try await channel.close() }
        for pool in pools {
            try await pool.loop.submit { pool.closeAll() }.get()
        }
        try await scrapeGroup.shutdownGracefully()
    }

    /// The pool named `name`, or the only one.
    public static func selectPool(_ resources: GatewayResources, _ name: String?) throws -> InferencePool {
        if let name {
            guard let pool = resources.pools.first(where: { $0.name == name }) else {
                throw GatewayStartError("no InferencePool named \"\(name)\" in the configuration")
            }
            return pool
        }
        guard resources.pools.count == 1, let pool = resources.pools.first else {
            let names = resources.pools.map(\.name).joined(separator: ", ")
            throw GatewayStartError(
                resources.pools.isEmpty ? "the configuration has no InferencePool" : "several InferencePools (\(names)); choose one with --pool")
        }
        return pool
    }

    /// Each event loop's router; the table is built before the first connection and never changes.
    struct RouterTable: @unchecked Sendable {
        let routers: [ObjectIdentifier: GatewayRouter]
        func router(for loop: EventLoop) -> GatewayRouter { routers[ObjectIdentifier(loop)]! }
    }
}

/// Why the gateway cannot start with what it was given.
public struct GatewayStartError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Serves `/metrics` (GIE's EPP metrics port) and nothing else.
enum MetricsListener {
    static func bind(host: String, port: Int, metrics: GatewayMetrics, group: EventLoopGroup) async throws -> Channel {
        try await HTTPListener.bind(host: host, port: port, group: group) { MetricsRouter(metrics: metrics) }
    }

    final class MetricsRouter: HTTPRequestRouter {
        let metrics: GatewayMetrics
        let maxBodyBytes = 64 * 1024
        init(metrics: GatewayMetrics) { self.metrics = metrics }

        func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)? {
            if request.method == .GET, request.path == "/metrics" {
                writer.respond(status: .ok, contentType: Prometheus.contentType, body: metrics.render())
            } else {
                writer.respond(status: .notFound, contentType: "text/plain; charset=utf-8", body: ByteBuffer(string: "404 page not found\n"))
            }
            return nil
        }
    }
}
