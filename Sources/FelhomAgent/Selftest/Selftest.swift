import FelhomCore
import Foundation
import Proxmox

/// Live checks of a Proxmox host through the agent's own client (`felhom-agent selftest`).
///
/// `read` exercises every read the agent relies on. `task` makes reversible changes to one scratch
/// guest: a config round trip (description, guarded by the digest) and snapshot → rollback →
/// delete, each waited on through its task; whatever it changed is put back even when a step fails.
public struct Selftest: Sendable {
    /// One check's outcome.
    public struct Check: Sendable, Equatable {
        public var name: String
        public var ok: Bool
        public var detail: String
        public var milliseconds: Int
    }

    /// All checks of one run.
    public struct Report: Sendable {
        public var mode: String
        public var target: String
        public var checks: [Check] = []
        public var passed: Bool { !checks.isEmpty && checks.allSatisfy(\.ok) }

        /// A readable multi-line report.
        public func rendered() -> String {
            var s = "felhom-agent selftest \(mode) against \(target)\n"
            for c in checks {
                s += "  \(c.ok ? "PASS" : "FAIL")  \(c.name.padding(toLength: 40, withPad: " ", startingAt: 0)) \(c.detail) (\(c.milliseconds) ms)\n"
            }
            let failed = checks.filter { !$0.ok }.count
            s += failed == 0 ? "  all \(checks.count) checks passed\n" : "  \(failed) of \(checks.count) checks FAILED\n"
            return s
        }
    }

    let api: PVEAPI
    let node: String

    public init(api: PVEAPI, node: String) {
        self.api = api
        self.node = node
    }

    private func check(_ report: inout Report, _ name: String, _ body: () async throws -> String) async -> Bool {
        let start = ContinuousClock.now
        var ok = true
        var detail: String
        do {
            detail = try await body()
        } catch {
            ok = false
            detail = "\(error)"
        }
        let ms = Int((ContinuousClock.now - start) / .milliseconds(1))
        report.checks.append(Check(name: name, ok: ok, detail: detail, milliseconds: ms))
        return ok
    }

    /// Read-only checks.
    public func read(target: String) async -> Report {
        var r = Report(mode: "read", target: target)
        _ = await check(&r, "version") {
            let v = try await api.version()
            return "pve-manager \(v.version) (release \(v.release))"
        }
        _ = await check(&r, "node listed and online") {
            let nodes = try await api.nodes()
            guard let n = nodes.first(where: { $0.node == node }) else {
                throw SelftestError("node '\(node)' not in /nodes (\(nodes.map(\.node).joined(separator: ", ")))")
            }
            guard n.status == "online" else { throw SelftestError("node '\(node)' is \(n.status)") }
            return "\(nodes.count) node(s), \(node) online"
        }
        _ = await check(&r, "node status") {
            let s = try await api.nodeStatus(node: node)
            return "uptime \(s.uptime) s, memory \(s.memoryUsed >> 20)/\(s.memoryTotal >> 20) MiB, \(s.pveVersion ?? "?")"
        }
        var guests: [PVEGuestStatus] = []
        _ = await check(&r, "containers") {
            guests = try await api.containers(node: node)
            let running = guests.filter(\.isRunning).count
            return "\(guests.count) visible (\(running) running)"
        }
        _ = await check(&r, "container configs (current)") {
            var failures: [String] = []
            for g in guests {
                do { _ = try await api.containerConfig(node: node, vmid: g.vmid, current: true) } catch { failures.append("\(g.vmid): \(error)") }
            }
            if !failures.isEmpty { throw SelftestError(failures.joined(separator: "; ")) }
            return "\(guests.count) read"
        }
        var storages: [PVEStorageConfig] = []
        _ = await check(&r, "storage definitions") {
            storages = try await api.storages()
            return storages.map { "\($0.storage) (\($0.type))" }.joined(separator: ", ")
        }
        _ = await check(&r, "node storage status") {
            let s = try await api.nodeStorages(node: node)
            return s.map { "\($0.storage) \($0.active ? "active" : "INACTIVE") \($0.avail >> 30) GiB free" }.joined(separator: ", ")
        }
        _ = await check(&r, "backup content") {
            var parts: [String] = []
            for s in storages where s.content.contains("backup") {
                let items = try await api.storageContent(node: node, storage: s.storage, content: "backup", vmid: nil)
                let plain = s.type == "pbs" ? items.filter { $0.encrypted == nil }.count : 0
                parts.append("\(s.storage): \(items.count) backup(s)" + (plain > 0 ? ", \(plain) NOT encrypted" : ""))
            }
            return parts.isEmpty ? "no backup storage visible" : parts.joined(separator: ", ")
        }
        return r
    }

