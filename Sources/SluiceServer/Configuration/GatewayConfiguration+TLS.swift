import HummingbirdTLS

extension GatewayConfiguration {
    /// The server TLS settings when `tls-cert` and `tls-key` are set, read from their PEM files.
    ///
    /// Errors name the file but never print key material.
    public func tlsConfiguration() throws -> TLSConfiguration? {
        guard let tlsCert, let tlsKey else { return nil }
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tlsCert)
        } catch {
            throw ConfigurationError("cannot load TLS certificate chain from \(tlsCert): not a PEM certificate")
        }
        do {
            key = try NIOSSLPrivateKey(file: tlsKey, format: .pem)
        } catch {
            throw ConfigurationError("cannot load TLS private key from \(tlsKey): not a PEM private key")
        }
        guard !chain.isEmpty else { throw ConfigurationError("no certificate in \(tlsCert)") }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }
}
