import Crypto
import Foundation
import Gateway
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import SwiftASN1
import X509

/// The endpoint picker as Envoy reaches it, as GIE's EPP runs: ext_proc on one port (TLS by
/// default, with gRPC health for Envoy's cluster health check), gRPC health on another
/// (plaintext, for Kubernetes' probes).
public final class ExtProcServer: Sendable {
    /// How the ext_proc port is secured.
    public enum Security: Sendable {
        /// A certificate made at start, as GIE's picker without `--cert-path`: Envoy connects
        /// with TLS and does not validate it.
        case selfSigned
        /// PEM files.
        case certificate(chain: String, privateKey: String)
        /// GIE's `--secure-serving=false`.
        case plaintext
    }

    public let port: Int
    public let healthPort: Int
    public let health: PickerHealth
    private let servers: [GRPCServer<HTTP2ServerTransport.Posix>]
    private let tasks: [Task<Void, any Error>]

    private init(port: Int, healthPort: Int, health: PickerHealth, servers: [GRPCServer<HTTP2ServerTransport.Posix>], tasks: [Task<Void, any Error>]) {
        self.port = port
        self.healthPort = healthPort
        self.health = health
        self.servers = servers
        self.tasks = tasks
    }

    /// Binds ext_proc on `port` and health on `healthPort` (0 picks a free one), serving
    /// `picker`. Health answers SERVING at once: the picker has its pool when it is made.
    public static func start(
        picker: EndpointPicker, host: String, port: Int, healthPort: Int, security: Security, maxBodyBytes: Int, logger: Logger
    ) async throws -> ExtProcServer {
        var config = HTTP2ServerTransport.Posix.Config.defaults
        // Envoy sends bodies in pieces of its buffer's size (1 MiB by default); this only stops
        // a runaway peer. Replies are cut to 62,000 bytes.
        config.rpc.maxRequestPayloadSize = 16 * 1024 * 1024
        // Envoy carries every request's stream on one connection, each open as long as its
        // request: HTTP/2's usual 100 would refuse the 101st request in flight (Envoy answers it
        // 500). Go's gRPC server, GIE's, sets no limit; Envoy's circuit breakers bound them.
        config.http2.maxConcurrentStreams = Int(Int32.max)
        // Health on the ext_proc port too: Envoy's cluster health check asks it there.
        let health = PickerHealth()
        let extProc = GRPCServer(
            transport: .http2NIOPosix(address: .ipv4(host: host, port: port), transportSecurity: try security.transport(), config: config),
            services: [ExternalProcessor(picker: picker, maxBodyBytes: maxBodyBytes), health])
        let healthServer = GRPCServer(
            transport: .http2NIOPosix(address: .ipv4(host: host, port: healthPort), transportSecurity: .plaintext), services: [health])
        let servers = [extProc, healthServer]
        let tasks = servers.map { server in
            Task {
                do {
                    try await server.serve()
                } catch {
                    logger.error("ext_proc server stopped: \(error)")
                    throw error
                }
            }
        }
        do {
            let extProcPort = try await extProc.listeningAddress?.ipv4?.port ?? port
            let boundHealthPort = try await healthServer.listeningAddress?.ipv4?.port ?? healthPort
            health.markReady()
            return ExtProcServer(port: extProcPort, healthPort: boundHealthPort, health: health, servers: servers, tasks: tasks)
        } catch {
            servers.forEach { $0.beginGracefulShutdown() }
            throw error
        }
    }

    /// Stops accepting streams; those open finish.
    public func stop() async {
        servers.forEach { $0.beginGracefulShutdown() }
        for task in tasks { _ = try? await task.value }
    }
}

extension ExtProcServer.Security {
    func transport() throws -> HTTP2ServerTransport.Posix.TransportSecurity {
        switch self {
        case .plaintext:
            return .plaintext
        case .certificate(let chain, let privateKey):
            return .tls(certificateChain: [.file(path: chain, format: .pem)], privateKey: .file(path: privateKey, format: .pem))
        case .selfSigned:
            let (certificate, key) = try Self.makeSelfSigned()
            return .tls(certificateChain: [.bytes(Array(certificate.utf8), format: .pem)], privateKey: .bytes(Array(key.utf8), format: .pem))
        }
    }

    /// A P-256 certificate for `localhost` and 127.0.0.1, valid for a year, in PEM.
    static func makeSelfSigned() throws -> (certificate: String, privateKey: String) {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Understudy")
            CommonName("understudy endpoint picker")
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(365 * 86_400), issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames([.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
            },
            issuerPrivateKey: .init(key))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }
}
