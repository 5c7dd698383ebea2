import FelhomCore
import Foundation

extension PVESimEngine {
    /// What a new task needs.
    struct TaskSpec {
        var node: String
        var type: String
        var id: String
        var authid: String
        /// The request path, matched against injected task failures.
        var requestPath: String
        /// Containers whose lock the task checks (and takes when `lockName` is set).
        var vmids: [Int] = []
        var lockName: String?
        var log: [String] = []
        var successLog: [String] = []
        var effect: SimTaskEffect?
        /// Set when the task is known to fail (checked inside the worker in PVE).
        var failure: String?
        /// Whether an existing lock fails the task (`check_lock` in the worker).
        var checkLock = true
    }

    /// Forks a simulated worker and returns its UPID.
    func startTask(_ spec: TaskSpec) -> String {
        state.nextPid &+= 1 + UInt32.random(in: 0..<16)
        let pid = state.nextPid
        let start = UInt32(truncatingIfNeeded: nowEpoch)
        let pstart = UInt64(start) &* 100 % 0xFFFF_FFFF
        let upid = UPIDText.format(node: spec.node, pid: pid, pstart: pstart, starttime: start, type: spec.type, id: spec.id, user: spec.authid)
        var failure = spec.failure
        if failure == nil {
            for (prefix, message) in state.faults.taskFailures where spec.requestPath.hasPrefix(prefix) {
                failure = message
            }
        }
        if failure == nil, spec.checkLock {
            for v in spec.vmids {
                if let l = lock(of: v) { failure = "CT is locked (\(l))" }
            }
        }
        var task = SimTask(
            upid: upid, node: spec.node, type: spec.type, id: spec.id, authid: spec.authid, pid: pid, pstart: pstart,
            starttime: start, endsAt: now.timeIntervalSince1970 + state.settings.duration(spec.type), log: spec.log,
            exitStatus: failure ?? "OK", effect: failure == nil ? spec.effect : nil)
        task.successLog = spec.successLog
        if let lockName = spec.lockName {
            // A task that failed its lock check never took the lock; the release at the end only
            // clears a lock that still carries this task's lock name.
            if failure == nil { for v in spec.vmids { state.containers[v]?.config["lock"] = lockName } }
            task.lockedVmids = spec.vmids
            task.lockName = lockName
        }
        var warnings = spec.successLog.filter { $0.hasPrefix("WARN: ") }.count
        for (prefix, n) in state.faults.taskWarnings where spec.requestPath.hasPrefix(prefix) {
            warnings += n
            task.log += (0..<n).map { "WARN: simulated warning \($0 + 1)" }
        }
        if failure == nil, warnings > 0 { task.exitStatus = "WARNINGS: \(warnings)" }
        state.tasks.append(task)
        return upid
    }

    /// Completes every task whose time has come, in order, applying its effect.
    func advance() {
        pullSharedPBS()
        let t = now.timeIntervalSince1970
        var changed = false
        while let i = state.tasks.indices.filter({ !state.tasks[$0].finished && state.tasks[$0].endsAt <= t })
            .min(by: { state.tasks[$0].endsAt < state.tasks[$1].endsAt })
        {
            finish(i)
            changed = true
        }
        if changed { persist() }
    }

    func finish(_ i: Int, interrupted: Bool = false) {
        var task = state.tasks[i]
        task.finished = true
        if interrupted {
            task.exitStatus = "interrupted by signal"
            task.effect = nil
            if task.type == "vzcreate" || task.type == "vzrestore", let vmid = Int(task.id), isFreshCreate(vmid) {
                removeContainer(vmid)
            }
        }
        for v in task.lockedVmids where state.containers[v]?.config["lock"] == task.lockName {
            state.containers[v]?.config["lock"] = nil
        }
        if let effect = task.effect {
            apply(effect, task: &task)
        } else if task.type == "vzcreate" || task.type == "vzrestore", let vmid = Int(task.id), isFreshCreate(vmid) {
            // A failed create removes the half-made container.
            removeContainer(vmid)
        }
        if task.exitStatus == "OK" || task.exitStatus.hasPrefix("WARNINGS") {
            task.log += task.successLog
            task.log.append(task.exitStatus == "OK" ? "TASK OK" : "TASK \(task.exitStatus)")
        } else {
            task.log.append("TASK ERROR: \(task.exitStatus)")
        }
        state.tasks[i] = task
    }

