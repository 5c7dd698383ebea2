import FelhomCore
import FelhomHubClient
import Foundation
import Logging
import Proxmox

/// How the agent backs its guests up (config `backup.*`).
public struct BackupSettings: Sendable {
    /// The fingerprint of this box's PBS encryption key (`backup.key_fingerprint`, or computed
    /// from `backup.key_file`).
    public var boxKey: String
    /// How long a due guest's controller has to call `POST /backup` before the agent backs the
    /// guest up itself, crash-consistent (`backup.app_bound_seconds`, default 900).
    public var appBound: TimeInterval
    /// The longest a vzdump task may run.
    public var taskTimeout: Duration
    /// The zone of `storage_policy.backup_hour` and of the daily window.
    public var timeZone: TimeZone

    public init(boxKey: String, appBound: TimeInterval = 900, taskTimeout: Duration = .seconds(6 * 3600), timeZone: TimeZone = .current) {
        self.boxKey = boxKey
        self.appBound = appBound
        self.taskTimeout = taskTimeout
        self.timeZone = timeZone
    }
}

/// How the agent runs restore tests (config `restore_test.*`).
public struct RestoreTestSettings: Sendable {
    /// Runs the fenced root commands (`pct exec` to ask the scratch guest's controller).
    public var runner: any CommandRunner
    /// A guest is restore-tested after a backup when its last test is older than this (default 7).
    public var everyDays: Int
    /// Where scratch guests' root disks go.
    public var scratchStorage: String
    /// How long the scratch guest's apps may take to run.
    public var healthTimeout: Duration

    public init(runner: any CommandRunner, everyDays: Int = 7, scratchStorage: String = "local-lvm", healthTimeout: Duration = .seconds(600)) {
        self.runner = runner
        self.everyDays = everyDays
        self.scratchStorage = scratchStorage
        self.healthTimeout = healthTimeout
    }
}

