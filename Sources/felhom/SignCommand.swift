import ArgumentParser
import Crypto
import FelhomAPI
import FelhomCore
import FelhomHTTP
import FelhomHubClient
import FelhomSigning
import Foundation

/// `felhom sign`: review the hub's pending signed-op requests and sign them on this workstation.
struct SignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign pending destructive ops queued on the hub (the key never leaves this machine).",
        discussion: """
            Lists the ops waiting for a signature and shows each in plain words, read from the exact bytes you \
            are about to sign (not from the hub's own description), every string escaped outside printable \
            ASCII, with the SHA-256 digest of those bytes. Asks before signing each, or signs exactly the ops \
            named with --op ID (repeatable) without asking. The operator API key comes from --operator-key or \
            FELHOM_OPERATOR_KEY.
            """)

    @Option(help: "Hub URL, e.g. https://hub.example:8443 (http:// only on loopback).") var hub: String
    @Option(name: .customLong("operator-key"), help: "Hub operator API key (prefer FELHOM_OPERATOR_KEY: arguments show in ps).")
    var operatorKey: String?
    @Option(help: "Private key file (OpenSSH) to sign with.") var key: String?
    @Option(name: .customLong("hub-fingerprint"), help: "Pin the hub's TLS leaf certificate (SHA-256).") var hubFingerprint: String?
    @Option(name: .customLong("hub-ca"), help: "Trust this CA file for the hub's certificate.") var hubCA: String?
    @Flag(help: "Only list the pending ops; sign nothing.") var pending = false
    @Option(name: .customLong("op"), help: "Sign this pending op without asking (repeatable); others are left alone.")
    var opIDs: [String] = []
    @Flag(help: .hidden) var yes = false
    @Flag(name: .customLong("ssh-keygen"), help: "Always sign through ssh-keygen -Y sign.") var viaSSHKeygen = false

    func run() async throws {
        guard let apiKey = operatorKey ?? ProcessInfo.processInfo.environment["FELHOM_OPERATOR_KEY"], !apiKey.isEmpty else {
            throw ValidationError("give the hub's operator key with FELHOM_OPERATOR_KEY or --operator-key")
        }
        let keyPath = key ?? ""
        if !pending && keyPath.isEmpty { throw ValidationError("--key PATH is needed to sign (or --pending to only list)") }
        if yes {
            throw ValidationError("--yes was removed: name the ops to sign with --op ID (list them with --pending and check each digest)")
        }
        let trust = try hubTrust(fingerprint: hubFingerprint, caFile: hubCA)
        let client: HubClient
        do { client = try HubClient(url: hub, key: Secret(apiKey), trust: trust) } catch { throw ValidationError("\(error)") }
        let ops: [SignedOpView]
        do { ops = try await client.signedOps(status: .pendingSignature) } catch { throw SimpleError("cannot list pending ops: \(error)") }
        if ops.isEmpty {
            print("No ops are waiting for a signature.")
            return
        }
        print("\(ops.count) op\(ops.count == 1 ? "" : "s") waiting for a signature:\n")
        var signed = 0
        var skipped = 0
        var failed = 0
        var otherKey = 0
        // Each op names the key it must be signed with (key_id, the key's SHA-256 fingerprint): an
        // op bound to another key would only be rejected by the box, so it is not offered.
        let signingKey = pending ? nil : OperatorSigning.publicKey(keyPath: keyPath)
        if !pending && signingKey == nil {
            print("(cannot read the public key of \(keyPath) or \(keyPath).pub: every op is offered; the box refuses one bound to another key)\n")
        }
        let listedIDs = Set(ops.map(\.id))
        for wanted in opIDs where !listedIDs.contains(wanted) {
            print("✗ --op \(TerminalText.escaped(wanted)): no such op is waiting for a signature\n")
            failed += 1
        }
        for op in ops {
            let id = op.id
            if !opIDs.isEmpty && !opIDs.contains(id) {
                skipped += 1
                continue
            }
            let bytes = Array(op.blob.utf8)
            let parsed: OpBlob
            do {
                parsed = try OpBlob(parsing: bytes)
                guard try parsed.canonicalBytes() == bytes else { throw SimpleError("not in canonical form") }
            } catch {
                print("✗ \(id): the hub sent an op this CLI cannot read (\(error)); not signing it.\n")
                failed += 1
                continue
            }
            if let mine = signingKey, parsed.keyID != mine.fingerprint {
                let named = opIDs.contains(id)
                print(
                    "\(named ? "✗" : "–") \(TerminalText.escaped(id)): \(parsed.op.summary), to be signed by key \(TerminalText.escaped(parsed.keyID)), "
                        + "not by \(mine.fingerprint) (\(keyPath)); not offered\n")
                if named { failed += 1 } else { otherKey += 1 }
                continue
            }
            print(
                Self.describe(
                    parsed, bytes: bytes, id: id, customer: op.customerName, host: op.hostName,
                    volumesAtRisk: op.volumesNotInBackups ?? [], guestName: op.guestName))
            if let others = op.duplicateOf, !others.isEmpty {
                print(
                    "    WARNING  the hub lists other open ops for the same guest and operation: "
                        + others.map(TerminalText.escaped).joined(separator: ", ") + " (cancel the extra ones)")
            }
            if pending { continue }
            if opIDs.isEmpty {
                print("Sign this op? Type 'yes' to sign, anything else to skip: ", terminator: "")
                guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
                    print("  skipped\n")
                    skipped += 1
                    continue
                }
            }
            do {
                let sig = try await OperatorSigning.sign(bytes, keyPath: keyPath, viaSSHKeygen: viaSSHKeygen)
                let answer = try await client.uploadSignature(opID: id, armored: sig)
                print("  ✓ signed and uploaded (status: \(answer.status.rawValue))\n")
                signed += 1
            } catch {
                print("  ✗ \(error)\n")
                failed += 1
            }
        }
        if !pending {
            print("signed \(signed), skipped \(skipped), failed \(failed)" + (otherKey > 0 ? ", \(otherKey) bound to another key" : ""))
        }
        if failed > 0 { throw ExitCode(1) }
    }

    /// Plain words from the signed bytes themselves; the hub's names are only context. Every
    /// string is escaped outside printable ASCII (a hostile hub cannot make "121" show for "120").
    static func describe(
        _ op: OpBlob, bytes: [UInt8], id: String, customer: String?, host: String?, volumesAtRisk: [SignedOpView.VolumeRef] = [],
        guestName: String? = nil
    )
        -> String
    {
        let e = TerminalText.escaped
        let fmt = ISO8601DateFormatter()
        var lines = ["• \(op.op.summary)", "    request  \(e(id))"]
        lines.append("    host     \(e(op.hostID))\(host.map { " (\"\(e($0))\" says the hub)" } ?? "")")
        if let c = customer { lines.append("    customer \(e(c)) (says the hub)") }
        if let g = op.guestID { lines.append("    guest    vmid \(e(g))" + (guestName.map { " (\"\(e($0))\" says the hub)" } ?? "")) }
        for (k, v) in op.params.sorted(by: { $0.key < $1.key }) {
            lines.append(
                "    \(e(k).padding(toLength: 8, withPad: " ", startingAt: 0)) \(e(v.stringValue ?? String(decoding: v.serialized(), as: UTF8.self)))"
            )
        }
        lines.append(
            "    valid    \(fmt.string(from: op.issuedAt)) until \(fmt.string(from: op.expiresAt)) (nonce \(e(String(op.nonce.prefix(12))))…)")
        if op.op == .guestRestore && !volumesAtRisk.isEmpty {
            let list = volumesAtRisk.map { "\(e($0.key)) (\(e($0.volume)))" }.joined(separator: ", ")
            lines.append("    WARNING  volumes not in this guest's backups (says the hub's last report): \(list)")
            lines.append("             a restore over the guest would destroy them; the agent refuses until they are moved")
        }
        lines.append("    sha256   \(digest(bytes))  (of the exact bytes signed)")
        return lines.joined(separator: "\n")
    }

    /// Hex SHA-256 of the signed bytes, to compare with `felhom op` or another workstation.
    static func digest(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}

/// The hub TLS trust from `--hub-fingerprint` (a pinned leaf, preferred) or `--hub-ca`, else the
/// system's CAs.
func hubTrust(fingerprint: String?, caFile: String?) throws -> TLSTrust {
    if let fingerprint {
        do { return .pinnedLeafSHA256(try CertificateFingerprint(parsing: fingerprint)) } catch {
            throw ValidationError("--hub-fingerprint: \(error)")
        }
    }
    return caFile.map { .caFile($0) } ?? .systemDefault
}
