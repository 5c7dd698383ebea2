import FelhomCore
import Foundation
import Proxmox

/// The autonomous restore test (SPEC §4, issue 14): proves a guest's latest backup restores and
/// its apps come up — into a scratch guest that can never touch live data.
///
/// Journaled (kind `restore-test`): `begin` (source guest, scratch vmid confirmed free, backup
/// volid) → `restore` (its UPID) → `started` → `done` (passed or failed, with the times). The
/// scratch guest is restored in PVE's advanced mode with only a fresh `rootfs` (every mount point of
/// the backup dropped: no bulk volume, no bind mount of customer data), its network link down, tagged
/// `felhom-restore-test`. Its apps are read from the controller inside (the fenced
/// `pct exec … stacks list --json`) until every stack runs, within `healthTimeout`. The scratch
/// guest is then destroyed without a signature only because the gate is shown, from this journal,
/// that this same operation created it — never from a tag or anything the hub says.
public struct RestoreTester: Sendable {
    public struct Result: Sendable, Equatable {
        public var vmid: Int
        public var op: String
        public var scratchVMID: Int?
        public var volid: String?
        public var passed: Bool
        public var reason: String?
        public var restoreSeconds: Double?
        public var healthySeconds: Double?
        public var stacks: [String] = []
        /// The scratch guest's config, read back from PVE, had no mount point, its link down and
        /// the restore-test tag.
        public var isolated = false
    }

    public static let kind = "restore-test"
    /// The reason a restart gives a test it interrupted.
    public static let interrupted = "interrupted by a restart"

    /// The journal key of `vmid`'s restore test `id`.
    public static func op(vmid: Int, id: String) -> String { "restore-test-\(vmid)-\(id)" }
    public static let tag = "felhom-restore-test"

    let pve: any PVEAPI
    let node: String
    let queue: GuestQueue
    let journal: Journal
    let backend: PrivilegedBackend
    /// Where the scratch rootfs goes (e.g. `local-lvm`).
    let scratchStorage: String
    /// The vmids scratch guests may use.
    let scratchRange: ClosedRange<Int>
    let healthTimeout: Duration
    let taskTimeout: Duration
    let log: @Sendable (String) -> Void

    public init(
        pve: any PVEAPI, node: String, queue: GuestQueue, journal: Journal, backend: PrivilegedBackend, scratchStorage: String = "local-lvm",
        scratchRange: ClosedRange<Int> = 9900...9999, healthTimeout: Duration = .seconds(600), taskTimeout: Duration = .seconds(3600),
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.pve = pve
        self.node = node
        self.queue = queue
        self.journal = journal
        self.backend = backend
        self.scratchStorage = scratchStorage
        self.scratchRange = scratchRange
        self.healthTimeout = healthTimeout
        self.taskTimeout = taskTimeout
        self.log = log
    }

    struct Failed: Error { var reason: String }