extension Agent {
    /// The daily window of `now` (the local day, `yyyy-MM-dd`) and whether the backup hour has come.
    static func backupWindow(_ now: Date, hour: Int, timeZone: TimeZone) -> (window: String, reached: Bool) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour], from: now)
        let window = String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
        return (window, (c.hour ?? 0) >= hour)
    }

    /// After each reconcile: from the backup hour on, every running, non-ephemeral guest of the
    /// desired state that has not opted out (`backup: false`) is due for today's window on
    /// `storage_policy.backup_storage`. Guests whose controller has not called within the bound
    /// are backed up crash-consistent by ``housekeeping()``.
    func backupTick(_ spec: DesiredState) {
        guard let backups, let storage = spec.storagePolicy.backupStorage, !storage.isEmpty else { return }
        let now = clock.now()
        let (window, reached) = Self.backupWindow(now, hour: spec.storagePolicy.backupHour, timeZone: backupTimeZone)
        if reached {
            let vmids = spec.guests.filter { $0.runState == .running && !$0.ephemeral && $0.backup }.map(\.vmid)
            backups.markDue(vmids, window: window, storage: storage, now: now)
        }
    }

    /// Acts once on each operator request of the desired state (`requests`): a backup request
    /// marks the guest due now (its controller quiesces; past the bound the agent backs it up
    /// crash-consistent), a restore-test request queues a restore test of its latest backup. Each
    /// id is remembered in `state_dir/requests-done.json` once it is answered durably — a backup
    /// request when its backup is journaled (or another backup of the guest answers it), a
    /// restore-test request once it is in the kept queue — so a restart never loses one; asked
    /// again after a crash, a request finds its journaled backup or its queued test and adds none.
    func actOnRequests(_ spec: DesiredState) async {
        guard !spec.requests.isEmpty, let backups, let storage = spec.storagePolicy.backupStorage, !storage.isEmpty else { return }
        var done = Self.readRequestsDone(requestsFile)
        let new = spec.requests.filter { !done.contains($0.id) }
        guard !new.isEmpty else { return }
        let now = clock.now()
        let before = done.count
        for r in new {
            switch r.kind {
            case .backup:
                switch backups.requestNow(vmid: r.vmid, id: r.id, storage: storage, now: now) {
                case .pending:
                    if !pendingRequests.withLock({ $0.insert(r.id).inserted }) { continue }  // said once; asked again next cycle
                    logger.notice("operator request \(r.id): backup of \(r.vmid) due now")
                    continue  // not answered until its backup is journaled
                case .answered:
                    if !pendingRequests.withLock({ $0.remove(r.id) != nil }) {
                        logger.notice("operator request \(r.id): backup of \(r.vmid) already due, running or done")
                    }
                }
            case .restoreTest:
                if let restoreTests {
                    restoreTests.request(vmid: r.vmid, storage: storage)
                    logger.notice("operator request \(r.id): restore test of \(r.vmid) queued")
                } else {
                    logger.warning("operator request \(r.id): restore tests are off on this box (restore_test.enabled)")
                }
            }
            done.append(r.id)
        }
        guard done.count > before else { return }
        let kept = Array(done.suffix(200))
        do throws(AppendLogError) {
            try DurableFile.write(Array((try? JSONEncoder().encode(kept)) ?? Data("[]".utf8)), to: requestsFile, mode: 0o600)
        } catch {
            logger.warning("cannot record the operator requests acted on: \(error.message)")
        }
    }

    static func readRequestsDone(_ path: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return (try? JSONDecoder().decode([String].self, from: data)) ?? []
    }

    /// Says again the backup and restore-test outcomes of the last day that the hub has not taken
    /// (a kill between the journal's end and the post, or a hub away at that moment); the hub
    /// keeps the first of each (idempotency key). See ``OutcomeLedger``.
    func resendOutcomes() async {
        let now = clock.now()
        if backups != nil {
            for (op, entries) in backupOutcomes.undelivered(journal, kind: BackupRunner.kind, now: now) {
                guard let result = BackupRunner.finished(op: op, entries: entries) else { continue }
                await Self.report(result, hub: hub, logger: logger, ledger: backupOutcomes, at: entries.last?.at)
            }
        }
        if let restoreTests {
            for (op, entries) in restoreTests.outcomes.undelivered(journal, kind: RestoreTester.kind, now: now) {
                guard let (at, result) = RestoreTests.finished(op: op, entries: entries) else { continue }
                await RestoreTests.report(result, hub: hub, logger: logger, ledger: restoreTests.outcomes, at: at)
            }
        }
    }

    /// One backup's outcome as an event to the hub: `backup_completed`, `backup_unencrypted`
    /// (critical: stored without this box's encryption, counted as failed) or `backup_failed`
    /// with the reason code. Posted with the op's idempotency key; `ledger` remembers that the
    /// hub took it, `at` is when it happened (an outcome said again).
    static func report(_ result: BackupRunner.Result, hub: HubClient, logger: Logger, ledger: OutcomeLedger, at: Date? = nil) async {
        var data: [String: JSONValue] = [
            "vmid": .int(Int64(result.vmid)), "consistency": .string(result.consistency.rawValue),
            "duration_seconds": .int(Int64(result.seconds.rounded())),
        ]
        let type: String
        let severity: HubEvent.Severity
        if let failure = result.failure {
            type = failure.code == .unencrypted ? "backup_unencrypted" : "backup_failed"
            severity = .critical
            data["reason"] = .string(failure.code.rawValue)
            data["message"] = .string(String(failure.message.prefix(300)))
        } else {
            guard !result.alreadyDone else { return }
            type = "backup_completed"
            severity = .info
            if let v = result.volid { data["volid"] = .string(v) }
            if let size = result.size { data["size"] = .int(size) }
            if let e = result.encrypted { data["encrypted"] = .string(e) }
        }
        let key = OutcomeLedger.key(op: result.op)
        do {
            try await hub.postEvent(type: type, severity: severity, data: .object(data), idempotencyKey: key, at: at)
            ledger.markDelivered(key)
        } catch {
            logger.warning("cannot post \(type) for \(result.vmid) to the hub (said again next cycle): \(error)")
        }
    }

    /// The host report's `backups` and `restore_tests`, from the journal (so they survive a
    /// restart): per guest the last backup success and failure, and the last restore test.
    public func protectionRecords() -> (backups: [BackupRecord], restoreTests: [RestoreTestRecord]) {
        var backups: [Int: BackupRecord] = [:]
        for (_, entries) in journal.allOperations() where entries.first?.kind == BackupRunner.kind {
            guard let end = entries.last, end.isTerminal, let vmid = end.data["vmid"].flatMap(Int.init) else { continue }
            var r = backups[vmid] ?? BackupRecord(vmid: vmid)
            if end.step == "done", (r.lastSuccessAt ?? .distantPast) <= end.at {
                r.lastSuccessAt = end.at
                r.volid = end.data["volid"]
                r.consistency = end.data["consistency"]
                r.encrypted = end.data["encrypted"].flatMap { $0.isEmpty ? nil : $0 }
                r.verification = end.data["verification"].flatMap { $0.isEmpty ? nil : $0 }
            } else if end.step == "failed", (r.lastFailureAt ?? .distantPast) <= end.at {
                r.lastFailureAt = end.at
                r.lastFailureReason = end.data["reason"]
            }
            backups[vmid] = r
        }
        let tests = RestoreTests.fromJournal(journal).map { vmid, last in
            RestoreTestRecord(
                vmid: vmid, at: last.at, passed: last.result.passed, volid: last.result.volid, reason: last.result.reason,
                restoreSeconds: last.result.restoreSeconds, healthySeconds: last.result.healthySeconds)
        }
        return (backups.values.sorted { $0.vmid < $1.vmid }, tests.sorted { $0.vmid < $1.vmid })
    }

    /// What the backup storage of the last desired state holds, newest first, at most 10 per
    /// guest (`pbs_snapshots`). Unreadable (PBS down): empty, and the reason logged.
    func storedBackups() async -> [PBSSnapshotRecord] {
        guard let storage = state.withLock({ $0.lastSpec?.storagePolicy.backupStorage }), !storage.isEmpty else { return [] }
        let content: [PVEStorageContent]
        do { content = try await pve.storageContent(node: node, storage: storage, content: "backup", vmid: nil) } catch {
            logger.warning("cannot list the backups on \(storage): \(error)")
            return []
        }
        var perGuest: [Int: Int] = [:]
        return content.filter { $0.vmid != nil }.sorted { ($0.ctime ?? 0, $0.volid) > ($1.ctime ?? 0, $1.volid) }.compactMap { c in
            guard let vmid = c.vmid, (100...999_999_999).contains(vmid) else { return nil }
            perGuest[vmid, default: 0] += 1
            guard perGuest[vmid, default: 0] <= 10 else { return nil }
            return PBSSnapshotRecord(
                vmid: vmid, volid: c.volid, at: c.ctime.map { Date(timeIntervalSince1970: TimeInterval($0)) }, size: max(0, c.size),
                encrypted: c.encrypted, verification: c.verificationState)
        }
    }

    /// The last 50 finished operations of the journal, newest first (`audit_tail`).
    public func auditTail() -> [AuditRecord] {
        journal.allOperations().compactMap { op, entries -> AuditRecord? in
            guard let first = entries.first, let last = entries.last, last.isTerminal else { return nil }
            let outcome = last.step == "done" ? "done" : "failed"
            let reason = last.data["reason"].flatMap { $0.isEmpty ? nil : String(Agent.reportable($0).prefix(300)) }
            return AuditRecord(at: last.at, op: op, kind: first.kind, outcome: outcome, detail: outcome == "failed" ? reason : nil)
        }
        .sorted { ($0.at, $0.op) > ($1.at, $1.op) }
        .prefix(50).map { $0 }
    }
}
