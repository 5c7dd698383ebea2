import FelhomCore
import Foundation

/// The bulk-volume rule on the box (SPEC §4, seed review B2): a guest's mount point that is bulk —
/// marked `bulk` in the desired state, or of ``DesiredState/bulkThresholdGB`` GiB or more — must
/// have vzdump's `backup=0`, or every backup carries the media drive. The hub refuses a desired
/// state that breaks the rule, and the agent's decode does too; this finds guests that break it
/// anyway (made by hand, or changed behind the agent's back).
public enum BulkRule {
    /// One offending mount point.
    public struct Violation: Sendable, Equatable, Hashable {
        public var vmid: Int
        public var key: String
        public var path: String?
        public var sizeGB: Int?
        /// Why it counts as bulk: `marked` or `size`.
        public var why: String
    }

    /// PVE's `size=32G` / `1T` / `512M` in GiB (rounded down); nil when unreadable.
    public static func gib(_ size: String?) -> Int? {
        guard var s = size?.trimmingCharacters(in: .whitespaces).uppercased(), !s.isEmpty else { return nil }
        let unit = s.last.map(String.init) ?? ""
        if ["K", "M", "G", "T"].contains(unit) { s.removeLast() }
        guard let n = Double(s) else { return nil }
        switch unit {
        case "K": return Int(n / 1024 / 1024)
        case "M": return Int(n / 1024)
        case "T": return Int(n * 1024)
        case "G": return Int(n)
        default: return Int(n / 1_073_741_824)  // bytes
        }
    }

    /// Mount points (never the rootfs) that are bulk and included in backups.
    public static func violations(report: HostReport, desired: DesiredState) -> [Violation] {
        let marked = Dictionary(
            desired.guests.map { g in (g.vmid, Set(g.mountPoints.filter(\.bulk).map(\.key))) }, uniquingKeysWith: { a, _ in a })
        var out: [Violation] = []
        for g in report.guests {
            for m in g.spec?.mountPoints ?? [] where m.key != "rootfs" && m.backup {
                let size = gib(m.size)
                if marked[g.vmid]?.contains(m.key) == true {
                    out.append(Violation(vmid: g.vmid, key: m.key, path: m.path, sizeGB: size, why: "marked"))
                } else if let size, size >= DesiredState.bulkThresholdGB {
                    out.append(Violation(vmid: g.vmid, key: m.key, path: m.path, sizeGB: size, why: "size"))
                }
            }
        }
        return out
    }
}