    /// Tests the latest backup of `vmid` on `backupStorage`; `id` makes the journal key unique.
    public func run(vmid: Int, backupStorage: String, id: String) async -> Result {
        let op = Self.op(vmid: vmid, id: id)
        var result = Result(vmid: vmid, op: op, passed: false)
        do {
            guard
                let backup = try await pve.storageContent(node: node, storage: backupStorage, content: "backup", vmid: vmid).max(by: {
                    ($0.ctime ?? 0) < ($1.ctime ?? 0)
                })
            else { throw Failed(reason: "no backup of \(vmid) on \(backupStorage)") }
            result.volid = backup.volid
            // Free space first: the scratch rootfs must fit.
            let needed = backup.size
            let room = try await pve.nodeStorages(node: node).first { $0.storage == scratchStorage }
            guard let room, room.active, room.avail >= needed else {
                throw Failed(reason: "not enough space on \(scratchStorage) for a scratch guest (\(needed >> 20) MiB needed)")
            }
            let taken = Set(try await pve.containers(node: node).map(\.vmid))
            guard let scratch = scratchRange.first(where: { !taken.contains($0) }) else {
                throw Failed(reason: "no free scratch vmid in \(scratchRange.lowerBound)–\(scratchRange.upperBound)")
            }
            guard try await !pve.containerExists(node: node, vmid: scratch) else { throw Failed(reason: "scratch vmid \(scratch) is taken") }
            result.scratchVMID = scratch
            try journal.append(op: op, kind: Self.kind, step: "begin", data: ["vmid": "\(vmid)", "scratch": "\(scratch)", "volid": backup.volid])
            Failpoint.hit("restore_test.after_begin")
            let watched = try await queue.run(vmid: scratch) { try await self.restoreStartAndWatch(op: op, scratch: scratch, backup: backup) }
            result.restoreSeconds = watched.restoreSeconds
            result.healthySeconds = watched.healthySeconds
            result.stacks = watched.stacks
            result.isolated = watched.isolated
            result.passed = true
        } catch let f as Failed {
            result.reason = f.reason
        } catch {
            result.reason = "\(error)"
        }
        if let scratch = result.scratchVMID { await destroyScratch(op: op, scratch: scratch) }
        try? journal.append(
            op: op, kind: Self.kind, step: "done",
            data: [
                "vmid": "\(vmid)", "passed": result.passed ? "1" : "0", "reason": String((result.reason ?? "").prefix(300)),
                "restore_seconds": result.restoreSeconds.map { String(format: "%.1f", $0) } ?? "",
                "healthy_seconds": result.healthySeconds.map { String(format: "%.1f", $0) } ?? "",
            ])
        log("restore test of \(vmid): \(result.passed ? "PASSED" : "FAILED (\(result.reason ?? "?"))")")
        return result
    }

    struct Watched: Sendable {
        var isolated: Bool
        var restoreSeconds: Double
        var healthySeconds: Double
        var stacks: [String]
    }

    /// Restores, starts and watches the scratch guest; returns the times once its apps run.
    func restoreStartAndWatch(op: String, scratch: Int, backup: PVEStorageContent) async throws -> Watched {
        let t0 = ContinuousClock.now
        var spec = ContainerCreateSpec(vmid: scratch, ostemplate: backup.volid, restore: true)
        // Advanced mode: only this fresh rootfs; every mount point of the backup is dropped.
        spec.rootfs = "\(scratchStorage):\(max(1, Int((Double(backup.size) / 1_073_741_824).rounded(.up)) + 1))"
        spec.net0 = "name=eth0,bridge=vmbr0,link_down=1"
        spec.hostname = "restore-test-\(scratch)"
        spec.tags = Self.tag
        spec.unique = true
        spec.description = "felhom restore test of guest \(backup.vmid.map(String.init) ?? "?") from \(backup.volid); destroyed when done"
        let upid = try await pve.createContainer(node: node, spec)
        try journal.append(op: op, kind: Self.kind, step: "restore", data: ["vmid": "\(scratch)", "upid": upid.description])
        Failpoint.hit("restore_test.after_restore_started")
        _ = try await pve.waitTask(upid, timeout: taskTimeout)
        // Defense in depth: nothing but the rootfs may be attached, and the link is down.
        let config = try await pve.containerConfig(node: node, vmid: scratch, current: true)
        guard config.mountPoints.isEmpty else { throw Failed(reason: "the scratch guest has mount points attached: refused to start it") }
        let raw = try await pve.containerConfig(node: node, vmid: scratch, current: true).raw
        let isolated =
            (raw["net0"]?.stringValue ?? "").contains("link_down=1") && (raw["tags"]?.stringValue ?? "").contains(Self.tag)
            && !raw.keys.contains { $0.hasPrefix("mp") }
        let restoreSeconds = seconds(ContinuousClock.now - t0)
        _ = try await pve.waitTask(try await pve.startContainer(node: node, vmid: scratch), timeout: taskTimeout)
        try journal.append(op: op, kind: Self.kind, step: "started", data: ["vmid": "\(scratch)"])
        let t1 = ContinuousClock.now
        var last = "no answer yet"
        while ContinuousClock.now - t1 < healthTimeout {
            do {
                let stacks = try await backend.stacks(vmid: scratch)
                if !stacks.isEmpty && stacks.allSatisfy({ $0.state == "running" }) {
                    return Watched(
                        isolated: isolated, restoreSeconds: restoreSeconds, healthySeconds: seconds(ContinuousClock.now - t1),
                        stacks: stacks.map(\.name))
                }
                last = stacks.isEmpty ? "no stacks" : stacks.filter { $0.state != "running" }.map { "\($0.name) \($0.state)" }.joined(separator: ", ")
            } catch { last = "\(error)" }
            try await Task.sleep(for: .seconds(1))
        }
        throw Failed(reason: "apps not healthy within \(healthTimeout): \(last)")
    }

