import ArgumentParser
import FelhomCore
import FelhomSigning
import Foundation
import Subprocess

/// `felhom jcs`: canonical JSON of stdin.
struct JCSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jcs", abstract: "Print the RFC 8785 canonical form of the JSON on standard input.")

    func run() throws {
        let input = FileHandle.standardInput.readDataToEndOfFile()
        do {
            let out = try CanonicalJSON.canonicalize(Array(input))
            FileHandle.standardOutput.write(Data(out))
        } catch {
            FileHandle.standardError.write(Data("felhom jcs: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `felhom op …`: make, sign and verify operator-signed ops.
struct OpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "op", abstract: "Create, sign and verify operator-signed operations.",
        subcommands: [OpNew.self, OpSign.self, OpVerify.self, OpSignersLine.self])
}

/// `felhom op signers-line KEY.pub --role operational|recovery`: the exact line for an agent's
/// `signers_file` (OpenSSH allowed_signers syntax, restricted to the op namespace).
struct OpSignersLine: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signers-line",
        abstract: "Print the signers_file line for a public key (append it to every agent's signers_file).",
        discussion: """
            Example: felhom op signers-line ~/.ssh/felhom_ed25519.pub --role operational >> /etc/felhom/allowed_signers
            The line is `NAME namespaces="felhom-op-v1" KEYTYPE KEY role=ROLE [comment]`; agents match keys by their bytes.
            """)

    @Argument(help: "The operator's OpenSSH public key file (KEY.pub).") var publicKeyFile: String
    @Option(help: "operational (day-to-day) or recovery (kept offline).") var role: String = "operational"
    @Option(help: "The principal name at the start of the line.") var name: String = "operator@felhom"

    func run() throws {
        guard ["operational", "recovery"].contains(role) else { throw ValidationError("--role must be operational or recovery (got '\(role)')") }
        guard Pattern.whole(name, "[A-Za-z0-9@._-]{1,64}") else { throw ValidationError("--name must be 1–64 characters of A-Z a-z 0-9 @ . _ -") }
        let text = String(decoding: try readFileBytes(publicKeyFile, what: "public key file"), as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard lines.count == 1, let line = lines.first else {
            throw SimpleError("'\(publicKeyFile)' must hold exactly one OpenSSH public key line (got \(lines.count))")
        }
        let key: SSHPublicKey
        do { key = try SSHPublicKey(openSSHLine: line) } catch {
            throw SimpleError("'\(publicKeyFile)' is not an accepted OpenSSH public key: \(error.message)")
        }
        // Keep the key's own comment as a label, minus anything that would read as an option.
        let comment = line.split(separator: " ").dropFirst(2).filter { !$0.hasPrefix("role=") }.joined(separator: " ")
        let signersLine = "\(name) namespaces=\"\(OpVerifier.namespace)\" \(key.openSSHLine) role=\(role)" + (comment.isEmpty ? "" : " " + comment)
        // What an agent will read back: the same key, the same role.
        let parsed = try AllowedSigners.parse(signersLine)
        guard parsed.count == 1, parsed[0].key == key, parsed[0].role.rawValue == role else {
            throw ValidationError("internal: the line does not read back as the same key and role")
        }
        print(signersLine)
    }
}

/// Parses `90`, `90s`, `15m`, `2h`, `1h30m`, `1d`.
func parseDuration(_ text: String) throws -> TimeInterval {
    if let s = TimeInterval(text) { return s }
    var total: TimeInterval = 0
    var num = ""
    for ch in text {
        if ch.isNumber {
            num.append(ch)
            continue
        }
        guard let n = TimeInterval(num) else { throw ValidationError("invalid duration '\(text)' (use e.g. 90s, 15m, 2h, 1d)") }
        switch ch {
        case "s": total += n
        case "m": total += n * 60
        case "h": total += n * 3600
        case "d": total += n * 86400
        default: throw ValidationError("invalid duration unit '\(ch)' in '\(text)'")
        }
        num = ""
    }
    guard num.isEmpty, total > 0 else { throw ValidationError("invalid duration '\(text)' (use e.g. 90s, 15m, 2h, 1d)") }
    return total
}

func readFileBytes(_ path: String, what: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else { throw SimpleError("cannot read \(what) '\(path)'") }
    return Array(d)
}

struct OpNew: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Print a new op blob (canonical JSON, no trailing newline) to sign.",
        discussion: "Ops: "
            + OpBlob.Op.allCases.map {
                "\($0.rawValue) (\($0.requiredParams.isEmpty ? "no params" : "params: " + $0.requiredParams.joined(separator: ", ")))"
            }.joined(separator: "; "))

    @Option(help: "Operation name.") var op: String
    @Option(help: "Target host id.") var host: String
    @Option(help: "Target guest id (for guest ops).") var guest: String?
    @Option(help: "Parameters as a JSON object.") var params: String = "{}"
    @Option(help: "How long the op stays valid (e.g. 15m, 2h; at most 24h).") var ttl: String = "15m"
    @Option(name: .customLong("key-id"), help: "Informational id of the signing key (e.g. its SHA256 fingerprint).")
    var keyID: String = ""

    func run() throws {
        guard let o = OpBlob.Op(rawValue: op) else {
            throw ValidationError("unknown op '\(op)' (known: \(OpBlob.Op.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let p: JSONValue
        do { p = try CanonicalJSON.parse(Array(params.utf8)) } catch { throw ValidationError("--params: \(error)") }
        guard case .object(let obj) = p else { throw ValidationError("--params must be a JSON object") }
        do {
            let blob = try OpBlob.new(op: o, hostID: host, guestID: guest, params: obj, ttl: try parseDuration(ttl), keyID: keyID)
            FileHandle.standardOutput.write(Data(try blob.canonicalBytes()))
        } catch let e as OpBlobError {
            throw ValidationError("\(e)")
        }
    }
}

struct OpSign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign an op blob file with an SSH key; prints the SSHSIG armored signature.",
        discussion: """
            Unencrypted ed25519, ecdsa and rsa keys are used directly. Passphrase-protected or security (FIDO) keys \
            are handed to `ssh-keygen -Y sign` (it asks for the passphrase or touch itself); --ssh-keygen forces that.
            """)

    @Option(help: "Private key file (OpenSSH format).") var key: String
    @Flag(name: .customLong("ssh-keygen"), help: "Always sign through ssh-keygen -Y sign.") var viaSSHKeygen = false
    @Argument(help: "The op blob file (as printed by `felhom op new`).") var blob: String

    func run() async throws {
        let message = try readFileBytes(blob, what: "op blob")
        print(try await OperatorSigning.sign(message, keyPath: key, viaSSHKeygen: viaSSHKeygen), terminator: "")
    }
}