    /// A container created by a still-running create task (it has only the `create` marker).
    func isFreshCreate(_ vmid: Int) -> Bool {
        state.containers[vmid]?.config["x-sim-fresh"] == "1"
    }

    func removeContainer(_ vmid: Int) {
        state.containers[vmid] = nil
        state.volumes.removeAll { $0.content == "rootdir" && $0.vmid == vmid }
    }

    func apply(_ effect: SimTaskEffect, task: inout SimTask) {
        switch effect {
        case .start(let vmid):
            guard var c = state.containers[vmid] else { return }
            for (k, v) in c.pending { c.config[k] = v }
            for k in c.pendingDelete { c.config[k] = nil }
            c.pending = [:]
            c.pendingDelete = []
            c.running = true
            c.startedAt = now.timeIntervalSince1970
            state.containers[vmid] = c
        case .stop(let vmid):
            state.containers[vmid]?.running = false
            state.containers[vmid]?.startedAt = nil
        case .create(let vmid):
            state.containers[vmid]?.config["x-sim-fresh"] = nil
            if let pendingStart = state.containers[vmid]?.config.removeValue(forKey: "x-sim-start"), pendingStart == "1" {
                state.containers[vmid]?.running = true
                state.containers[vmid]?.startedAt = now.timeIntervalSince1970
            }
        case .destroy(let vmid):
            removeContainer(vmid)
        case .snapshot(let vmid, let name, let description):
            guard var c = state.containers[vmid] else { return }
            if c.snapshots.contains(where: { $0.name == name }) {
                task.exitStatus = "snapshot name '\(name)' already used"
                task.successLog = []
                return
            }
            var cfg = c.config
            cfg["lock"] = nil
            cfg["parent"] = nil
            let data = Dictionary(uniqueKeysWithValues: volumesOf(c).map { ($0.key, $0.volume.data ?? "") })
            c.snapshots.append(
                SimSnapshot(name: name, snaptime: nowEpoch, description: description, parent: c.config["parent"], config: cfg, volumeData: data))
            c.config["parent"] = name
            state.containers[vmid] = c
        case .rollback(let vmid, let name, let start):
            guard var c = state.containers[vmid], let snap = c.snapshots.first(where: { $0.name == name }) else {
                task.exitStatus = "snapshot '\(name)' does not exist"
                task.successLog = []
                return
            }
            c.running = false
            c.config = snap.config
            c.config["parent"] = name
            c.pending = [:]
            c.pendingDelete = []
            state.containers[vmid] = c
            for (key, vol) in volumesOf(c) {
                if let i = state.volumes.firstIndex(where: { $0.volid == vol.volid }) {
                    state.volumes[i].data = snap.volumeData[key]
                }
            }
            if start {
                state.containers[vmid]?.running = true
                state.containers[vmid]?.startedAt = now.timeIntervalSince1970
            }
        case .deleteSnapshot(let vmid, let name):
            guard var c = state.containers[vmid], let idx = c.snapshots.firstIndex(where: { $0.name == name }) else {
                task.exitStatus = "snapshot '\(name)' does not exist"
                task.successLog = []
                return
            }
            let parent = c.snapshots[idx].parent
            c.snapshots.remove(at: idx)
            for j in c.snapshots.indices where c.snapshots[j].parent == name { c.snapshots[j].parent = parent }
            if c.config["parent"] == name { c.config["parent"] = parent }
            state.containers[vmid] = c
        case .backups(let volumes):
            state.volumes.append(contentsOf: volumes)
        }
    }

    // MARK: - Task API

    func findTask(_ p: Params) throws -> Int {
        let text = p.str("upid") ?? ""
        guard UPIDText.isValid(text) else { throw SimError.param(["upid": "unable to parse worker upid"]) }
        guard let i = state.tasks.firstIndex(where: { $0.upid == text }) else {
            throw SimError.param(["upid": "no such task"])
        }
        return i
    }

    /// The owner, the owning user of a token, or Sys.Audit on the node.
    func canSeeTask(_ t: SimTask, _ authid: String, priv: String = "Sys.Audit") -> Bool {
        if t.authid == authid { return true }
        if t.authid.split(separator: "!").first.map(String.init) == authid { return true }
        return has(authid, "/nodes/\(t.node)", priv)
    }

