import Crypto
import Foundation
import Testing
import _CryptoExtras

@testable import FelhomSigning

/// Interop with the real peer: keys made by ssh-keygen, signatures both ways.
@Suite(.enabled(if: OpenSSH.available, "needs ssh-keygen (openssh-client)"))
struct OpenSSHInteropTests {
    static let keyTypes: [(String, [String])] = [
        ("ed25519", ["-t", "ed25519"]), ("ecdsa", ["-t", "ecdsa", "-b", "256"]), ("rsa", ["-t", "rsa", "-b", "3072"]),
    ]

    func makeKey(_ dir: String, _ name: String, _ args: [String]) async throws -> String {
        let path = dir + "/id_" + name
        let r = try await run(OpenSSH.sshKeygen!, ["-q"] + args + ["-N", "", "-C", "\(name)@felhom", "-f", path])
        #expect(r.status == 0, "\(r.stderr)")
        return path
    }

    @Test(arguments: ["ed25519", "ecdsa", "rsa"])
    func sshKeygenSignaturesVerifyHere(_ name: String) async throws {
        let dir = try tempDir()
        let args = Self.keyTypes.first { $0.0 == name }!.1
        let key = try await makeKey(dir, name, args)
        let pub = try SSHPublicKey(openSSHLine: try String(contentsOfFile: key + ".pub", encoding: .utf8))
        let msg = Array("{\"op\":\"guest.destroy\"}".utf8)
        for hash in ["sha256", "sha512"] {
            let r = try await run(OpenSSH.sshKeygen!, ["-Y", "sign", "-f", key, "-n", "felhom-op-v1", "-O", "hashalg=\(hash)"], stdin: msg)
            #expect(r.status == 0, "\(r.stderr)")
            let sig = try SSHSignature(armored: r.stdout)
            #expect(sig.publicKey == pub)
            #expect(sig.hashAlgorithm.rawValue == hash)
            try sig.verify(message: msg)
            #expect(throws: SignatureError.self) { try sig.verify(message: msg + [0x20]) }
        }
    }

    @Test(arguments: ["ed25519", "ecdsa", "rsa"])
    func ourSignaturesPassSSHKeygenVerify(_ name: String) async throws {
        let dir = try tempDir()
        let args = Self.keyTypes.first { $0.0 == name }!.1
        let keyPath = try await makeKey(dir, name, args)
        let key = try SSHPrivateKey(openSSHText: try String(contentsOfFile: keyPath, encoding: .utf8))
        let msg = Array("{\"op\":\"guest.rollback\",\"x\":1}".utf8)
        let pubLine = try String(contentsOfFile: keyPath + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        try "alice@felhom namespaces=\"felhom-op-v1\" \(pubLine)\n".write(toFile: dir + "/allowed", atomically: true, encoding: .utf8)
        for hash in SSHSignature.HashAlgorithm.allCases {
            let sig = try key.sign(message: msg, namespace: "felhom-op-v1", hashAlgorithm: hash)
            try sig.armored.write(toFile: dir + "/msg.sig", atomically: true, encoding: .utf8)
            let ok = try await run(
                OpenSSH.sshKeygen!, ["-Y", "verify", "-f", dir + "/allowed", "-I", "alice@felhom", "-n", "felhom-op-v1", "-s", dir + "/msg.sig"],
                stdin: msg)
            #expect(ok.status == 0, "\(ok.stdout) \(ok.stderr)")
            #expect(ok.stdout.contains("Good \"felhom-op-v1\" signature for alice@felhom"))
            let bad = try await run(
                OpenSSH.sshKeygen!, ["-Y", "verify", "-f", dir + "/allowed", "-I", "alice@felhom", "-n", "felhom-op-v1", "-s", dir + "/msg.sig"],
                stdin: msg + [0x0A])
            #expect(bad.status != 0)
        }
    }

    /// OpenSSH ≥ 10 signs RSA with rsa-sha2-256 when hashalg=sha256; legacy ssh-rsa (SHA-1) is refused.
    @Test func rsaSignatureTypes() async throws {
        let dir = try tempDir()
        let path = try await makeKey(dir, "rsa", ["-t", "rsa", "-b", "2048"])
        let key = try SSHPrivateKey(openSSHText: try String(contentsOfFile: path, encoding: .utf8))
        guard case .rsa(let rsa) = key.material else {
            Issue.record("expected an RSA key")
            return
        }
        let msg = Array("op".utf8)
        let sd = SSHSignature.signedData(namespace: "felhom-op-v1", hashAlgorithm: .sha256, message: msg)
        func sig(_ type: String, _ raw: [UInt8]) -> SSHSignature {
            var w = SSHWireWriter()
            w.writeString(type)
            w.writeString(raw)
            return SSHSignature(publicKey: key.publicKey, namespace: "felhom-op-v1", hashAlgorithm: .sha256, signatureBlob: w.bytes)
        }
        let s256 = Array(try rsa.signature(for: SHA256.hash(data: sd), padding: .insecurePKCS1v1_5).rawRepresentation)
        try sig("rsa-sha2-256", s256).verify(message: msg)
        #expect(throws: SignatureError.self) { try sig("rsa-sha2-512", s256).verify(message: msg) }
        let e = #expect(throws: SignatureError.self) { try sig("ssh-rsa", s256).verify(message: msg) }
        #expect(e?.message.contains("not allowed") == true)
        let s512 = Array(try rsa.signature(for: SHA512.hash(data: sd), padding: .insecurePKCS1v1_5).rawRepresentation)
        try sig("rsa-sha2-512", s512).verify(message: msg)
    }

    @Test func shortRSAKeysAndEncryptedKeysAreRefused() async throws {
        let dir = try tempDir()
        let small = try await makeKey(dir, "rsa1024", ["-t", "rsa", "-b", "1024"])
        let e = #expect(throws: SignatureError.self) {
            try SSHPublicKey(openSSHLine: try String(contentsOfFile: small + ".pub", encoding: .utf8))
        }
        #expect(e?.message.contains("1024 bits") == true)
        let enc = dir + "/id_enc"
        let r = try await run(OpenSSH.sshKeygen!, ["-q", "-t", "ed25519", "-N", "secret-pass", "-f", enc])
        #expect(r.status == 0)
        let e2 = #expect(throws: SignatureError.self) { try SSHPrivateKey(openSSHText: try String(contentsOfFile: enc, encoding: .utf8)) }
        #expect(e2?.code == .unsupportedKey)
        #expect(e2?.message.contains("secret-pass") == false)
    }

    @Test func generatedKeyFileWorksWithSSHKeygen() async throws {
        let dir = try tempDir()
        let key = SSHPrivateKey.generateEd25519(comment: "demo@felhom")
        let path = dir + "/id_demo"
        try key.openSSHText()!.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        let r = try await run(OpenSSH.sshKeygen!, ["-y", "-f", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix(key.publicKey.openSSHLine))
        let reread = try SSHPrivateKey(openSSHText: try String(contentsOfFile: path, encoding: .utf8))
        #expect(reread.publicKey == key.publicKey)
    }
}
