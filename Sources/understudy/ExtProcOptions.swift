import ArgumentParser
import Gateway
import GatewayExtProc
import Logging

/// The endpoint picker's ext_proc front end for Envoy, with GIE's EPP flag names.
struct ExtProcOptions: ParsableArguments {
    @Option(help: "Serve Envoy's ext_proc (envoy.service.ext_proc.v3.ExternalProcessor) on this port, as GIE's EPP --grpc-port (9002); 0 picks a free one.")
    var extProcPort: Int?
    @Option(help: "With --ext-proc-port: gRPC health (liveness, readiness, the ext_proc service) on this port, plaintext, as GIE's --grpc-health-port.")
    var grpcHealthPort = 9003
    @Option(help: "With --ext-proc-port: TLS on ext_proc (a self-signed certificate unless --cert-path), as GIE's --secure-serving; false for plaintext.")
    var secureServing = true
    @Option(help: "With --ext-proc-port: a directory holding tls.crt and tls.key to serve ext_proc with, as GIE's --cert-path.")
    var certPath: String?

    func validate() throws {
        for (port, flag) in [(extProcPort, "--ext-proc-port"), (grpcHealthPort, "--grpc-health-port")] {
            if let port, !(0...65_535).contains(port) { throw ValidationError("\(flag) must be a port (0-65535)") }
        }
        if certPath != nil, !secureServing { throw ValidationError("--cert-path needs --secure-serving=true") }
    }

    var security: ExtProcServer.Security {
        guard secureServing else { return .plaintext }
        guard let certPath else { return .selfSigned }
        return .certificate(chain: certPath + "/tls.crt", privateKey: certPath + "/tls.key")
    }

    /// Starts the ext_proc and health servers when asked for, and says where they listen.
    func start(picker: EndpointPicker, host: String, maxBodyBytes: Int, logger: Logger) async throws -> ExtProcServer? {
        guard let extProcPort else { return nil }
        let server: ExtProcServer
        do {
            server = try await ExtProcServer.start(
                picker: picker, host: host, port: extProcPort, healthPort: grpcHealthPort, security: security, maxBodyBytes: maxBodyBytes,
                logger: logger)
        } catch {
            throw ValidationError("cannot serve ext_proc on \(host):\(extProcPort) (health \(grpcHealthPort)): \(error)")
        }
        let scheme = switch security {
        case .plaintext: "plaintext"
        case .selfSigned: "TLS, self-signed"
        case .certificate: "TLS, \(certPath ?? "")"
        }
        print("  ext_proc on \(host):\(server.port) (\(scheme)); gRPC health on \(host):\(server.healthPort)")
        return server
    }
}
