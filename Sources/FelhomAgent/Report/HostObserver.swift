import FelhomCore
import Foundation
import Proxmox

/// Reads the host through the Proxmox API: the guests for the plan and the host report for the hub.
///
/// Partial-failure policy (SPEC §4): if node status cannot be read there is no report this round;
/// a guest whose config cannot be read keeps its run status and goes without a spec (and the plan
/// writes nothing to it).
public struct HostObserver: Sendable {
    let pve: any PVEAPI
    let node: String

    public init(pve: any PVEAPI, node: String) {
        self.pve = pve
        self.node = node
    }

    /// The guests with what could be read of them. Templates are skipped.
    public func guests() async throws -> [(ObservedGuest, PVEGuestConfig?)] {
        var out: [(ObservedGuest, PVEGuestConfig?)] = []
        for s in try await pve.containers(node: node).sorted(by: { $0.vmid < $1.vmid }) where !s.template {
            let cfg = try? await pve.containerConfig(node: node, vmid: s.vmid, current: false)
            let status: ObservedGuest.Status = s.status == "running" ? .running : s.status == "stopped" ? .stopped : .unknown
            let observed = cfg.map {
                ObservedConfig(
                    cores: $0.cores, cpuunits: $0.cpuunits, memory: $0.memory, description: $0.description ?? "", cpulimit: $0.cpulimit ?? 0)
            }
            out.append(
                (
                    ObservedGuest(
                        vmid: s.vmid, name: s.name ?? cfg?.hostname ?? "ct\(s.vmid)", status: status, config: observed,
                        lock: s.lock ?? cfg?.lock), cfg
                ))
        }
        return out
    }

    /// The host report, or `nil` when node status could not be read (the round is skipped).
    public func report(agentVersion: String, journal: Journal?, now: Date) async throws -> HostReport? {
        guard let st = try? await pve.nodeStatus(node: node) else { return nil }
        let version = (try? await pve.version())?.version ?? st.pveVersion ?? "unknown"
        let guests = try await self.guests().map { g, cfg -> HostReport.Guest in
            let spec = cfg.map { c in
                HostReport.GuestSpec(
                    cores: c.cores, cpuunits: c.cpuunits, memory: c.memory ?? 0, cpulimit: c.cpulimit ?? 0,
                    disk: c.rootfs?.size.flatMap(Self.gib), description: c.description ?? "",
                    mountPoints: ([c.rootfs.map { ("rootfs", $0) }].compactMap { $0 }
                        + c.mountPoints.sorted { $0.key < $1.key }.map { ("mp\($0.key)", $0.value) })
                        .map { key, mp in
                            HostReport.MountPoint(key: key, volume: mp.volume, path: mp.path, backup: mp.backup ?? (key == "rootfs"), size: mp.size)
                        })
            }
            let status: HostReport.Guest.Status = g.status == .running ? .running : g.status == .stopped ? .stopped : .unknown
            return HostReport.Guest(vmid: g.vmid, name: g.name, status: status, spec: spec?.memory == 0 ? nil : spec)
        }
        let inFlight: [JSONValue] =
            journal?.inFlight().map { op, entries in
                .object(["op": .string(op), "kind": .string(entries.first?.kind ?? ""), "step": .string(entries.last?.step ?? "")])
            } ?? []
        return HostReport(
            reportedAt: now, agentVersion: agentVersion,
            host: .init(
                cpu: min(1, max(0, st.cpu)), memoryTotal: st.memoryTotal, memoryUsed: st.memoryUsed, diskTotal: st.rootfsTotal,
                diskUsed: st.rootfsUsed, uptime: st.uptime, load: st.loadavg, kernel: st.kernel ?? "unknown", pveVersion: version,
                cores: st.cpuCount.map { Int(clamping: $0) }),
            guests: guests, cloudflared: .unknown, storageTargets: [], backups: [], restoreTests: [], pbsSnapshots: [], auditTail: [],
            journalInFlight: inFlight)
    }

    /// `8G` → 8, `512M` → 1 (rounded up), `1T` → 1024.
    /// Anything that is not a finite, non-negative size below 2^53 GiB is `nil` (never a trap:
    /// `Int64(Double)` crashes on NaN, infinity or out-of-range values, and PVE's text is input).
    static func gib(_ size: String) -> Int64? {
        guard let unit = size.last, let n = Double(size.dropLast()) else { return Int64(size).map { max(1, $0 >> 30) } }
        let value: Double
        switch unit {
        case "T": value = n * 1024
        case "G": value = n.rounded(.up)
        case "M": value = (n / 1024).rounded(.up)
        case "K": value = 1
        default: return nil
        }
        guard value.isFinite, value >= 0, value < 9_007_199_254_740_992 else { return nil }
        return Int64(value)
    }
}
