import Crypto
import Foundation
import Testing

@testable import FelhomSigning

/// SSHSIG against fixed vectors (FORMATS.md §1.6) made by ssh-keygen 9.2 and an independent producer.
@Suite struct SSHSIGVectorTests {
    let message = Array("hello felhom\n".utf8)

    @Test func knownAnswerIsByteIdenticalToSSHKeygen() throws {
        let key = try SSHPrivateKey(ed25519Seed: Array(0..<32))
        #expect(key.publicKey.openSSHLine == (try Fixtures.text("kat.pub")).split(separator: " ").prefix(2).joined(separator: " "))
        let sha512 = try key.sign(message: message, namespace: "felhom-op-v1")
        #expect(sha512.armored == (try Fixtures.text("kat.sha512.sig")))
        let sha256 = try key.sign(message: message, namespace: "felhom-op-v1", hashAlgorithm: .sha256)
        #expect(sha256.armored == (try Fixtures.text("kat.sha256.sig")))
        #expect(sha512.armored.utf8.count == 306)
    }

    @Test(arguments: [
        ("msg.ed25519.sig", "id_ed25519.pub"), ("msg.ecdsa.sig", "id_ecdsa.pub"), ("msg.rsa.sig", "id_rsa.pub"),
        ("kat.sha512.sig", "kat.pub"), ("kat.sha256.sig", "kat.pub"),
        ("py_sk-ed25519.sig", "py_sk-ed25519.pub"), ("py_sk-ecdsa.sig", "py_sk-ecdsa.pub"),
    ])
    func vectorsVerify(_ sigFile: String, _ keyFile: String) throws {
        let sig = try SSHSignature(armored: try Fixtures.text(sigFile))
        let key = try SSHPublicKey(openSSHLine: try Fixtures.text(keyFile))
        #expect(sig.publicKey == key)
        #expect(sig.namespace == "felhom-op-v1")
        try sig.verify(message: message)
        // Tampering with one byte of the message breaks it.
        var bad = message
        bad[0] ^= 1
        let e = #expect(throws: SignatureError.self) { try sig.verify(message: bad) }
        #expect(e?.code == .badSignature)
        // Re-serializing gives ssh-keygen's exact armor back.
        #expect(sig.armored == (try Fixtures.text(sigFile)))
    }

    /// A security-key signature built here (no hardware): flags 0 must be refused by default.
    @Test func securityKeyUserPresenceIsRequiredByDefault() throws {
        let priv = Curve25519.Signing.PrivateKey()
        var kw = SSHWireWriter()
        kw.writeString("sk-ssh-ed25519@openssh.com")
        kw.writeString(Array(priv.publicKey.rawRepresentation))
        kw.writeString("ssh:")
        let pub = try SSHPublicKey(wireBytes: kw.bytes)
        func sign(flags: UInt8) throws -> SSHSignature {
            let sd = SSHSignature.signedData(namespace: "felhom-op-v1", hashAlgorithm: .sha512, message: message)
            var inner = Array(SHA256.hash(data: Array("ssh:".utf8)))
            inner += [flags, 0, 0, 0, 7]
            inner += Array(SHA256.hash(data: sd))
            var sw = SSHWireWriter()
            sw.writeString("sk-ssh-ed25519@openssh.com")
            sw.writeString(Array(try priv.signature(for: inner)))
            sw.bytes += [flags, 0, 0, 0, 7]
            return SSHSignature(publicKey: pub, namespace: "felhom-op-v1", hashAlgorithm: .sha512, signatureBlob: sw.bytes)
        }
        try sign(flags: 0x01).verify(message: message)
        try sign(flags: 0x05).verify(message: message)
        let e = #expect(throws: SignatureError.self) { try sign(flags: 0x00).verify(message: message) }
        #expect(e?.message.contains("user-presence") == true)
        try sign(flags: 0x00).verify(message: message, requireUserPresence: false)
    }

    @Test func armorRules() throws {
        let good = try Fixtures.text("kat.sha512.sig")
        // Any wrapping width and trailing text after the footer are accepted (as OpenSSH 9.2).
        let lines = good.split(separator: "\n")
        let oneLine = "\(lines[0])\n\(lines[1..<lines.count - 1].joined())\n\(lines.last!)"
        _ = try SSHSignature(armored: oneLine)
        _ = try SSHSignature(armored: good + "garbage")
        for bad in [
            good.replacingOccurrences(of: "-----BEGIN SSH SIGNATURE-----\n", with: "-----BEGIN SSH SIGNATURE-----\r\n"),
            "\n" + good, good.replacingOccurrences(of: "-----END SSH SIGNATURE-----", with: ""), "not a signature",
        ] {
            let e = #expect(throws: SignatureError.self) { try SSHSignature(armored: bad) }
            #expect(e?.code == .malformed)
        }
    }

    @Test func blobRules() throws {
        let sig = try SSHSignature(armored: try Fixtures.text("kat.sha512.sig"))
        #expect(throws: SignatureError.self) { try SSHSignature(blob: sig.blob + [0]) }
        var v2 = sig
        v2.version = 2
        let e = #expect(throws: SignatureError.self) { try SSHSignature(blob: v2.blob) }
        #expect(e?.message.contains("version 2") == true)
        // A non-empty reserved field is ignored when verifying (OpenSSH signs over an empty one).
        var reserved = sig
        reserved.reserved = Array("xyz".utf8)
        try SSHSignature(blob: reserved.blob).verify(message: message)
    }

    @Test func publicKeyLinesAndFingerprints() throws {
        let k = try SSHPublicKey(openSSHLine: try Fixtures.text("id_ed25519.pub"))
        #expect(k.algorithm == .ed25519)
        #expect(k.fingerprint.hasPrefix("SHA256:"))
        #expect(!k.fingerprint.hasSuffix("="))
        #expect(throws: SignatureError.self) {
            try SSHPublicKey(openSSHLine: "ssh-rsa " + (try Fixtures.text("id_ed25519.pub")).split(separator: " ")[1])
        }
        #expect(throws: SignatureError.self) { try SSHPublicKey(openSSHLine: "ssh-ed25519 !!!") }
        #expect(throws: SignatureError.self) { try SSHPublicKey(openSSHLine: "ssh-dss AAAAB3NzaC1kc3M=") }
    }

    @Test func wireMPIntRoundTrip() throws {
        var w = SSHWireWriter()
        w.writeMPInt([0x80, 0x01])
        w.writeMPInt([0x00, 0x00, 0x7F])
        #expect(w.bytes == [0, 0, 0, 3, 0, 0x80, 0x01, 0, 0, 0, 1, 0x7F])
        var r = SSHWireReader(w.bytes)
        #expect(try r.readPositiveMPInt() == [0x80, 0x01])
        #expect(try r.readPositiveMPInt() == [0x7F])
        var neg = SSHWireReader([0, 0, 0, 1, 0x80])
        #expect(throws: SignatureError.self) { try neg.readPositiveMPInt() }
    }
}
