import FelhomCore
import Foundation
import Proxmox

/// One backup of one guest to the encrypted PBS target, through the per-guest queue and journaled
/// (kind `backup`, op `backup-<vmid>-<window>`: at most one backup per guest per window, even
/// across a crash). The target is checked first and the stored entry after (``BackupChecks``):
/// nothing unencrypted, under another key, or unverified counts as a success.
public struct BackupRunner: Sendable {
    /// Whether the controller quiesced the apps (`app`) or the agent backed up the running guest
    /// (`crash`).
    public enum Consistency: String, Codable, Sendable { case app, crash }

    /// What one backup did.
    public struct Result: Sendable, Equatable {
        public var vmid: Int
        public var op: String
        public var consistency: Consistency
        public var volid: String?
        public var size: Int64?
        public var seconds: Double
        public var encrypted: String?
        public var verification: String?
        /// Why it failed; nil on success.
        public var failure: BackupError?
        /// True when this window's backup had already been done (nothing ran).
        public var alreadyDone = false
    }

    public static let kind = "backup"

    let pve: any PVEAPI
    let node: String
    let queue: GuestQueue
    let journal: Journal
    let storage: String
    let boxKey: String
    let taskTimeout: Duration
    let log: @Sendable (String) -> Void

    public init(
        pve: any PVEAPI, node: String, queue: GuestQueue, journal: Journal, storage: String, boxKey: String, taskTimeout: Duration = .seconds(3600),
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.pve = pve
        self.node = node
        self.queue = queue
        self.journal = journal
        self.storage = storage
        self.boxKey = boxKey
        self.taskTimeout = taskTimeout
        self.log = log
    }

    /// The journal key of `vmid`'s backup in `window` (e.g. the local day `2026-11-30`).
    public static func op(vmid: Int, window: String) -> String { "backup-\(vmid)-\(window)" }

    /// Backs `vmid` up once for `window`, to `target` (default: the runner's storage).
    public func run(vmid: Int, window: String, consistency: Consistency, target: String? = nil) async -> Result {
        let storage = target ?? self.storage
        let op = Self.op(vmid: vmid, window: window)
        let started = ContinuousClock.now
        var result = Result(vmid: vmid, op: op, consistency: consistency, seconds: 0)
        if let last = journal.entries(of: op).last, last.isTerminal, last.step == "done" {
            result.alreadyDone = true
            result.volid = last.data["volid"]
            return result
        }
        await conclude(&result, how: "done") {
            try await self.queue.run(vmid: vmid) { () async throws -> PVEStorageContent in
                try await self.backUp(vmid: vmid, op: op, consistency: consistency, storage: storage)
            }
        }
        result.seconds =
            Double((ContinuousClock.now - started).components.seconds)
            + Double((ContinuousClock.now - started).components.attoseconds) / 1e18
        return result
    }

    func backUp(vmid: Int, op: String, consistency: Consistency, storage: String) async throws -> PVEStorageContent {
        let config = try await pve.storages().first { $0.storage == storage }
        let status = try await pve.nodeStorages(node: node).first { $0.storage == storage }
        let guest = try await pve.containerStatus(node: node, vmid: vmid)
        // PBS deduplicates: a first backup needs at most the guest's used disk; ask for that.
        try BackupChecks.target(storage, config: config, status: status, boxKey: boxKey, neededBytes: guest.disk ?? 0)
        let before = Set(try await pve.storageContent(node: node, storage: storage, content: "backup", vmid: vmid).map(\.volid))
        try journal.append(
            op: op, kind: Self.kind, step: "begin", data: ["vmid": "\(vmid)", "storage": storage, "consistency": consistency.rawValue])
        Failpoint.hit("backup.after_begin")
        var options = VzdumpOptions(vmids: [vmid], storage: storage)
        options.mode = "snapshot"
        guard let upid = try await pve.vzdump(node: node, options).upid else {
            throw BackupError(.badTarget, "guest \(vmid) is not on node \(node): nothing was backed up")
        }
        try journal.append(op: op, kind: Self.kind, step: "vzdump", data: ["vmid": "\(vmid)", "upid": upid.description])
        Failpoint.hit("backup.after_vzdump_started")
        _ = try await pve.waitTask(upid, timeout: taskTimeout)
        Failpoint.hit("backup.after_task")
        return try await newEntry(vmid: vmid, storage: storage) { !before.contains($0.volid) }
    }

    /// The newest backup of `vmid` on `storage` that `isNew` accepts, checked.
    func newEntry(vmid: Int, storage: String, _ isNew: (PVEStorageContent) -> Bool) async throws -> PVEStorageContent {
        let after = try await pve.storageContent(node: node, storage: storage, content: "backup", vmid: vmid)
        guard let entry = after.filter(isNew).max(by: { ($0.ctime ?? 0) < ($1.ctime ?? 0) }) else {
            throw BackupError(.taskFailed, "the backup task of \(vmid) ended but no new backup is listed on \(storage)")
        }
        try BackupChecks.stored(entry, boxKey: boxKey)
        return entry
    }

