import ArgumentParser
import Foundation
import Gateway
import GatewayExtProc
import InferenceAPI
import Logging
import NIOCore
import NIOPosix

/// `understudy gateway`: the inference gateway with GIE's endpoint picker in front of
/// vLLM-compatible servers, configured by GIE's Kubernetes resources.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway", abstract: "Run the inference gateway (GIE's endpoint picker) in front of vLLM-compatible servers.")

    @Option(name: .customLong("config"), parsing: .upToNextOption,
            help: "Kubernetes YAML files: InferencePool, InferenceModel, InferenceObjective, InferenceModelRewrite, EndpointPickerConfig.")
    var configFiles: [String]
    @Option(help: "Endpoints as host:port (a bare host gets one endpoint per targetPort), comma-separated.") var endpoints: String
    @Option(help: "The InferencePool to serve, when the files define several.") var pool: String?
    @Option(help: "Host to bind.") var host = "0.0.0.0"
    @Option(help: "Port of the OpenAI-compatible API.") var port = 8080
    @Option(help: "Port of the EPP metrics (/metrics); 0 picks a free one.") var metricsPort = 9090
    @Option(help: "Largest request body in bytes.") var maxBodyBytes = 16 * 1024 * 1024
    @Option(help: "Seconds to wait for an upstream connection.") var connectTimeout = 5.0
    @Option(help: "Seconds an upstream may stay silent (before its first byte or between two).") var upstreamTimeout = 300.0
    @Option(help: "Endpoints tried per request: a failed connection moves on to the next (and, with --retry-on-reset, a reset before the response head).") var maxAttempts = 3
    @Flag(help: "Retry a request whose upstream closed before answering, elsewhere (Envoy's retry_on: reset; off as in GIE's Envoy config).")
    var retryOnReset = false
    @Option(help: "Eject an endpoint after this many consecutive 5xx, as Envoy's outlier_detection.consecutive_5xx (default: off, as in GIE).")
    var outlierConsecutive5xx: Int?
    @Option(help: "With --outlier-consecutive-5xx: seconds of the first ejection (Envoy's base_ejection_time), doubled, tripled… in a row up to 300 s.")
    var outlierBaseEjectionTime = 30.0
    @Option(help: "Client connections held open at once; more are closed as they come (default: what the open-file limit allows, 2 per connection).")
    var maxConnections: Int?
    @Option(help: "Seconds an idle client connection stays open (Envoy's idle_timeout; 0: forever).") var idleTimeout = 3600.0
    @Option(help: "Seconds from a request's first byte to the end of its headers, else the connection is closed (0: no limit).")
    var requestHeadersTimeout = 10.0
    @Option(help: "Seconds from a request's headers to the end of its body, else 408 (0: no limit).") var requestBodyTimeout = 300.0
    @OptionGroup var tls: TLSOptions
    @OptionGroup var extProc: ExtProcOptions
    @OptionGroup var logging: LogOptions
    @Option(help: "Require Authorization: Bearer KEY on /v1 routes (also UNDERSTUDY_GATEWAY_API_KEY); the header is forwarded.") var apiKey: String?
    @Option(help: "Seed of the picker's random choices.") var seed: UInt64 = 0
    @Option(help: "Event-loop threads serving connections (default: one per core, as Envoy's --concurrency).") var threads: Int?

    func validate() throws {
        guard !configFiles.isEmpty else { throw ValidationError("--config needs at least one file") }
        guard connectTimeout > 0, upstreamTimeout > 0 else { throw ValidationError("timeouts must be positive") }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let maxConnections, maxConnections < 1 { throw ValidationError("--max-connections must be at least 1") }
        if let count = outlierConsecutive5xx, count < 1 { throw ValidationError("--outlier-consecutive-5xx must be at least 1") }
        guard outlierBaseEjectionTime > 0, outlierBaseEjectionTime <= 86_400 else { throw ValidationError("--outlier-base-ejection-time must be > 0 and at most a day") }
        _ = try connectionLimits()
        try extProc.validate()
    }

    func connectionLimits() throws -> ConnectionLimits {
        try ConnectionLimits.gateway.overriding(
            idle: (idleTimeout, "--idle-timeout"), requestHeaders: requestHeadersTimeout, requestBody: requestBodyTimeout)
    }

    func run() async throws {
        logging.bootstrap()
        let resources: GatewayResources
        do {
            resources = try ManifestLoader.load(files: configFiles)
        } catch {
            throw ValidationError("\(error)")
        }
        var dataPlane = DataPlaneConfiguration()
        dataPlane.maxBodyBytes = maxBodyBytes
        dataPlane.connectTimeout = .nanoseconds(Int64(connectTimeout * 1e9))
        dataPlane.upstreamTimeout = .nanoseconds(Int64(upstreamTimeout * 1e9))
        dataPlane.maxAttempts = maxAttempts
        dataPlane.retryOnReset = retryOnReset
        dataPlane.connectionLimits = try connectionLimits()
        dataPlane.tls = try tls.serverTLS()
        dataPlane.apiKey = apiKey ?? ProcessInfo.processInfo.environment["UNDERSTUDY_GATEWAY_API_KEY"]
        dataPlane.maxConnections = maxConnections
        if let count = outlierConsecutive5xx {
            var detection = OutlierDetection()
            detection.consecutive5xx = count
            detection.baseEjectionTime = outlierBaseEjectionTime
            dataPlane.outlierDetection = detection
        }
        let list = endpoints.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
        let server: GatewayServer
        do {
            let chosen = try GatewayServer.selectPool(resources, pool)
            server = try await GatewayServer.start(
                resources: resources, poolName: chosen.name, endpoints: chosen.endpoints(fromList: list), host: host, port: port,
                metricsPort: metricsPort, configuration: dataPlane,
                group: threads.map { MultiThreadedEventLoopGroup(numberOfThreads: $0) } ?? .singleton, seed: seed, logger: Logger(label: "epp"))
        } catch let error as GatewayStartError {
            throw ValidationError(error.description)
        }
        let picker = server.picker
        print("understudy gateway: InferencePool \(picker.pool.name) (failureMode \(picker.pool.failureMode.rawValue)), \(list.count) endpoint(s)")
        print("  picker: \(resources.pickerConfig == nil ? "GIE's default profile (queue 2, kv-cache 2, prefix 3)" : "EndpointPickerConfig from --config")")
        print("  listening on \(dataPlane.tls == nil ? "http" : "https")://\(host):\(server.port); metrics on http://\(host):\(server.metricsPort ?? 0)/metrics")
        let extProcServer = try await extProc.start(picker: picker, host: host, maxBodyBytes: maxBodyBytes, logger: Logger(label: "epp"))
        fflush(nil)  // print is buffered when stdout is not a terminal
        let lifecycle = Logger(label: "gateway")
        try await Draining.run(logger: lifecycle, untilClosed: { try await server.waitUntilClosed() }, drain: {
            lifecycle.info("draining: new connections are refused; waiting for \(picker.metrics.requestsInFlight) request(s) in flight")
            do {
                try await server.beginDraining()
                while picker.metrics.requestsInFlight > 0 { try await Task.sleep(for: .milliseconds(20)) }
                await extProcServer?.stop()
                try await server.stop()
            } catch {
                lifecycle.error("draining failed: \(error)")
            }
            lifecycle.info("stopped")
        })
    }
}
