import Crypto
import Foundation
import _CryptoExtras

/// An SSH public key of a type Felhom accepts for operator signatures.
///
/// Keys are compared by their exact wire bytes (`wireBytes`), never by comment or key id.
public struct SSHPublicKey: Sendable, Hashable, CustomStringConvertible {
    /// The key algorithm.
    public enum Algorithm: String, Sendable, CaseIterable {
        case ed25519 = "ssh-ed25519"
        case ecdsaP256 = "ecdsa-sha2-nistp256"
        case rsa = "ssh-rsa"
        case skEd25519 = "sk-ssh-ed25519@openssh.com"
        case skEcdsaP256 = "sk-ecdsa-sha2-nistp256@openssh.com"

        /// FIDO/U2F security-key types.
        public var isSecurityKey: Bool { self == .skEd25519 || self == .skEcdsaP256 }
    }

    public let algorithm: Algorithm
    /// The SSH wire encoding of the key (what `authorized_keys` base64-encodes).
    public let wireBytes: [UInt8]
    /// Ed25519: 32 bytes; ECDSA: the 65-byte uncompressed point.
    let point: [UInt8]
    /// RSA only.
    let rsaE: [UInt8]
    let rsaN: [UInt8]
    /// Security keys: the FIDO application (normally `ssh:`).
    public let application: String?

    /// Smallest RSA modulus accepted.
    public static let minimumRSABits = 2048

    /// Parses the SSH wire encoding.
    public init(wireBytes: [UInt8]) throws(SignatureError) {
        var r = SSHWireReader(wireBytes)
        let typeName = try r.readText()
        guard let alg = Algorithm(rawValue: typeName) else {
            throw SignatureError(.malformed, "unsupported key type '\(typeName)'")
        }
        var point: [UInt8] = []
        var e: [UInt8] = []
        var n: [UInt8] = []
        var app: String?
        switch alg {
        case .ed25519, .skEd25519:
            point = try r.readString()
            guard point.count == 32 else { throw SignatureError(.malformed, "Ed25519 key must be 32 bytes") }
        case .ecdsaP256, .skEcdsaP256:
            let curve = try r.readText()
            guard curve == "nistp256" else { throw SignatureError(.malformed, "ECDSA curve '\(curve)' does not match the key type") }
            point = try r.readString()
            guard point.count == 65, point[0] == 4, (try? P256.Signing.PublicKey(x963Representation: point)) != nil else {
                throw SignatureError(.malformed, "invalid P-256 public point")
            }
        case .rsa:
            e = try r.readPositiveMPInt()
            n = try r.readPositiveMPInt()
            let bits = n.isEmpty ? 0 : n.count * 8 - n[0].leadingZeroBitCount
            guard bits >= Self.minimumRSABits else {
                throw SignatureError(.malformed, "RSA key has \(bits) bits; at least \(Self.minimumRSABits) are required")
            }
        }
        if alg.isSecurityKey { app = try r.readText() }
        guard r.isAtEnd else { throw SignatureError(.malformed, "trailing data after the public key") }
        self.algorithm = alg
        self.wireBytes = wireBytes
        self.point = point
        self.rsaE = e
        self.rsaN = n
        self.application = app
    }

    /// An Ed25519 key from its 32 raw bytes (built, not parsed: nothing can fail).
    init(ed25519 raw: [UInt8]) {
        var writer = SSHWireWriter()
        writer.writeString("ssh-ed25519")
        writer.writeString(raw)
        self.algorithm = .ed25519
        self.wireBytes = writer.bytes
        self.point = raw
        self.rsaE = []
        self.rsaN = []
        self.application = nil
    }

    /// Parses an OpenSSH public key line: `TYPE BASE64 [comment]`.
    public init(openSSHLine line: String) throws(SignatureError) {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
        guard fields.count >= 2 else { throw SignatureError(.malformed, "expected 'TYPE BASE64 [comment]'") }
        guard let data = Data(base64Encoded: String(fields[1])) else {
            throw SignatureError(.malformed, "key is not valid base64")
        }
        try self.init(wireBytes: Array(data))
        guard algorithm.rawValue == fields[0] else {
            throw SignatureError(.malformed, "key type '\(fields[0])' does not match the encoded key (\(algorithm.rawValue))")
        }
    }

    /// `TYPE BASE64` (no comment).
    public var openSSHLine: String { "\(algorithm.rawValue) \(Data(wireBytes).base64EncodedString())" }

    /// `SHA256:…` as `ssh-keygen -l` prints it.
    public var fingerprint: String {
        let b64 = Data(SHA256.hash(data: wireBytes)).base64EncodedString()
        return "SHA256:" + b64.replacingOccurrences(of: "=", with: "")
    }

    public var description: String { "\(algorithm.rawValue) \(fingerprint)" }

