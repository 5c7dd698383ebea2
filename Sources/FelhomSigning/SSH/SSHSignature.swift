import Crypto
import Foundation

/// An OpenSSH SSHSIG signature (`ssh-keygen -Y sign` format, PROTOCOL.sshsig).
///
/// Parsing follows OpenSSH 9.2: the armor must start with the header line (LF), base64 may be
/// wrapped at any width, anything after the footer is ignored; the blob must have no trailing
/// bytes; version must be 1 or lower. Serializing is byte-identical to `ssh-keygen` (70 columns).
public struct SSHSignature: Sendable, Equatable {
    public static let header = "-----BEGIN SSH SIGNATURE-----"
    public static let footer = "-----END SSH SIGNATURE-----"

    /// Message digest algorithm named in the signature.
    public enum HashAlgorithm: String, Sendable, CaseIterable {
        case sha256, sha512

        func digest(_ message: [UInt8]) -> [UInt8] {
            switch self {
            case .sha256: return Array(SHA256.hash(data: message))
            case .sha512: return Array(SHA512.hash(data: message))
            }
        }
    }

    public var version: UInt32
    public var publicKey: SSHPublicKey
    public var namespace: String
    public var reserved: [UInt8]
    public var hashAlgorithm: HashAlgorithm
    /// The inner signature (`string type`, `string sig`, and for security keys flags and counter).
    public var signatureBlob: [UInt8]

    public init(publicKey: SSHPublicKey, namespace: String, hashAlgorithm: HashAlgorithm, signatureBlob: [UInt8]) {
        self.version = 1
        self.publicKey = publicKey
        self.namespace = namespace
        self.reserved = []
        self.hashAlgorithm = hashAlgorithm
        self.signatureBlob = signatureBlob
    }

    /// Parses an armored signature.
    public init(armored text: String) throws(SignatureError) {
        let bytes = Array(text.utf8)
        let head = Array((Self.header + "\n").utf8)
        guard bytes.count >= head.count, Array(bytes[0..<head.count]) == head else {
            throw SignatureError(.malformed, "signature does not start with '\(Self.header)'")
        }
        let rest = String(decoding: bytes[head.count...], as: UTF8.self)
        guard let end = rest.range(of: "\n" + Self.footer) ?? (rest.hasPrefix(Self.footer) ? rest.range(of: Self.footer) : nil) else {
            throw SignatureError(.malformed, "signature has no '\(Self.footer)' line")
        }
        let b64 = rest[..<end.lowerBound].filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: String(b64)) else {
            throw SignatureError(.malformed, "signature body is not valid base64")
        }
        try self.init(blob: Array(data))
    }

    /// Parses the decoded blob.
    public init(blob: [UInt8]) throws(SignatureError) {
        var r = SSHWireReader(blob)
        guard try r.readBytes(6) == Array("SSHSIG".utf8) else { throw SignatureError(.malformed, "missing SSHSIG magic") }
        version = try r.readUInt32()
        guard version <= 1 else { throw SignatureError(.malformed, "signature version \(version) is newer than supported (1)") }
        publicKey = try SSHPublicKey(wireBytes: try r.readString())
        namespace = try r.readText()
        guard !namespace.isEmpty else { throw SignatureError(.malformed, "empty signature namespace") }
        reserved = try r.readString()
        let h = try r.readText()
        guard let alg = HashAlgorithm(rawValue: h) else { throw SignatureError(.malformed, "unsupported hash algorithm '\(h)'") }
        hashAlgorithm = alg
        signatureBlob = try r.readString()
        guard r.isAtEnd else { throw SignatureError(.malformed, "signature contains trailing data") }
    }

    /// The binary blob.
    public var blob: [UInt8] {
        var w = SSHWireWriter()
        w.bytes += Array("SSHSIG".utf8)
        w.writeUInt32(version)
        w.writeString(publicKey.wireBytes)
        w.writeString(namespace)
        w.writeString(reserved)
        w.writeString(hashAlgorithm.rawValue)
        w.writeString(signatureBlob)
        return w.bytes
    }

    /// The armored form, byte-identical to `ssh-keygen -Y sign`.
    public var armored: String {
        Self.header + "\n" + Self.wrappedBase64(blob) + "\n" + Self.footer + "\n"
    }

    /// Base64 with a line break after every 70 characters and none at the end (OpenSSH's `sshbuf_dtob64`).
    static func wrappedBase64(_ bytes: [UInt8]) -> String {
        let b64 = Data(bytes).base64EncodedString()
        var lines: [Substring] = []
        var i = b64.startIndex
        while i < b64.endIndex {
            let j = b64.index(i, offsetBy: 70, limitedBy: b64.endIndex) ?? b64.endIndex
            lines.append(b64[i..<j])
            i = j
        }
        return lines.joined(separator: "\n")
    }

    /// What the key signs: `"SSHSIG" ‖ string namespace ‖ string "" ‖ string hashalg ‖ string H(message)`.
    /// The reserved field is always empty here, whatever the blob carries (as in OpenSSH).
    public static func signedData(namespace: String, hashAlgorithm: HashAlgorithm, message: [UInt8]) -> [UInt8] {
        var w = SSHWireWriter()
        w.bytes += Array("SSHSIG".utf8)
        w.writeString(namespace)
        w.writeString([])
        w.writeString(hashAlgorithm.rawValue)
        w.writeString(hashAlgorithm.digest(message))
        return w.bytes
    }

    /// Verifies the signature over `message` (the raw received bytes) for the signature's own
    /// namespace. Security-key signatures need the user-presence flag unless told otherwise.
    public func verify(message: [UInt8], requireUserPresence: Bool = true) throws(SignatureError) {
        let data = Self.signedData(namespace: namespace, hashAlgorithm: hashAlgorithm, message: message)
        try publicKey.verify(signatureBlob: signatureBlob, signedData: data, requireUserPresence: requireUserPresence)
    }
}
