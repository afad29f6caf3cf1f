import ArgumentParser
import InferenceAPI

/// vLLM's TLS flags, shared by `understudy serve` and `understudy gateway`.
struct TLSOptions: ParsableArguments {
    @Option(help: "Serve HTTPS with this certificate (PEM), as vLLM's --ssl-certfile.") var sslCertfile: String?
    @Option(help: "The certificate's private key (PEM; default: in the certificate file).") var sslKeyfile: String?
    @Option(help: "CA certificates (PEM) that client certificates are checked against.") var sslCaCerts: String?
    @Option(help: "Client certificates: 0 not asked for, 1 checked when given, 2 required (Python's ssl.CERT_*).") var sslCertReqs = 0

    func validate() throws { _ = try serverTLS() }

    /// The listener's TLS, or nil without a certificate.
    func serverTLS() throws -> ServerTLS? {
        try ServerTLS.fromFlags(certificate: sslCertfile, key: sslKeyfile, caCertificates: sslCaCerts, clientCertificates: sslCertReqs)
    }
}
