import NIOSSL

/// TLS for a listener, from PEM files, as `vllm serve` takes it (`--ssl-certfile`,
/// `--ssl-keyfile`, `--ssl-ca-certs`, `--ssl-cert-reqs`, which uvicorn hands to Python's ssl).
public struct ServerTLS: Sendable, Equatable {
    /// Python's `ssl.CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED`: whether clients must present
    /// a certificate signed by `caCertificatesFile`.
    public enum ClientCertificates: Int, Sendable, Equatable {
        case none = 0, optional = 1, required = 2
    }

    /// The server's certificate, then its chain, in PEM.
    public var certificateFile: String
    /// The certificate's private key, in PEM.
    public var privateKeyFile: String
    /// CA certificates (PEM) that clients' certificates are checked against.
    public var caCertificatesFile: String?
    public var clientCertificates: ClientCertificates

    public init(certificateFile: String, privateKeyFile: String, caCertificatesFile: String? = nil, clientCertificates: ClientCertificates = .none) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.caCertificatesFile = caCertificatesFile
        self.clientCertificates = clientCertificates
    }

    /// The TLS a command line asks for: none without a certificate; client certificates need
    /// CA certificates to check them against.
    public static func fromFlags(certificate: String?, key: String?, caCertificates: String?, clientCertificates: Int) throws(ServerTLSError) -> ServerTLS? {
        guard let mode = ClientCertificates(rawValue: clientCertificates) else {
            throw ServerTLSError("--ssl-cert-reqs must be 0, 1 or 2, got \(clientCertificates)")
        }
        guard let certificate else {
            guard key == nil, caCertificates == nil, mode == .none else { throw ServerTLSError("TLS options need --ssl-certfile") }
            return nil
        }
        if mode != .none, caCertificates == nil { throw ServerTLSError("--ssl-cert-reqs \(clientCertificates) needs --ssl-ca-certs") }
        // As Python's load_cert_chain: without a key file, the key is in the certificate file.
        return ServerTLS(certificateFile: certificate, privateKeyFile: key ?? certificate, caCertificatesFile: caCertificates, clientCertificates: mode)
    }

    /// Reads the files; a missing or unreadable file is an error naming it.
    public func makeContext() throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw ServerTLSError("cannot read the certificate \(certificateFile): \(error)")
        }
        guard !chain.isEmpty else { throw ServerTLSError("no certificate in \(certificateFile)") }
        do {
            key = try NIOSSLPrivateKey(file: privateKeyFile, format: .pem)
        } catch {
            throw ServerTLSError("cannot read the private key \(privateKeyFile): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        if let caCertificatesFile { configuration.trustRoots = .file(caCertificatesFile) }
        switch clientCertificates {
        case .none: configuration.certificateVerification = .none
        case .optional: configuration.certificateVerification = .optionalVerification
        case .required: configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ServerTLSError("cannot use \(certificateFile) with \(privateKeyFile): \(error)")
        }
    }
}

/// TLS files that cannot be used.
public struct ServerTLSError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
