import FelhomSigning
import Foundation
import Subprocess

/// Signs op bytes on the operator's workstation: the key never leaves it.
///
/// Unencrypted ed25519, ecdsa and rsa OpenSSH keys are used directly; passphrase-protected and
/// security (FIDO) keys go through `ssh-keygen -Y sign`, which asks for the passphrase or touch itself.
enum OperatorSigning {
    static func sign(_ message: [UInt8], keyPath: String, viaSSHKeygen: Bool = false, namespace: String = OpVerifier.namespace) async throws
        -> String
    {
        if !viaSSHKeygen {
            guard let text = try? String(contentsOfFile: keyPath, encoding: .utf8) else {
                throw SimpleError("cannot read the private key '\(keyPath)'")
            }
            do {
                let k = try SSHPrivateKey(openSSHText: text)
                return try k.sign(message: message, namespace: namespace).armored
            } catch  where error.code == .unsupportedKey {
                FileHandle.standardError.write(Data("felhom: \(error.message); using ssh-keygen\n".utf8))
            } catch {
                throw SimpleError("\(keyPath): \(error.message)")
            }
        }
        return try await withSSHKeygen(message, keyPath: keyPath, namespace: namespace)
    }

    /// The public key of the signing key, to offer only the ops bound to it: from the private key
    /// itself when it is readable and unencrypted, else from `KEY.pub` next to it (as ssh-keygen
    /// keeps it). `nil` when neither can be read: then every op is offered and the agent decides.
    static func publicKey(keyPath: String) -> SSHPublicKey? {
        if let text = try? String(contentsOfFile: keyPath, encoding: .utf8), let k = try? SSHPrivateKey(openSSHText: text) {
            return k.publicKey
        }
        if let line = try? String(contentsOfFile: keyPath + ".pub", encoding: .utf8), let k = try? SSHPublicKey(openSSHLine: line) {
            return k
        }
        return nil
    }

    /// `ssh-keygen -Y sign -f KEY -n felhom-op-v1 FILE` writes FILE.sig.
    static func withSSHKeygen(_ message: [UInt8], keyPath: String, namespace: String = OpVerifier.namespace) async throws -> String {
        let tmpDir = NSTemporaryDirectory() + "felhom-sign-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmpDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmpDir) }
        let copy = tmpDir + "/op.json"
        try Data(message).write(to: URL(fileURLWithPath: copy))
        let result = try await Subprocess.run(
            .name("ssh-keygen"), arguments: ["-Y", "sign", "-f", keyPath, "-n", namespace, copy],
            output: .discarded, error: .string(limit: 64 * 1024))
        guard result.terminationStatus.isSuccess, let sig = try? String(contentsOfFile: copy + ".sig", encoding: .utf8) else {
            throw SimpleError("ssh-keygen -Y sign failed: \(result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return sig
    }
}

/// An error whose text is the whole message (shown without a stack trace).
struct SimpleError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
