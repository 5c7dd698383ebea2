import FelhomCore
import Foundation
import Proxmox

/// What the agent observed of one guest on the host.
public struct ObservedGuest: Sendable, Equatable {
    public enum Status: String, Sendable { case running, stopped, unknown }
    public var vmid: Int
    public var name: String
    public var status: Status
    /// `nil` when the config could not be read: then nothing about it is written.
    public var config: ObservedConfig?
    /// The config lock (`create`, `backup`, …): a locked guest is left alone this pass.
    public var lock: String?

    public init(vmid: Int, name: String, status: Status, config: ObservedConfig?, lock: String? = nil) {
        self.vmid = vmid
        self.name = name
        self.status = status
        self.config = config
        self.lock = lock
    }
}

/// The config fields the plan compares; each is `nil` when it could not be read.
public struct ObservedConfig: Sendable, Equatable {
    public var cores: Int?
    public var cpuunits: Int?
    public var memory: Int?
    public var description: String?
    /// PVE `cpulimit` (0 when the config has none: no limit).
    public var cpulimit: Double?

    public init(cores: Int?, cpuunits: Int?, memory: Int?, description: String?, cpulimit: Double? = nil) {
        self.cpulimit = cpulimit
        self.cores = cores
        self.cpuunits = cpuunits
        self.memory = memory
        self.description = description
    }
}

/// One step the reconciler takes. There is no destroy: destroys never come out of the plan.
public enum PlannedAction: Sendable, Equatable, CustomStringConvertible {
    /// Create the guest by restoring the golden template, configure it, start it if wanted.
    case provision(DesiredState.Guest)
    /// Write these config keys (PVE names and value text).
    case setConfig(vmid: Int, set: [String: String])
    case start(vmid: Int)
    case stop(vmid: Int)

    public var vmid: Int {
        switch self {
        case .provision(let g): return g.vmid
        case .setConfig(let v, _), .start(let v), .stop(let v): return v
        }
    }

    public var description: String {
        switch self {
        case .provision(let g): return "provision \(g.vmid) (\(g.name))"
        case .setConfig(let v, let set): return "set-config \(v) \(set.keys.sorted().joined(separator: ","))"
        case .start(let v): return "start \(v)"
        case .stop(let v): return "stop \(v)"
        }
    }
}

/// The minimal action list from (desired, actual): a pure function.
///
/// In vmid order; for each guest config before run state; values compared normalized (PVE's
/// trailing newline on `description`); a field that could not be read is never written; a guest
/// with a lock or an unknown status gets no run-state change; guests not in the desired state are
/// left alone (never destroyed).
public enum Plan {
    public static func make(desired: DesiredState, actual: [ObservedGuest]) -> [PlannedAction] {
        let have = Dictionary(actual.map { ($0.vmid, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [PlannedAction] = []
        for g in desired.guests.sorted(by: { $0.vmid < $1.vmid }) {
            guard let a = have[g.vmid] else {
                out.append(.provision(g))
                continue
            }
            if a.lock != nil { continue }
            if let c = a.config {
                // The same comparison as the hub's drift view; each difference is a config key to write.
                let observed = GuestComparison.Observed(
                    cores: c.cores, cpuunits: c.cpuunits, memory: c.memory, description: c.description, cpulimit: c.cpulimit)
                var set: [String: String] = [:]
                for d in GuestComparison.differences(g, observed) where d.field != "disk" { set[d.field] = d.desired }
                if !set.isEmpty { out.append(.setConfig(vmid: g.vmid, set: set)) }
            }
            switch (g.runState, a.status) {
            case (.running, .stopped): out.append(.start(vmid: g.vmid))
            case (.stopped, .running): out.append(.stop(vmid: g.vmid))
            default: break
            }
        }
        return out
    }

    /// What a desired guest's PVE config keys are (for provisioning). Feature flags are not among
    /// them: `keyctl=1,nesting=1` come with the golden template's backup (only root@pam may change
    /// them, and the agent's token is not root).
    public static func configKeys(for g: DesiredState.Guest) -> [String: String] {
        var set = [
            "hostname": g.name, "cores": String(g.cores), "cpuunits": String(g.cpuunits), "memory": String(g.memoryMB),
        ]
        set["description"] = GuestComparison.normalizedDescription(g.description)
        if let limit = g.cpuLimit { set["cpulimit"] = GuestComparison.cpuLimitText(limit) }
        return set
    }

    /// The config write for `set`: an empty value deletes the key (PVE has no empty description).
    public static func update(_ set: [String: String]) -> ContainerConfigUpdate {
        ContainerConfigUpdate(set: set.filter { !$0.value.isEmpty }, delete: set.filter { $0.value.isEmpty }.map(\.key).sorted())
    }
}