    /// Stops and destroys the scratch guest, if the gate — shown this journal's proof — allows it.
    func destroyScratch(op: String, scratch: Int) async {
        let proven = await createdHere(op: op, scratch: scratch)
        let decision = Gate.decide(
            .destroy, provenance: .compensation, target: .init(dataBearing: !proven, ephemeral: proven, createdBySameOperation: proven))
        guard decision == .allowed else {
            log("restore test: scratch guest \(scratch) left alone (\(decision))")
            return
        }
        do {
            guard try await pve.containerExists(node: node, vmid: scratch) else { return }
            try await queue.run(vmid: scratch) {
                if try await self.pve.containerStatus(node: self.node, vmid: scratch).isRunning {
                    _ = try await self.pve.waitTask(try await self.pve.stopContainer(node: self.node, vmid: scratch), timeout: self.taskTimeout)
                }
                _ = try await self.pve.waitTask(
                    try await self.pve.destroyContainer(node: self.node, vmid: scratch, purge: true, force: false), timeout: self.taskTimeout)
            }
            try? journal.append(op: op, kind: Self.kind, step: "destroyed", data: ["vmid": "\(scratch)"])
        } catch {
            log("restore test: cannot destroy scratch guest \(scratch): \(error)")
        }
    }

    /// Whether the journal shows this operation created `scratch`: its restore task is recorded,
    /// is the creation of exactly that vmid, and did not fail.
    ///
    /// Killed after asking PVE for the restore but before journaling its UPID, the operation has
    /// `begin` (which found the vmid free) and no `restore`: then PVE's task list is asked for a
    /// `vzrestore` of exactly that vmid by this agent's own token, started no earlier than `begin`
    /// — the request this operation made. Found, its UPID is journaled (the proof, kept) and
    /// checked like a recorded one; anything else leaves the guest alone.
    func createdHere(op: String, scratch: Int) async -> Bool {
        let entries = journal.entries(of: op)
        guard let begin = entries.first, begin.step == "begin", begin.data["scratch"] == "\(scratch)" else { return false }
        var upid = entries.last(where: { $0.step == "restore" })?.data["upid"].flatMap { try? UPID(parsing: $0) }
        if upid == nil {
            if let found = await pve.ownTask(node: node, vmid: scratch, type: "vzrestore", since: begin.at) {
                try? journal.append(
                    op: op, kind: Self.kind, step: "restore", data: ["vmid": "\(scratch)", "upid": found.description, "found": "task list"])
                upid = found
            }
        }
        guard let upid, upid.type == "vzrestore", upid.id == "\(scratch)" else { return false }
        guard let status = try? await pve.taskStatus(upid) else { return false }
        return status.isRunning || status.succeeded
    }

    /// At start-up: a restore test a crash interrupted leaves a scratch guest behind; it is
    /// destroyed when the journal proves this operation created it (a guest not created here is
    /// never touched), and the test is recorded failed (it runs again at the next schedule).
    public func resume(op: String, entries: [JournalEntry]) async -> Result? {
        guard let begin = entries.first, begin.step == "begin", let vmid = begin.data["vmid"].flatMap(Int.init),
            let scratch = begin.data["scratch"].flatMap(Int.init)
        else { return nil }
        _ = await createdHere(op: op, scratch: scratch)  // a restore asked for but not journaled is found and journaled
        if let text = journal.entries(of: op).last(where: { $0.step == "restore" })?.data["upid"], let upid = try? UPID(parsing: text) {
            _ = try? await pve.waitTask(upid, timeout: taskTimeout)  // a restore still running finishes first
        }
        await destroyScratch(op: op, scratch: scratch)
        let result = Result(vmid: vmid, op: op, scratchVMID: scratch, volid: begin.data["volid"], passed: false, reason: Self.interrupted)
        try? journal.append(op: op, kind: Self.kind, step: "done", data: ["vmid": "\(vmid)", "passed": "0", "reason": Self.interrupted])
        return result
    }

    func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}
