import ArgumentParser
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
            are about to sign (not from the hub's own description). Asks before signing each unless --yes. \
            The operator API key comes from --operator-key or FELHOM_OPERATOR_KEY.
            """)

    @Option(help: "Hub URL, e.g. https://hub.example:8443 (http:// only on loopback).") var hub: String
    @Option(name: .customLong("operator-key"), help: "Hub operator API key (prefer FELHOM_OPERATOR_KEY: arguments show in ps).")
    var operatorKey: String?
    @Option(help: "Private key file (OpenSSH) to sign with.") var key: String?
    @Option(name: .customLong("hub-fingerprint"), help: "Pin the hub's TLS leaf certificate (SHA-256).") var hubFingerprint: String?
    @Option(name: .customLong("hub-ca"), help: "Trust this CA file for the hub's certificate.") var hubCA: String?
    @Flag(help: "Only list the pending ops; sign nothing.") var pending = false
    @Flag(help: "Sign every pending op without asking.") var yes = false
    @Flag(name: .customLong("ssh-keygen"), help: "Always sign through ssh-keygen -Y sign.") var viaSSHKeygen = false

    func run() async throws {
        guard let apiKey = operatorKey ?? ProcessInfo.processInfo.environment["FELHOM_OPERATOR_KEY"], !apiKey.isEmpty else {
            throw ValidationError("give the hub's operator key with FELHOM_OPERATOR_KEY or --operator-key")
        }
        if !pending && key == nil { throw ValidationError("--key PATH is needed to sign (or --pending to only list)") }
        var trust = TLSTrust.systemDefault
        if let fp = hubFingerprint {
            do { trust = .pinnedLeafSHA256(try CertificateFingerprint(parsing: fp)) } catch { throw ValidationError("--hub-fingerprint: \(error)") }
        } else if let ca = hubCA {
            trust = .caFile(ca)
        }
        let client: HubClient
        do { client = try HubClient(url: hub, key: Secret(apiKey), trust: trust) } catch { throw ValidationError("\(error)") }
        let ops: [JSONValue]
        do { ops = try await client.signedOps(status: "pending_signature") } catch { throw SimpleError("cannot list pending ops: \(error)") }
        if ops.isEmpty {
            print("No ops are waiting for a signature.")
            return
        }
        print("\(ops.count) op\(ops.count == 1 ? "" : "s") waiting for a signature:\n")
        var signed = 0, skipped = 0, failed = 0
        for op in ops {
            let id = op["id"]?.stringValue ?? "?"
            let blobText = op["blob"]?.stringValue ?? ""
            let bytes = Array(blobText.utf8)
            let parsed: OpBlob
            do {
                parsed = try OpBlob(parsing: bytes)
                guard try parsed.canonicalBytes() == bytes else { throw SimpleError("not in canonical form") }
            } catch {
                print("✗ \(id): the hub sent an op this CLI cannot read (\(error)); not signing it.\n")
                failed += 1
                continue
            }
            print(Self.describe(parsed, id: id, customer: op["customer_name"]?.stringValue, host: op["host_name"]?.stringValue))
            if pending { continue }
            if !yes {
                print("Sign this op? Type 'yes' to sign, anything else to skip: ", terminator: "")
                guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
                    print("  skipped\n")
                    skipped += 1
                    continue
                }
            }
            do {
                let sig = try await OperatorSigning.sign(bytes, keyPath: key!, viaSSHKeygen: viaSSHKeygen)
                let answer = try await client.uploadSignature(opID: id, armored: sig)
                print("  ✓ signed and uploaded (status: \(answer["status"]?.stringValue ?? "?"))\n")
                signed += 1
            } catch {
                print("  ✗ \(error)\n")
                failed += 1
            }
        }
        if !pending { print("signed \(signed), skipped \(skipped), failed \(failed)") }
        if failed > 0 { throw ExitCode(1) }
    }

    /// Plain words from the signed bytes themselves; the hub's names are only context.
    static func describe(_ op: OpBlob, id: String, customer: String?, host: String?) -> String {
        let fmt = ISO8601DateFormatter()
        var lines = ["• \(op.op.summary)", "    request  \(id)"]
        lines.append("    host     \(op.hostID)\(host.map { " (\"\($0)\" says the hub)" } ?? "")")
        if let c = customer { lines.append("    customer \(c) (says the hub)") }
        if let g = op.guestID { lines.append("    guest    vmid \(g)") }
        for (k, v) in op.params.sorted(by: { $0.key < $1.key }) {
            lines.append("    \(k.padding(toLength: 8, withPad: " ", startingAt: 0)) \(v.stringValue ?? String(decoding: v.serialized(), as: UTF8.self))")
        }
        lines.append("    valid    until \(fmt.string(from: op.expiresAt)) (nonce \(op.nonce.prefix(12))…)")
        return lines.joined(separator: "\n")
    }
}
