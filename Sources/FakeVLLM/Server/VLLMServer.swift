import Foundation
import InferenceAPI
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An emulated vLLM server: the engine, its metrics and the OpenAI-compatible HTTP API, bound
/// to one port. Connections are accepted onto the engine's event loop, so a request never
/// crosses threads on its way to the engine.
public final class VLLMServer: Sendable {
    public let configuration: ServerConfiguration
    public let setup: EngineSetup
    /// The bound port (useful with port 0).
    public let port: Int
    private let channel: Channel
    let router: Router
    /// Open client connections, so stopping the server ends them too (as a killed pod would).
    private let connections: NIOLockedValueBox<[ObjectIdentifier: Channel]>
    /// Chaos: connections are reset as they arrive (see `setPartitioned`); also set once stopped,
    /// so a connection accepted while stopping does not outlive the server.
    private let partitioned: NIOLockedValueBox<Bool>
    private let stopped = NIOLockedValueBox(false)
    /// Chaos: hung (mirrors the router's flag for readers off its loop).
    private let hung = NIOLockedValueBox(false)
    /// The periodic engine stats line, when logged.
    let statsTask: RepeatedTask?
    /// The server's own failures (stopping); the engine's logger, silent when not given one.
    private let logger: Logger

    private init(
        configuration: ServerConfiguration, setup: EngineSetup, port: Int, channel: Channel, router: Router,
        connections: NIOLockedValueBox<[ObjectIdentifier: Channel]>, partitioned: NIOLockedValueBox<Bool>, statsTask: RepeatedTask?,
        logger: Logger
    ) {
        self.statsTask = statsTask
        self.logger = logger
        self.configuration = configuration
        self.setup = setup
        self.port = port
        self.channel = channel
        self.router = router
        self.connections = connections
        self.partitioned = partitioned
    }

