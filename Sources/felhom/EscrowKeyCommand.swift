import ArgumentParser
import Crypto
import FelhomAgent
import Foundation

/// `felhom escrow-key`: the operator escrow key of the operator-managed tier (docs/operator-guide.md
/// §7). Made once on the operator's machine and kept offline; boxes on that tier wrap their backup
/// key to its public half (`escrow.operator_public_key`).
struct EscrowKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escrow-key", abstract: "The operator escrow key of the operator-managed tier.",
        subcommands: [Generate.self, Public.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an operator escrow key pair: the private key to --out (created, mode 0600), the public line on stdout.",
            discussion: """
                Keep the private key offline: with it, the backups of every box on the operator-managed tier can be \
                decrypted (that tier is the documented exception to zero knowledge). Put the printed public line in \
                those boxes' escrow.operator_public_key, then run felhom-agent escrow init on each.
                """)
        @Option(name: .long, help: "Where the private key goes (must not exist).") var out: String

        func run() throws {
            let key = Curve25519.KeyAgreement.PrivateKey()
            let fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard fd >= 0 else {
                throw ValidationError("cannot create --out '\(out)' (it must not exist: an escrow key is never overwritten)")
            }
            let text = Array(OperatorEscrowKey.privateText(key).utf8)
            let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd)
            close(fd)
            guard written == text.count, synced == 0 else { throw ValidationError("cannot write --out '\(out)'") }
            print(OperatorEscrowKey.publicLine(key.publicKey))
            FileHandle.standardError.write(
                Data("escrow-key: private key in \(out) (0600), fingerprint \(OperatorEscrowKey.fingerprint(key.publicKey.rawRepresentation))\n".utf8)
            )
        }
    }

    struct Public: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the public line and fingerprint of a private key file.")
        @Argument(help: "The private key file.") var file: String

        func run() throws {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("cannot read '\(file)'") }
            do throws(EscrowError) {
                let key = try OperatorEscrowKey.parsePrivate(text)
                print(OperatorEscrowKey.publicLine(key.publicKey))
                print(OperatorEscrowKey.fingerprint(key.publicKey.rawRepresentation))
            } catch { throw ValidationError(error.message) }
        }
    }
}
