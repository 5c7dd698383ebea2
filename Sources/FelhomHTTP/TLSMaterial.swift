import Crypto
import Foundation
import SwiftASN1
import X509

/// A certificate and its private key in PEM, plus the certificate's SHA-256 fingerprint.
public struct TLSMaterial: Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String
    /// SHA-256 of the certificate's DER, `AA:BB:…` (what Proxmox reports as `ssl_fingerprint`).
    public var fingerprint: String

    public init(certificatePEM: String, privateKeyPEM: String) throws {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        let cert = try Certificate(pemEncoded: certificatePEM)
        var ser = DER.Serializer()
        try ser.serialize(cert)
        fingerprint = Self.fingerprint(der: ser.serializedBytes)
    }

    static func fingerprint(der: [UInt8]) -> String {
        SHA256.hash(data: der).map { String(format: "%02X", $0) }.joined(separator: ":")
    }

    /// A self-signed P-256 certificate valid for `localhost`, 127.0.0.1, ::1 and `names`, like the one
    /// `pveproxy` generates for a fresh node.
    public static func selfSigned(commonName: String, names: [String] = [], validDays: Int = 3650, organization: String = "Felhom")
        throws -> TLSMaterial
    {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName(organization)
            CommonName(commonName)
        }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(Double(validDays) * 86_400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(sanEntries(["localhost", commonName] + names))
            },
            issuerPrivateKey: .init(key))
        return try TLSMaterial(certificatePEM: cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    /// A certificate authority (for tests of CA-file trust).
    public static func certificateAuthority(commonName: String) throws -> (material: TLSMaterial, key: P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(commonName) }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(86_400 * 365),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
        return (try TLSMaterial(certificatePEM: cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation), key)
    }

    /// A server certificate signed by a CA from ``certificateAuthority(commonName:)``.
    public static func leaf(commonName: String, names: [String] = [], issuer ca: (material: TLSMaterial, key: P256.Signing.PrivateKey))
        throws -> TLSMaterial
    {
        let key = P256.Signing.PrivateKey()
        let caCert = try Certificate(pemEncoded: ca.material.certificatePEM)
        let subject = try DistinguishedName { CommonName(commonName) }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(86_400 * 30),
            issuer: caCert.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(sanEntries(["localhost", commonName] + names))
            },
            issuerPrivateKey: .init(ca.key))
        return try TLSMaterial(certificatePEM: cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    static func sanEntries(_ names: [String]) -> [GeneralName] {
        var out: [GeneralName] = [
            .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
            .ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
        ]
        for n in Set(names) { out.append(.dnsName(n)) }
        return out
    }
}
