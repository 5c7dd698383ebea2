import Crypto
import Foundation

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
        guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit }) else {
            throw PVEError(
                code: .invalidArgument,
                message: "a SHA-256 fingerprint is 32 hex byte pairs like 'AB:CD:…' (got \(text.count) characters)")
        }
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
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