    func taskStatus(_ p: Params, _ authid: String) throws -> Result {
        let t = state.tasks[try findTask(p)]
        guard canSeeTask(t, authid) else { throw SimError.perm("/nodes/\(t.node)", ["Sys.Audit"]) }
        var o: [String: JSONValue] = [
            "upid": .string(t.upid), "node": .string(t.node), "pid": .int(Int64(t.pid)), "pstart": .int(Int64(t.pstart)),
            "starttime": .int(Int64(t.starttime)), "type": .string(t.type), "id": .string(t.id),
            "status": .string(t.finished ? "stopped" : "running"),
        ]
        let split = t.authid.split(separator: "!", maxSplits: 1)
        o["user"] = .string(String(split[0]))
        if split.count == 2 { o["tokenid"] = .string(String(split[1])) }
        if t.finished { o["exitstatus"] = .string(t.exitStatus) }
        return Result(.object(o))
    }

    func taskLog(_ p: Params, _ authid: String) throws -> Result {
        let t = state.tasks[try findTask(p)]
        guard canSeeTask(t, authid) else { throw SimError.perm("/nodes/\(t.node)", ["Sys.Audit"]) }
        let start = max(0, p.int("start") ?? 0)
        let limit = p.int("limit") ?? 50
        let lines = t.log.isEmpty ? ["no content"] : t.log
        let slice = lines.enumerated().dropFirst(start).prefix(limit == 0 ? Int.max : limit)
        let items = slice.map { JSONValue.object(["n": .int(Int64($0.offset + 1)), "t": .string($0.element)]) }
        return Result(.array(items), total: lines.count)
    }

    func stopTask(_ p: Params, _ authid: String) throws -> Result {
        let i = try findTask(p)
        guard canSeeTask(state.tasks[i], authid, priv: "Sys.Modify") else {
            throw SimError.perm("/nodes/\(state.tasks[i].node)", ["Sys.Modify"])
        }
        if !state.tasks[i].finished { finish(i, interrupted: true) }
        return Result(.null)
    }

    func listTasks(_ p: Params, _ authid: String) throws -> Result {
        let node = p.str("node") ?? ""
        let source = p.str("source") ?? "archive"
        var items: [SimTask] = state.tasks.filter { $0.node == node && canSeeTask($0, authid) }
        switch source {
        case "active": items = items.filter { !$0.finished }
        case "archive": items = items.filter(\.finished)
        default: break
        }
        if let vmid = p.str("vmid") { items = items.filter { $0.id == vmid } }
        if let type = p.str("typefilter") { items = items.filter { $0.type == type } }
        if p.bool("errors") == true { items = items.filter { $0.exitStatus != "OK" } }
        items.sort { $0.starttime > $1.starttime }
        let start = p.int("start") ?? 0
        let limit = p.int("limit") ?? 50
        let page = items.dropFirst(start).prefix(limit)
        let out: [JSONValue] = page.map { t in
            var o: [String: JSONValue] = [
                "upid": .string(t.upid), "node": .string(t.node), "pid": .int(Int64(t.pid)), "pstart": .int(Int64(t.pstart)),
                "starttime": .int(Int64(t.starttime)), "type": .string(t.type), "id": .string(t.id), "user": .string(t.authid),
            ]
            if t.finished {
                o["status"] = .string(t.exitStatus)
                o["endtime"] = .int(Int64(t.endsAt))
            }
            return .object(o)
        }
        return Result(.array(out), total: items.count)
    }
}

/// UPID formatting and checking inside the simulator (the client has its own parser).
enum UPIDText {
    static func format(node: String, pid: UInt32, pstart: UInt64, starttime: UInt32, type: String, id: String, user: String) -> String {
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16, uppercase: true)
            return s.count >= 8 ? s : String(repeating: "0", count: 8 - s.count) + s
        }
        return "UPID:\(node):\(hex(UInt64(pid))):\(hex(pstart)):\(hex(UInt64(starttime))):\(type):\(id):\(user):"
    }

    static func isValid(_ s: String) -> Bool {
        s.range(
            of: #"^UPID:[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:\s/]+:[^:\s/]*:[^:\s/]+:$"#,
            options: .regularExpression) != nil
    }
}