    /// The tag that marks a guest created for testing; task mode touches no other guest.
    public static let scratchTag = "felhom-selftest"

    /// Reversible write checks on `vmid`, which must be a scratch guest tagged ``scratchTag``
    /// (a rollback on a customer's guest would lose data if a step failed halfway).
    public func task(vmid: Int, target: String) async -> Report {
        var r = Report(mode: "task", target: target)
        var original: PVEGuestConfig?
        var wasRunning = false
        guard
            await check(
                &r, "test guest \(vmid) present, unlocked and tagged \(Self.scratchTag)",
                {
                    let st = try await api.containerStatus(node: node, vmid: vmid)
                    if let lock = st.lock { throw SelftestError("guest \(vmid) is locked (\(lock))") }
                    let config = try await api.containerConfig(node: node, vmid: vmid, current: true)
                    let tags = (config.tags ?? "").split(whereSeparator: { $0 == ";" || $0 == "," || $0 == " " }).map(String.init)
                    guard tags.contains(Self.scratchTag) else {
                        throw SelftestError(
                            "guest \(vmid) is not a scratch guest made for testing (tag \(Self.scratchTag) missing): refusing to write to it; create one with pct create … --tags \(Self.scratchTag)"
                        )
                    }
                    original = config
                    wasRunning = st.isRunning
                    return "\(st.name ?? "CT\(vmid)") is \(st.status)"
                }), let original
        else { return r }

        let marker = "felhom selftest \(Int(Date().timeIntervalSince1970))"
        let changed = await check(&r, "config round trip (description)") {
            try await api.updateContainerConfig(
                node: node, vmid: vmid, ContainerConfigUpdate(set: ["description": marker], digest: original.digest))
            let after = try await api.containerConfig(node: node, vmid: vmid, current: true)
            guard GuestDescription.equivalent(after.description, marker) else {
                throw SelftestError("read back \(String(reflecting: after.description ?? "")), wrote \(String(reflecting: marker))")
            }
            return "written with digest, read back as \(String(reflecting: after.description ?? ""))"
        }
        if changed {
            _ = await check(&r, "config restored") {
                let now = try await api.containerConfig(node: node, vmid: vmid, current: true)
                if let d = original.description {
                    try await api.updateContainerConfig(node: node, vmid: vmid, ContainerConfigUpdate(set: ["description": d], digest: now.digest))
                } else {
                    try await api.updateContainerConfig(node: node, vmid: vmid, ContainerConfigUpdate(delete: ["description"], digest: now.digest))
                }
                let back = try await api.containerConfig(node: node, vmid: vmid, current: true)
                guard GuestDescription.equivalent(back.description, original.description) else { throw SelftestError("description not restored") }
                return "original description back"
            }
        }

        let snap = "felhomst\(Int(Date().timeIntervalSince1970) % 100_000_000)"
        let created = await check(&r, "snapshot create (task)") {
            let upid = try await api.createSnapshot(node: node, vmid: vmid, name: snap, description: "felhom selftest")
            let st = try await api.waitTask(upid, timeout: .seconds(300))
            return "\(snap): \(st.exitStatus ?? "?") (\(upid.type))"
        }
        if created {
            _ = await check(&r, "snapshot rollback (task)") {
                let upid = try await api.rollbackSnapshot(node: node, vmid: vmid, name: snap, start: wasRunning)
                let st = try await api.waitTask(upid, timeout: .seconds(300))
                return "\(st.exitStatus ?? "?")"
            }
            _ = await check(&r, "snapshot delete (task)") {
                let upid = try await api.deleteSnapshot(node: node, vmid: vmid, name: snap, force: false)
                let st = try await api.waitTask(upid, timeout: .seconds(300))
                let left = try await api.snapshots(node: node, vmid: vmid)
                if left.contains(where: { $0.name == snap }) { throw SelftestError("snapshot \(snap) still listed") }
                return "\(st.exitStatus ?? "?"), snapshot gone"
            }
        }
        return r
    }
}

/// A selftest check that found something wrong.
public struct SelftestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
