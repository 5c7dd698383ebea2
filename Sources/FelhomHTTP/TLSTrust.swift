import Crypto
import Foundation
import NIOCore
import NIOSSL

/// How the client decides to trust the server's certificate.
///
/// Proxmox VE ships a self-signed certificate per node, so the useful modes are pinning the leaf
/// certificate's SHA-256 fingerprint (what `GET /nodes` reports as `ssl_fingerprint`) or trusting a
/// CA file. Turning verification off must be asked for by name.
public enum TLSTrust: Sendable, Equatable {
    /// Accept exactly the leaf certificate whose DER SHA-256 is this fingerprint; no CA or hostname
    /// check (works for self-signed and CA-signed leaves alike).
    case pinnedLeafSHA256(CertificateFingerprint)
    /// Verify the chain against the CA certificates in this PEM file, and the hostname.
    case caFile(String)
    /// Verify against the system trust store and the hostname.
    case systemDefault
    /// Accept any certificate. Only for debugging; never the default.
    case insecureSkipVerification
}

/// A SHA-256 certificate fingerprint, 32 bytes.
public struct CertificateFingerprint: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Parses `AA:BB:…` (32 colon-separated pairs) or 64 bare hex digits, any case.
    public init(parsing text: String) throws {
        let hex = text.replacingOccurrences(of: ":", with: "").trimmingCharacters(in: .whitespaces)
        // ASCII hex only: `isHexDigit` also accepts full-width digits, which no radix-16 parse reads.
        guard hex.count == 64, hex.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) || ("A"..."F").contains($0) })
        else {
            throw HTTPClientError(
                code: .invalidArgument,
                message: "a SHA-256 fingerprint is 32 hex byte pairs like 'AB:CD:…' (got \(text.count) characters)")
        }
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            guard let byte = UInt8(hex[i..<j], radix: 16) else {
                throw HTTPClientError(code: .invalidArgument, message: "a SHA-256 fingerprint is 32 hex byte pairs like 'AB:CD:…'")
            }
            out.append(byte)
            i = j
        }
        bytes = out
    }

    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The fingerprint of a DER-encoded certificate.
    public static func of(der: [UInt8]) -> CertificateFingerprint {
        CertificateFingerprint(bytes: Array(SHA256.hash(data: der)))
    }

    /// Colon-separated upper-case hex, the form Proxmox and OpenSSL print.
    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16, uppercase: true)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }
}

extension TLSTrust {
    /// A client TLS context (TLS 1.2 or later) for this trust mode.
    public func makeSSLContext() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        switch self {
        case .pinnedLeafSHA256:
            // The custom callback replaces chain and hostname checks with the pin comparison, so
            // no trust store is loaded (an empty set of roots, not the system bundle).
            config.certificateVerification = .noHostnameVerification
            config.trustRoots = .certificates([])
        case .caFile(let path):
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw HTTPClientError(code: .invalidArgument, message: "CA file '\(path)' is not readable")
            }
            config.trustRoots = .file(path)
            config.certificateVerification = .fullVerification
        case .systemDefault:
            config.certificateVerification = .fullVerification
        case .insecureSkipVerification:
            config.certificateVerification = .none
        }
        return try NIOSSLContext(configuration: config)
    }

    /// The TLS handler for one connection to `host`: pin comparison for `.pinnedLeafSHA256`
    /// (reporting the fingerprint seen), chain and hostname checks otherwise (no SNI for IP addresses).
    public func makeClientHandler(
        context: NIOSSLContext, host: String,
        onPeerFingerprint: @escaping @Sendable (CertificateFingerprint) -> Void = { _ in }
    ) throws -> NIOSSLClientHandler {
        let isIP = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        switch self {
        case .pinnedLeafSHA256(let pin):
            return try NIOSSLClientHandler(
                context: context, serverHostname: isIP ? nil : host,
                customVerificationCallback: { certs, promise in
                    guard let leaf = certs.first, let der = try? leaf.toDERBytes() else {
                        promise.succeed(.failed)
                        return
                    }
                    let got = CertificateFingerprint.of(der: der)
                    onPeerFingerprint(got)
                    promise.succeed(got == pin ? .certificateVerified : .failed)
                })
        default:
            return try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : host)
        }
    }
}
