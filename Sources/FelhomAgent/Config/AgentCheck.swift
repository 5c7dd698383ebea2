import FelhomCore
import FelhomHubClient
import FelhomSigning
import Foundation
import Proxmox

/// `felhom-agent check`: everything a new box needs, verified before the agent first runs — the
/// hub (reachable, TLS as configured, the key or enrollment token), the Proxmox token and its
/// privileges, the golden template, the signers file and the state directory.
public enum AgentCheck {
    /// One line of the check.
    public struct Item: Sendable, Equatable {
        public var name: String
        public var ok: Bool
        public var detail: String
    }

    /// Runs every check; none stops the others. Never prints a secret.
    public static func run(config cfg: AgentConfig) async -> [Item] {
        var items: [Item] = []
        func add(_ name: String, _ ok: Bool, _ detail: String) { items.append(Item(name: name, ok: ok, detail: detail)) }

        // Signers file: the operator keys allowed to sign destructive ops.
        if let file = cfg.signersFile {
            if let text = try? String(contentsOfFile: file, encoding: .utf8) {
                do {
                    let signers = try AllowedSigners.parse(text)
                    let recovery = signers.filter { $0.role == .recovery }.count
                    add(
                        "signers_file", !signers.isEmpty,
                        signers.isEmpty ? "'\(file)' lists no keys" : "\(signers.count - recovery) operational, \(recovery) recovery key(s)")
                } catch { add("signers_file", false, "'\(file)': \(error.message)") }
            } else {
                add("signers_file", false, "cannot read '\(file)'")
            }
        } else {
            add("signers_file", false, "not set (the operator keys allowed to sign destructive ops)")
        }

        // State directory: writable, not used by a running agent.
        let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
        do {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let probe = stateDir + "/.check-\(ProcessInfo.processInfo.processIdentifier)"
            guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8), attributes: [.posixPermissions: 0o600]) else {
                throw AgentLockError(code: .unopenable, message: "cannot write in '\(stateDir)'")
            }
            try? FileManager.default.removeItem(atPath: probe)
            if StateDirLock.isHeld(stateDir: stateDir) {
                add("state_dir", false, "'\(stateDir)' is in use by a running felhom-agent")
            } else {
                add("state_dir", true, "'\(stateDir)' is writable and not in use")
            }
        } catch {
            add("state_dir", false, "\(error)")
        }

        // Proxmox: the token, its privileges (the selftest's reads), the golden template.
        do {
            let connection = try cfg.pveConnection()
            let pve = PVEClient(connection: connection)
            let report = await Selftest(api: pve, node: cfg.pve.node).read(target: "\(connection.baseURL)")
            let failed = report.checks.filter { !$0.ok }
            add(
                "proxmox token and privileges", failed.isEmpty,
                failed.isEmpty
                    ? "\(report.checks.count) reads as \(connection.tokenID)" : failed.map { "\($0.name): \($0.detail)" }.joined(separator: "; "))
            if let template = cfg.provision?.goldenTemplate {
                let storage = String(template.split(separator: ":").first ?? "")
                do {
                    let items = try await pve.storageContent(node: cfg.pve.node, storage: storage, content: "backup", vmid: nil)
                    let found = items.contains { $0.volid == template }
                    add("golden template", found, found ? template : "'\(template)' is not in storage '\(storage)'")
                } catch {
                    add("golden template", false, "cannot list storage '\(storage)': \(error)")
                }
            } else {
                add("golden template", false, "provision.golden_template is not set")
            }
        } catch {
            add("proxmox token and privileges", false, "\(error)")
        }

        // Hub: reachable with the configured TLS trust, and the key (or the enrollment token) present.
        guard let hubCfg = cfg.hub else {
            add("hub", false, "the hub section (hub.url) is missing")
            return items
        }
        do {
            let health = try await HubClient.health(url: hubCfg.url, trust: try cfg.hubTrust())
            add("hub reachable", true, "\(hubCfg.url) (store \(health.store), version \(health.version ?? "?"))")
            var key: Secret? = hubCfg.hostKey
            if let identity = Agent.storedIdentity(stateDir: stateDir) { key = Secret(identity.key) }
            if let key {
                do {
                    _ = try await HubClient(url: hubCfg.url, key: key, trust: try cfg.hubTrust()).control(after: nil, wait: 0)
                    add("hub key", true, "accepted")
                } catch let error as HubClientError where error.status == 401 {
                    add("hub key", false, "refused (401): the host key was revoked or replaced; re-enroll with a new token (docs/operator-guide.md)")
                }
            } else if hubCfg.enrollmentToken != nil {
                add("hub key", true, "enrollment token present (one-time: it is traded for the host key on first start)")
            } else {
                add("hub key", false, "give hub.enrollment_token (first start) or hub.host_key and hub.host_id")
            }
        } catch {
            add("hub reachable", false, "\(hubCfg.url): \(error)")
        }
        return items
    }

    /// The check as lines: `✓ name — detail` / `✗ name — detail`, and a last line saying what to do.
    public static func rendered(_ items: [Item]) -> String {
        var out = items.map { "\($0.ok ? "✓" : "✗") \($0.name) — \($0.detail)" }.joined(separator: "\n")
        let failed = items.filter { !$0.ok }.count
        out +=
            failed == 0
            ? "\nall \(items.count) checks passed: start the agent with `felhom-agent run`\n" : "\n\(failed) of \(items.count) checks failed\n"
        return out
    }
}