struct OpVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a signed op as the agent does; exit 0 and describe it, or exit 1 with the error code.",
        discussion: """
            The signers file uses OpenSSH allowed_signers syntax; add role=recovery to a line's comment for a \
            recovery key. Without --nonce-store the nonce is checked in memory only (no replay protection \
            across runs).
            """)

    @Option(help: "Pinned signers (allowed_signers format).") var signers: String
    @Option(help: "This host's id; the op must target it.") var host: String
    @Option(name: .customLong("nonce-store"), help: "Durable nonce log (created if missing).") var nonceStore: String?
    @Option(name: .customLong("hold-after-record"), help: .hidden) var holdAfterRecord: Double?
    @Argument(help: "The op blob file.") var blob: String
    @Argument(help: "The armored signature file.") var signature: String

    func run() throws {
        let signerText = (try? String(contentsOfFile: signers, encoding: .utf8)) ?? ""
        guard FileManager.default.isReadableFile(atPath: signers) else { throw SimpleError("cannot read signers file '\(signers)'") }
        let pinned: [PinnedSigner]
        do { pinned = try AllowedSigners.parse(signerText) } catch { throw SimpleError("\(signers): \(error.message)") }
        let store: NonceStore
        if let nonceStore {
            do { store = try FileNonceStore(path: nonceStore) } catch { throw SimpleError("\(error)") }
        } else {
            store = InMemoryNonceStore()
        }
        let message = try readFileBytes(blob, what: "op blob")
        guard let sig = try? String(contentsOfFile: signature, encoding: .utf8) else {
            throw SimpleError("cannot read signature '\(signature)'")
        }
        let verifier = OpVerifier(signers: pinned, hostID: host, nonces: store)
        do {
            let v = try verifier.verify(blob: message, signature: sig)
            print("OK: \(v.op.plainDescription)")
            print("signed by \(v.signer.name) (\(v.signer.role.rawValue) key, \(v.signer.key.fingerprint))")
            if let hold = holdAfterRecord {
                // Crash tests: the nonce is on disk; stay alive to be killed.
                FileHandle.standardError.write(Data("nonce recorded\n".utf8))
                Thread.sleep(forTimeInterval: hold)
            }
        } catch {
            FileHandle.standardError.write(Data("rejected: \(error.code): \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}