    /// Finishes a backup a crash left in flight (at start-up): with its vzdump task recorded, waits
    /// for that task and checks what it stored (done, or failed with the reason); without one
    /// (killed before vzdump started) it is failed as interrupted — retried in the next window,
    /// never run twice in this one. Killed after asking for vzdump but before journaling its UPID,
    /// the task is found in PVE's task list (a `vzdump` of this guest by the agent's own token,
    /// started no earlier than `begin`), journaled, and finished like a recorded one — so a backup
    /// PVE made is never left unrecorded.
    public func resume(op: String, entries: [JournalEntry]) async -> Result? {
        guard let begin = entries.first(where: { $0.step == "begin" }) ?? entries.first, let vmid = begin.data["vmid"].flatMap(Int.init) else {
            return nil
        }
        let consistency = begin.data["consistency"].flatMap(Consistency.init(rawValue:)) ?? .crash
        var result = Result(vmid: vmid, op: op, consistency: consistency, seconds: 0)
        var recorded = entries.last(where: { $0.step == "vzdump" })?.data["upid"]
        if recorded == nil, begin.step == "begin" {
            if let found = await pve.ownTask(node: node, vmid: vmid, type: "vzdump", since: begin.at) {
                try? journal.append(
                    op: op, kind: Self.kind, step: "vzdump", data: ["vmid": "\(vmid)", "upid": found.description, "found": "task list"])
                recorded = found.description
            }
        }
        await conclude(&result, how: "finished after a restart") {
            guard let storage = begin.data["storage"], let text = recorded else {
                throw BackupError(.taskFailed, "interrupted before the backup task started")
            }
            let upid = try UPID(parsing: text)
            return try await self.queue.run(vmid: vmid) { () async throws -> PVEStorageContent in
                _ = try await self.pve.waitTask(upid, timeout: self.taskTimeout)
                let since = Int64(begin.at.timeIntervalSince1970) - 1
                return try await self.newEntry(vmid: vmid, storage: storage) { ($0.ctime ?? 0) >= since }
            }
        }
        return result
    }

    /// Runs `body` (which yields the stored, checked entry) and journals the end: `done` with what
    /// was stored, or `failed` with the reason code (a PVE error or anything else mapped to one).
    func conclude(_ result: inout Result, how: String, _ body: () async throws -> PVEStorageContent) async {
        let (vmid, op, consistency) = (result.vmid, result.op, result.consistency)
        do {
            let stored = try await body()
            result.volid = stored.volid
            result.size = stored.size
            result.encrypted = stored.encrypted
            result.verification = stored.verificationState
            try? journal.append(
                op: op, kind: Self.kind, step: "done",
                data: [
                    "vmid": "\(vmid)", "volid": stored.volid, "consistency": consistency.rawValue, "encrypted": stored.encrypted ?? "",
                    "verification": stored.verificationState ?? "", "size": "\(stored.size)",
                ])
            log("backup of \(vmid) \(how): \(stored.volid) (\(consistency.rawValue)-consistent)")
        } catch let error as BackupError {
            result.failure = error
        } catch let error as PVEError {
            result.failure = BackupError(error.code == .taskFailed ? .taskFailed : .storageUnreachable, error.message)
        } catch {
            result.failure = BackupError(.taskFailed, "\(error)")
        }
        if let failure = result.failure {
            try? journal.append(
                op: op, kind: Self.kind, step: "failed",
                data: ["vmid": "\(vmid)", "reason": failure.code.rawValue, "message": String(failure.message.prefix(300))])
            log("backup of \(vmid) FAILED: \(failure)")
        }
    }

    /// A finished backup's result rebuilt from its journal entries (to say its outcome again);
    /// nil while it is in flight. The duration is from its first entry to its last.
    public static func finished(op: String, entries: [JournalEntry]) -> Result? {
        guard let first = entries.first, let end = entries.last, end.isTerminal, let vmid = end.data["vmid"].flatMap(Int.init) else {
            return nil
        }
        let consistency = (end.data["consistency"] ?? first.data["consistency"]).flatMap(Consistency.init(rawValue:)) ?? .crash
        var r = Result(vmid: vmid, op: op, consistency: consistency, seconds: max(0, end.at.timeIntervalSince(first.at)))
        if end.step == "done" {
            r.volid = end.data["volid"]
            r.size = end.data["size"].flatMap(Int64.init)
            r.encrypted = end.data["encrypted"].flatMap { $0.isEmpty ? nil : $0 }
            r.verification = end.data["verification"].flatMap { $0.isEmpty ? nil : $0 }
        } else {
            let code = end.data["reason"].flatMap(BackupError.Code.init(rawValue:)) ?? .taskFailed
            r.failure = BackupError(code, end.data["message"] ?? "(said again after a restart: the message was not kept)")
        }
        return r
    }

    /// Whether this window's backup of `vmid` already ran to an end (done or failed).
    public func tried(vmid: Int, window: String) -> Bool { journal.isFinished(Self.op(vmid: vmid, window: window)) }
}
