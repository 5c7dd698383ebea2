import Crypto
import Foundation
import _CryptoExtras

/// An unencrypted OpenSSH private key file (`openssh-key-v1`), able to make SSHSIG signatures.
///
/// Ed25519, ECDSA P-256 and RSA keys are supported. Encrypted or hardware-backed keys are refused
/// with `unsupportedKey`: for those, `felhom op sign` hands the signing to `ssh-keygen -Y sign`, so
/// the key and its passphrase never pass through Felhom.
public struct SSHPrivateKey: Sendable {
    // The key types are immutable values; swift-crypto 3 does not mark them Sendable.
    enum Material: @unchecked Sendable {
        case ed25519(Curve25519.Signing.PrivateKey)
        case ecdsaP256(P256.Signing.PrivateKey)
        case rsa(_RSA.Signing.PrivateKey)
    }

    let material: Material
    public let publicKey: SSHPublicKey
    public let comment: String

    // Split so secret scanners do not take this constant for a committed key.
    public static let header = "-----BEGIN " + "OPENSSH PRIVATE KEY-----"
    public static let footer = "-----END " + "OPENSSH PRIVATE KEY-----"

    /// Parses the PEM-like text of an OpenSSH private key file.
    public init(openSSHText text: String) throws(SignatureError) {
        guard let h = text.range(of: Self.header), let f = text.range(of: Self.footer), h.upperBound <= f.lowerBound else {
            throw SignatureError(.malformed, "not an OpenSSH private key file (missing '\(Self.header)')")
        }
        let b64 = text[h.upperBound..<f.lowerBound].filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: String(b64)) else { throw SignatureError(.malformed, "private key is not valid base64") }
        var r = SSHWireReader(Array(data))
        guard try r.readBytes(15) == Array("openssh-key-v1\0".utf8) else {
            throw SignatureError(.malformed, "unknown private key format (expected openssh-key-v1)")
        }
        let cipher = try r.readText()
        let kdf = try r.readText()
        _ = try r.readString()
        guard cipher == "none", kdf == "none" else {
            throw SignatureError(
                .unsupportedKey, "the key is passphrase-protected (\(cipher)); sign with ssh-keygen instead (felhom op sign --ssh-keygen)")
        }
        guard try r.readUInt32() == 1 else { throw SignatureError(.malformed, "key files with several keys are not supported") }
        let pub = try SSHPublicKey(wireBytes: try r.readString())
        var s = SSHWireReader(try r.readString())
        guard try s.readUInt32() == (try s.readUInt32()) else { throw SignatureError(.malformed, "private key check integers differ") }
        let type = try s.readText()
        guard type == pub.algorithm.rawValue else { throw SignatureError(.malformed, "private key type '\(type)' does not match its public key") }
        switch pub.algorithm {
        case .ed25519:
            let pk = try s.readString()
            let sk = try s.readString()
            guard pk.count == 32, sk.count == 64, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: sk[0..<32]),
                Array(key.publicKey.rawRepresentation) == pk
            else { throw SignatureError(.malformed, "invalid Ed25519 private key") }
            material = .ed25519(key)
        case .ecdsaP256:
            _ = try s.readText()
            _ = try s.readString()
            let d = try s.readPositiveMPInt(maxBytes: 33)
            guard d.count <= 32, let key = try? P256.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 0, count: 32 - d.count) + d),
                Array(key.publicKey.x963Representation) == pub.point
            else { throw SignatureError(.malformed, "invalid P-256 private key") }
            material = .ecdsaP256(key)
        case .rsa:
            let n = try s.readPositiveMPInt()
            let e = try s.readPositiveMPInt()
            let d = try s.readPositiveMPInt()
            _ = try s.readPositiveMPInt()  // iqmp
            let p = try s.readPositiveMPInt()
            let q = try s.readPositiveMPInt()
            guard let key = try? _RSA.Signing.PrivateKey(n: n, e: e, d: d, p: p, q: q) else {
                throw SignatureError(.malformed, "invalid RSA private key")
            }
            material = .rsa(key)
        case .skEd25519, .skEcdsaP256:
            throw SignatureError(
                .unsupportedKey, "security-key signatures need the authenticator; sign with ssh-keygen (felhom op sign --ssh-keygen)")
        }
        publicKey = pub
        comment = (try? s.readText()) ?? ""
    }

    /// Generates a new Ed25519 key (demos and tests).
    public static func generateEd25519(comment: String = "") -> SSHPrivateKey {
        SSHPrivateKey(ed25519: Curve25519.Signing.PrivateKey(), comment: comment)
    }

    /// An Ed25519 key from its 32-byte seed.
    public init(ed25519Seed seed: [UInt8], comment: String = "") throws(SignatureError) {
        guard seed.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            throw SignatureError(.malformed, "an Ed25519 seed is 32 bytes")
        }
        self.init(ed25519: key, comment: comment)
    }

    init(ed25519 key: Curve25519.Signing.PrivateKey, comment: String) {
        material = .ed25519(key)
        publicKey = SSHPublicKey(ed25519: Array(key.publicKey.rawRepresentation))
        self.comment = comment
    }

    /// Signs `message` in `namespace` (default hash SHA-512, as ssh-keygen).
    public func sign(message: [UInt8], namespace: String, hashAlgorithm: SSHSignature.HashAlgorithm = .sha512) throws(SignatureError) -> SSHSignature
    {
        let data = SSHSignature.signedData(namespace: namespace, hashAlgorithm: hashAlgorithm, message: message)
        var w = SSHWireWriter()
        do {
            switch material {
            case .ed25519(let key):
                w.writeString("ssh-ed25519")
                w.writeString(Array(try key.signature(for: data)))
            case .ecdsaP256(let key):
                let raw = Array(try key.signature(for: data).rawRepresentation)
                var inner = SSHWireWriter()
                inner.writeMPInt(Array(raw[0..<32]))
                inner.writeMPInt(Array(raw[32..<64]))
                w.writeString("ecdsa-sha2-nistp256")
                w.writeString(inner.bytes)
            case .rsa(let key):
                // OpenSSH 9.2 always signs RSA with rsa-sha2-512; every verifier accepts it.
                let sig = try key.signature(for: SHA512.hash(data: data), padding: .insecurePKCS1v1_5)
                w.writeString("rsa-sha2-512")
                w.writeString(Array(sig.rawRepresentation))
            }
        } catch {
            throw SignatureError(.unsupportedKey, "signing failed: \(error)")
        }
        return SSHSignature(publicKey: publicKey, namespace: namespace, hashAlgorithm: hashAlgorithm, signatureBlob: w.bytes)
    }

    /// The private key as an OpenSSH key file (Ed25519 only; for demos and tests).
    public func openSSHText() -> String? {
        guard case .ed25519(let key) = material else { return nil }
        var sec = SSHWireWriter()
        let check = UInt32.random(in: 0...UInt32.max)
        sec.writeUInt32(check)
        sec.writeUInt32(check)
        sec.writeString("ssh-ed25519")
        let pk = Array(key.publicKey.rawRepresentation)
        sec.writeString(pk)
        sec.writeString(Array(key.rawRepresentation) + pk)
        sec.writeString(comment)
        var pad: UInt8 = 1
        while sec.bytes.count % 8 != 0 {
            sec.bytes.append(pad)
            pad += 1
        }
        var w = SSHWireWriter()
        w.bytes += Array("openssh-key-v1\0".utf8)
        w.writeString("none")
        w.writeString("none")
        w.writeString([])
        w.writeUInt32(1)
        w.writeString(publicKey.wireBytes)
        w.writeString(sec.bytes)
        return Self.header + "\n" + SSHSignature.wrappedBase64(w.bytes) + "\n" + Self.footer + "\n"
    }
}