    public static func == (a: SSHPublicKey, b: SSHPublicKey) -> Bool { a.wireBytes == b.wireBytes }
    public func hash(into h: inout Hasher) { h.combine(wireBytes) }

    /// Checks a signature blob (the SSHSIG `signature` field) over `signedData`.
    /// `requireUserPresence` applies to security keys: the authenticator's UP flag must be set.
    func verify(signatureBlob: [UInt8], signedData: [UInt8], requireUserPresence: Bool) throws(SignatureError) {
        var r = SSHWireReader(signatureBlob)
        let sigType = try r.readText()
        let raw = try r.readString()
        switch algorithm {
        case .ed25519:
            guard sigType == algorithm.rawValue else { throw wrongType(sigType) }
            try expectEnd(r)
            try checkEd25519(raw, over: signedData)
        case .ecdsaP256:
            guard sigType == algorithm.rawValue else { throw wrongType(sigType) }
            try expectEnd(r)
            try checkECDSA(raw, over: signedData)
        case .rsa:
            let digestIs512: Bool
            switch sigType {
            case "rsa-sha2-512": digestIs512 = true
            case "rsa-sha2-256": digestIs512 = false
            default: throw SignatureError(.badSignature, "RSA signature type '\(sigType)' is not allowed (only rsa-sha2-256/512)")
            }
            try expectEnd(r)
            try checkRSA(raw, over: signedData, sha512: digestIs512)
        case .skEd25519, .skEcdsaP256:
            guard sigType == algorithm.rawValue else { throw wrongType(sigType) }
            let flags = try r.readByte()
            let counter = try r.readUInt32()
            try expectEnd(r)
            if requireUserPresence && flags & 0x01 == 0 {
                throw SignatureError(.badSignature, "security key signature lacks the user-presence flag")
            }
            // The authenticator signs SHA256(application) ‖ flags ‖ counter ‖ SHA256(data).
            var inner = Array(SHA256.hash(data: Array((application ?? "").utf8)))
            inner.append(flags)
            inner += [UInt8(counter >> 24), UInt8(counter >> 16 & 0xFF), UInt8(counter >> 8 & 0xFF), UInt8(counter & 0xFF)]
            inner += Array(SHA256.hash(data: signedData))
            if algorithm == .skEd25519 { try checkEd25519(raw, over: inner) } else { try checkECDSA(raw, over: inner) }
        }
    }

    private func wrongType(_ t: String) -> SignatureError {
        SignatureError(.badSignature, "signature type '\(t)' does not match the key type \(algorithm.rawValue)")
    }

    private func expectEnd(_ r: SSHWireReader) throws(SignatureError) {
        guard r.isAtEnd else { throw SignatureError(.malformed, "trailing data in the signature") }
    }

    private func checkEd25519(_ sig: [UInt8], over data: [UInt8]) throws(SignatureError) {
        guard sig.count == 64, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: point),
            key.isValidSignature(sig, for: data)
        else { throw SignatureError(.badSignature, "Ed25519 signature does not verify") }
    }

    private func checkECDSA(_ sig: [UInt8], over data: [UInt8]) throws(SignatureError) {
        var r = SSHWireReader(sig)
        let rr = try r.readPositiveMPInt(maxBytes: 33)
        let ss = try r.readPositiveMPInt(maxBytes: 33)
        guard r.isAtEnd, rr.count <= 32, ss.count <= 32 else { throw SignatureError(.malformed, "malformed ECDSA signature") }
        let raw = [UInt8](repeating: 0, count: 32 - rr.count) + rr + [UInt8](repeating: 0, count: 32 - ss.count) + ss
        guard let key = try? P256.Signing.PublicKey(x963Representation: point),
            let s = try? P256.Signing.ECDSASignature(rawRepresentation: raw), key.isValidSignature(s, for: data)
        else { throw SignatureError(.badSignature, "ECDSA signature does not verify") }
    }

    private func checkRSA(_ sig: [UInt8], over data: [UInt8], sha512: Bool) throws(SignatureError) {
        guard sig.count <= rsaN.count else { throw SignatureError(.badSignature, "RSA signature longer than the modulus") }
        // BoringSSL wants exactly the modulus length; OpenSSH left-pads short signatures.
        let padded = [UInt8](repeating: 0, count: rsaN.count - sig.count) + sig
        guard let key = try? _RSA.Signing.PublicKey(n: rsaN, e: rsaE) else {
            throw SignatureError(.malformed, "RSA key rejected by the crypto library")
        }
        let s = _RSA.Signing.RSASignature(rawRepresentation: padded)
        // The Digest overloads pick the hash from the digest type; the DataProtocol ones would hash with SHA-256.
        let ok =
            sha512
            ? key.isValidSignature(s, for: SHA512.hash(data: data), padding: .insecurePKCS1v1_5)
            : key.isValidSignature(s, for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5)
        guard ok else { throw SignatureError(.badSignature, "RSA signature does not verify") }
    }
}
