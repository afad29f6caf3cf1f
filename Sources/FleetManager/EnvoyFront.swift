import Foundation
import Gateway
import GatewayExtProc
import Logging

/// Envoy in front of a fleet, as a cluster's gateway: it asks an endpoint picker over ext_proc
/// (Understudy's, or an external one such as llm-d-router) and is kept current with the fleet's
/// Ready endpoints (its fallback for requests the picker did not route; and, for an external
/// picker, the file its file-discovery reads).
public struct EnvoyFront: Sendable {
    public enum Picker: Sendable {
        /// Understudy's picker, served over ext_proc on `port` (0: a free one), health on
        /// `healthPort`.
        case understudy(port: Int, healthPort: Int, security: ExtProcServer.Security)
        /// A picker already running at `address` (`ip:port`); the fleet's endpoints are kept in
        /// `endpointsFile` in llm-d-router's file-discovery format.
        case external(address: String, tls: Bool, endpointsFile: String)
    }

    public let envoy: EnvoyProcess
    public let extProcServer: ExtProcServer?
    public let endpointsFile: String?
    private let follow: Task<Void, any Error>

    /// Starts the picker's front end (for `.understudy`) and Envoy on `host:port`.
    public static func start(fleet: Fleet, host: String, port: Int, picker: Picker, maxBodyBytes: Int, logger: Logger) async throws -> EnvoyFront {
        let pool = fleet.gateway.picker.pool
        var extProcServer: ExtProcServer?
        var configuration: EnvoyConfiguration
        var endpointsFile: String?
        switch picker {
        case .understudy(let extProcPort, let healthPort, let security):
            let server = try await ExtProcServer.start(
                picker: fleet.gateway.picker, host: "127.0.0.1", port: extProcPort, healthPort: healthPort, security: security,
                maxBodyBytes: maxBodyBytes, logger: logger)
            extProcServer = server
            configuration = EnvoyConfiguration(listenerPort: port, adminPort: 0, pickerEndpoints: ["127.0.0.1:\(server.port)"])
            if case .plaintext = security { configuration.extProcTLS = false }
        case .external(let address, let tls, let file):
            configuration = EnvoyConfiguration(listenerPort: port, adminPort: 0, pickerEndpoints: [address])
            configuration.extProcTLS = tls
            endpointsFile = file
        }
        configuration.listenerHost = host
        configuration.failureModeAllow = pool.failureMode == .failOpen
        let envoy: EnvoyProcess
        do {
            envoy = try await EnvoyProcess.launch(configuration)
        } catch {
            await extProcServer?.stop()
            throw error
        }
        let follow = Task { [endpointsFile] in
            try await fleet.registry.watch { pods in
                let endpoints = pool.endpoints(from: pods)
                do {
                    try envoy.setPoolEndpoints(endpoints.filter(\.ready).map(\.endpoint.address))
                    if let endpointsFile { try FileDiscovery.write(endpoints, namespace: pool.namespace, to: endpointsFile) }
                } catch {
                    logger.error("could not update the endpoint files: \(error)")
                }
            }
        }
        return EnvoyFront(envoy: envoy, extProcServer: extProcServer, endpointsFile: endpointsFile, follow: follow)
    }

    public func stop() async {
        follow.cancel()
        await envoy.stop()
        await extProcServer?.stop()
    }
}