    /// Resolves profiles, builds the engine and binds. With `--startup-delay`, /health is 503
    /// and requests are refused until the emulated model load has finished.
    public static func start(
        _ configuration: ServerConfiguration, profiles: ProfileStore, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logging: ServerLogging? = nil
    ) async throws -> VLLMServer {
        guard configuration.timeScale > 0, configuration.timeScale.isFinite else {
            throw ProfileError("time scale must be a positive number, got \(configuration.timeScale)")
        }
        let setup = try EngineSetup(configuration, profiles: profiles)
        let tls = try configuration.tls?.makeContext()
        let loop = group.next()
        let metrics = EngineMetrics(
            modelName: configuration.primaryModelName, config: setup.engineConfig,
            gpuMemoryUtilization: configuration.gpuMemoryUtilization, cacheDtype: configuration.kvCacheDtype,
            showHiddenMetrics: configuration.showHiddenMetricsForVersion != nil)
        let router = try await loop.submit {
            let driver = EngineDriver(
                loop: loop, core: PodCore(configuration: configuration, setup: setup), metrics: metrics, timeScale: configuration.timeScale)
            driver.engineLog = logging?.engine
            return Router(configuration: configuration, setup: setup, driver: driver, accessLog: logging?.access)
        }.get()
        let connections = NIOLockedValueBox<[ObjectIdentifier: Channel]>([:])
        let partitioned = NIOLockedValueBox(false)
        let channel = try await ServerBootstrap(group: group, childGroup: loop)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { AcceptGuard.install(on: $0) }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                if partitioned.withLockedValue({ $0 }) { return Self.reset(channel) }
                let key = ObjectIdentifier(channel)
                connections.withLockedValue { $0[key] = channel }
                channel.closeFuture.whenComplete { _ in _ = connections.withLockedValue { $0.removeValue(forKey: key) } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPServerHandlers(router: router, limits: configuration.connectionLimits, tls: tls)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        // Scheduled once bound: a server that failed to start logs nothing.
        var statsTask: RepeatedTask?
        if let engineLog = logging?.engine, configuration.logStats, configuration.logStatsInterval > 0, configuration.logStatsInterval.isFinite {
            let interval = TimeAmount.nanoseconds(Int64(min(configuration.logStatsInterval, 86_400) * 1e9))
            statsTask = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in router.driver.logStats(to: engineLog) }
        }
        if configuration.startupDelay > 0, configuration.startupDelay.isFinite {
            loop.scheduleTask(in: .nanoseconds(Int64(configuration.startupDelay * 1e9))) { router.core.markReady() }
        }
        return VLLMServer(
            configuration: configuration, setup: setup, port: channel.localAddress?.port ?? configuration.port, channel: channel,
            router: router, connections: connections, partitioned: partitioned, statsTask: statsTask,
            logger: logging?.engine ?? Logger(label: "loggers", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// Closes a connection with a TCP reset (SO_LINGER 0), as a rejecting firewall would.
    private static func reset(_ channel: Channel) -> EventLoopFuture<Void> {
        guard let socket = channel as? SocketOptionProvider else { return channel.close().flatMapErrorThrowing { _ in } }
        return socket.setSoLinger(linger(l_onoff: 1, l_linger: 0))
            .flatMap { channel.close() }
            .flatMapErrorThrowing { _ in }
    }

    /// Ends the emulated model load now (with an infinite `startupDelay`, the only way: the fleet
    /// manager's lifecycle decides when a pod is Ready).
    public func markReady() async throws {
        let router = self.router
        try await router.driver.loop.submit { router.core.markReady() }.get()
    }

    /// Loads these registered adapters into the host cache now (a fleet's `preload: true`).
    public func preload(adapters: [String]) async throws {
        let router = self.router
        try await router.driver.loop.submit { router.driver.preload(adapters) }.get()
    }

    /// A graceful shutdown's first half: no new connections, /health fails, new requests get
    /// 503; requests in flight finish. `stop()` ends the rest.
    public func beginDraining() async throws {
        let router = self.router
        try await router.driver.loop.submit { router.core.beginDraining() }.get()
        try await channel.close()
    }

    /// Chaos: puts a fault on the pod or lifts it. A hang reads requests and answers none and
    /// takes no engine step, as SIGSTOP would a vLLM process; a partition resets connections
    /// (see `setPartitioned`).
    public func apply(_ fault: PodFault) async throws {
        let router = self.router
        let flag = self.hung
        // The router's hang and this mirror change together on the loop, so concurrent
        // hang/restore cannot split them.
        try await router.driver.loop.submit {
            router.apply(fault)
            flag.withLockedValue { $0 = router.core.faults.hung }
        }.get()
        switch fault {
        case .partition(let partitioned): try await setPartitioned(partitioned)
        case .restore: try await setPartitioned(false)
        default: break
        }
    }

    /// Chaos: a network partition between the pod and its clients (the gateway included):
    /// open connections and every new one are reset, so requests in flight end abruptly and the
    /// gateway's scrapes are refused; the engine itself keeps its state (unlike a kill).
    private func setPartitioned(_ isPartitioned: Bool) async throws {
        partitioned.withLockedValue { $0 = isPartitioned }
        guard isPartitioned else { return }
        for connection in connections.withLockedValue({ Array($0.values) }) {
            // `reset` drops close errors itself: a connection being reset is gone either way.
            try? await Self.reset(connection).get()
        }
    }

    /// What `GET /metrics` would get now, without a socket: a fleet's gateway reads its
    /// in-process pods this way. A stopped or partitioned server refuses; a hung one is silent.
    public func scrapeMetrics(_ completion: @escaping @Sendable (MetricsScrapeAnswer) -> Void) {
        guard !partitioned.withLockedValue({ $0 }) else { return completion(.refused) }
        guard !hung.withLockedValue({ $0 }) else { return completion(.silent) }
        let router = self.router
        // An idle pod's page is already rendered: read it here, without waking its loop.
        if let page = router.driver.metrics.renderedPage.current { return completion(.page(page)) }
        router.driver.loop.execute {
            completion(router.core.faults.hung ? .silent : .page(router.driver.metrics.render()))
        }
    }

    /// What `GET /health` would answer now, without a socket (a fleet's probes of in-process
    /// pods): 200 or 503 as the route would, refused once stopped, silent when hung. A partition
    /// does not stop it: the kubelet probes from the node, which a network policy leaves alone.
    public func checkHealth() async -> HealthAnswer {
        guard !stopped.withLockedValue({ $0 }) else { return .refused }
        guard !hung.withLockedValue({ $0 }) else { return .silent }
        let router = self.router
        // Fails only once the engine's event loop is gone: nothing answers, as once stopped.
        return (try? await router.driver.loop.submit { HealthAnswer.status(router.core.ready ? 200 : 503) }.get()) ?? .refused
    }

    /// Wall seconds this pod's emulation has fallen behind its own timeline (its steps started
    /// late because the machine was busy): growing lag means it no longer runs at the
    /// accelerator's speed.
    public func emulationLag() async throws -> Double {
        let router = self.router
        return try await router.driver.loop.submit { router.driver.lag }.get()
    }

    /// Generation requests still being answered, held ones (a hung server's) included.
    public func requestsInFlight() async throws -> Int {
        let router = self.router
        return try await router.driver.loop.submit { router.core.inFlight + router.heldRequestCount }.get()
    }

    /// Stops accepting connections and closes the open ones (their requests end abruptly).
    public func stop() async throws {
        statsTask?.cancel()
        stopped.withLockedValue { $0 = true }
        partitioned.withLockedValue { $0 = true }  // anything accepted from now on is reset
        do {
            try await channel.close()
        } catch ChannelError.alreadyClosed {
            // Draining closed the listener already: nothing failed.
        } catch {
            logger.warning("stopping: closing the listening socket failed: \(error)")
        }
        for connection in connections.withLockedValue({ Array($0.values) }) {
            do {
                try await connection.close()
            } catch {
                // Clients hang up as the server stops (already closed, reset): expected noise.
                logger.debug("stopping: closing a connection failed: \(error)")
            }
        }
    }

    /// Generation requests accepted so far, by the model name each asked for (an adapter or the
    /// base model).
    public func acceptedRequests() async throws -> [String: Int] {
        let router = self.router
        return try await router.driver.loop.submit { router.core.acceptedRequests }.get()
    }

    /// Waits until the listening socket closes.
    public func waitUntilClosed() async throws {
        try await channel.closeFuture.get()
    }
}

/// Where a server's own logs go: uvicorn's access lines and vLLM's engine lines (its periodic
/// stats). A fleet's in-process pods have none, as their logs would drown the fleet's.
public struct ServerLogging: Sendable {
    public var access: Logger
    public var engine: Logger

    public init(access: Logger, engine: Logger) {
        self.access = access
        self.engine = engine
    }
}

/// How a server answers a metrics scrape made without a socket.
public enum MetricsScrapeAnswer: Sendable {
    case page(ByteBuffer)
    /// Nothing listens (stopped) or the connection would be reset (partitioned).
    case refused
    /// A hung server: no answer would come.
    case silent
}

/// How a server answers a health check made without a socket.
public enum HealthAnswer: Sendable, Equatable {
    case status(Int)
    case refused
    case silent
}
