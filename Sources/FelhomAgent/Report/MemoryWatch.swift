import FelhomCore
import Foundation
import Proxmox
import Synchronization

/// OOM kills per guest (ADR 0012): each cycle reads the `oom_kill` counter of every running
/// guest's cgroup (`/sys/fs/cgroup/lxc/<vmid>/memory.events`, through the fenced privileged
/// backend) and says `memory_limit_exceeded` once per increase, with the guest's cap and how many
/// kills are new. The last counts are kept in `state_dir/memory-events.json`, so a restart does
/// not say an old kill again; the first reading of a guest is its baseline. A counter that went
/// down is a restarted guest (a new cgroup): its kills are new.
public final class MemoryWatch: Sendable {
    let backend: PrivilegedBackend
    let path: String
    let counts: Mutex<[String: Int64]>

    public init(backend: PrivilegedBackend, stateDir: String) {
        self.backend = backend
        path = stateDir + "/memory-events.json"
        let saved = (try? JSONDecoder().decode([String: Int64].self, from: Data(contentsOf: URL(fileURLWithPath: stateDir + "/memory-events.json"))))
        counts = Mutex(saved ?? [:])
    }

    /// Reads the guests (vmid → memory cap in MiB) and returns the events to post.
    public func check(_ guests: [Int: Int]) async -> [AgentEvent] {
        var events: [AgentEvent] = []
        var changed = false
        for (vmid, cap) in guests.sorted(by: { $0.key < $1.key }) {
            guard let kills = (try? await backend.memoryEvents(vmid: vmid))?["oom_kill"] else { continue }
            let previous = counts.withLock { $0[String(vmid)] }
            if previous != kills {
                counts.withLock { $0[String(vmid)] = kills }
                changed = true
            }
            guard let previous else { continue }  // the baseline
            let new = kills >= previous ? kills - previous : kills
            guard new > 0 else { continue }
            events.append(
                AgentEvent(
                    type: "memory_limit_exceeded", severity: .warning,
                    data: ["vmid": .int(Int64(vmid)), "cap_mb": .int(Int64(cap)), "count": .int(new), "total": .int(kills)]))
        }
        if changed, let data = try? JSONEncoder().encode(counts.withLock { $0 }) {
            try? DurableFile.write([UInt8](data), to: path, mode: 0o600)
        }
        return events
    }
}
