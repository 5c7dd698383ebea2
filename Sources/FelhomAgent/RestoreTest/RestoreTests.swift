import FelhomCore
import FelhomHubClient
import Foundation
import Logging
import Synchronization

/// When restore tests run, and what the last one of each guest said: after a guest's successful
/// backup, when its last restore test is older than `everyDays` (default weekly), or when asked
/// (`runNow`). One at a time (a scratch guest costs space and memory). Each outcome goes to the
/// hub as `restore_test_passed` / `restore_test_failed`. The last results survive a restart: they
/// are read back from the journal. So does the queue (`state_dir/restore-tests-queued.json`): a
/// test asked for — by the operator or after a backup — stays queued until its journal says it ran;
/// one a restart interrupted runs again under a new id; one that finished is never run twice.
public final class RestoreTests: Sendable {
    /// One queued test; `id` names its journal operation (``RestoreTester/op(vmid:id:)``).
    struct Queued: Codable, Equatable {
        var vmid: Int
        var storage: String
        var id: String
    }
    public struct Last: Sendable, Equatable {
        public var at: Date
        public var result: RestoreTester.Result
    }
    struct State {
        var last: [Int: Last] = [:]
        var queued: [Queued] = []
        /// The test running now (kept in the queue file until it is done).
        var current: Queued?
        var running = false
        /// A queue read back at start-up waits for ``resumeQueued()`` (after the journal's
        /// interrupted tests are closed).
        var held = false
    }

    public let tester: RestoreTester
    let everyDays: Int
    let hub: HubClient?
    /// Restore-test outcomes the hub has taken (the rest are said again).
    public let outcomes = OutcomeLedger()
    let logger: Logger
    let state = Mutex(State())
    /// Where the queue is kept (nil: in memory only).
    let queueFile: String?

    public init(tester: RestoreTester, everyDays: Int = 7, hub: HubClient?, logger: Logger, queueFile: String? = nil) {
        self.tester = tester
        self.everyDays = max(1, everyDays)
        self.hub = hub
        self.logger = logger
        self.queueFile = queueFile
        let kept: [Queued] =
            queueFile.flatMap { FileManager.default.contents(atPath: $0) }.flatMap { try? JSONDecoder().decode([Queued].self, from: $0) } ?? []
        state.withLock {
            $0.last = Self.fromJournal(tester.journal)
            $0.queued = kept
            $0.held = !kept.isEmpty
        }
        if !kept.isEmpty { logger.notice("\(kept.count) restore test(s) still queued from before the restart") }
    }

    /// Starts the queue read back at start-up; call after the journal's interrupted tests are
    /// closed (``RestoreTester/resume(op:entries:)``).
    public func resumeQueued() {
        state.withLock { $0.held = false }
        kick()
    }

    /// Writes the queue (the running test first) durably; a failure is logged, the queue kept in memory.
    func persist(_ s: State) {
        guard let queueFile else { return }
        let all = (s.current.map { [$0] } ?? []) + s.queued
        do throws(AppendLogError) {
            try DurableFile.write(Array((try? JSONEncoder().encode(all)) ?? Data("[]".utf8)), to: queueFile, mode: 0o600)
        } catch {
            logger.warning("cannot record the queued restore tests: \(error.message)")
        }
    }

    /// A journal id for a new test: the time and a random tail (two tests in one second differ).
    static func newID() -> String { "\(Int(Date().timeIntervalSince1970))-\(String(UInt16.random(in: .min ... .max), radix: 16))" }

    /// The last finished restore test per guest, from the journal's `done` records.
    static func fromJournal(_ journal: Journal) -> [Int: Last] {
        var out: [Int: Last] = [:]
        for (op, entries) in journal.allOperations() where entries.first?.kind == RestoreTester.kind {
            guard let (at, r) = finished(op: op, entries: entries) else { continue }
            if (out[r.vmid]?.at ?? .distantPast) <= at { out[r.vmid] = Last(at: at, result: r) }
        }
        return out
    }

    /// A finished restore test rebuilt from its journal entries, with when it ended; nil before its `done`.
    static func finished(op: String, entries: [JournalEntry]) -> (at: Date, result: RestoreTester.Result)? {
        guard let done = entries.last(where: { $0.step == "done" }), let vmid = done.data["vmid"].flatMap(Int.init) else { return nil }
        let begin = entries.first
        var r = RestoreTester.Result(
            vmid: vmid, op: op, scratchVMID: begin?.data["scratch"].flatMap(Int.init), volid: begin?.data["volid"],
            passed: done.data["passed"] == "1",
            reason: done.data["reason"].flatMap { $0.isEmpty ? nil : $0 })
        r.restoreSeconds = done.data["restore_seconds"].flatMap(Double.init)
        r.healthySeconds = done.data["healthy_seconds"].flatMap(Double.init)
        return (done.at, r)
    }

    /// The last restore test of `vmid`.
    public func last(vmid: Int) -> Last? { state.withLock { $0.last[vmid] } }

    /// After a backup: queues a restore test of the guest when its last one is older than the period.
    public func afterBackup(_ backup: BackupRunner.Result, now: Date = Date()) {
        guard backup.failure == nil, !backup.alreadyDone, let volid = backup.volid, let storage = volid.split(separator: ":").first else { return }
        let due = state.withLock { s -> Bool in
            guard !s.queued.contains(where: { $0.vmid == backup.vmid }), s.current?.vmid != backup.vmid else { return false }
            guard let last = s.last[backup.vmid] else { return true }
            return now.timeIntervalSince(last.at) >= Double(everyDays) * 86_400
        }
        if due { enqueue(backup.vmid, String(storage)) }
    }

    /// At start-up: a backup whose restore test a restart lost (killed after the backup's `done`,
    /// before the test was queued) gets it now — for each guest, its newest finished backup of the
    /// last period, when the guest's last test is older than that backup and than the period.
    public func afterRestart(now: Date = Date()) {
        var newest: [Int: (at: Date, storage: String)] = [:]
        for (_, entries) in tester.journal.allOperations() where entries.first?.kind == BackupRunner.kind {
            guard let done = entries.last, done.step == "done", let vmid = done.data["vmid"].flatMap(Int.init),
                let storage = done.data["volid"]?.split(separator: ":").first, (newest[vmid]?.at ?? .distantPast) < done.at
            else { continue }
            newest[vmid] = (done.at, String(storage))
        }
        let period = Double(everyDays) * 86_400
        for (vmid, backup) in newest.sorted(by: { $0.key < $1.key }) where now.timeIntervalSince(backup.at) < period {
            let due = state.withLock { s -> Bool in
                guard !s.queued.contains(where: { $0.vmid == vmid }), s.current?.vmid != vmid else { return false }
                guard let last = s.last[vmid] else { return true }
                return last.at < backup.at && now.timeIntervalSince(last.at) >= period
            }
            if due {
                logger.notice("restore test of \(vmid) after its backup of \(backup.at): queued after a restart")
                request(vmid: vmid, storage: backup.storage)
            }
        }
    }

    /// An operator's request: queues a restore test of `vmid`'s latest backup on `storage`
    /// (once: a guest already queued is not queued again).
    public func request(vmid: Int, storage: String) {
        let added = state.withLock { s -> Bool in
            guard !s.queued.contains(where: { $0.vmid == vmid }) else { return false }
            s.queued.append(Queued(vmid: vmid, storage: storage, id: Self.newID()))
            persist(s)
            return true
        }
        if added { kick() }
    }

    /// Runs a restore test of `vmid` now (after any running one) and returns its result.
    public func runNow(vmid: Int, storage: String) async -> RestoreTester.Result {
        while state.withLock({ s in
            if s.running { return true }
            s.running = true
            return false
        }) { try? await Task.sleep(for: .milliseconds(100)) }
        let result = await runOne(vmid: vmid, storage: storage)
        state.withLock { $0.running = false }
        kick()
        return result
    }

    /// Waits until no restore test runs or waits.
    public func drain() async {
        while state.withLock({ $0.running || (!$0.queued.isEmpty && !$0.held) }) { try? await Task.sleep(for: .milliseconds(50)) }
    }

    /// Queues a test of `vmid` durably (the queue file is written before this returns).
    func enqueue(_ vmid: Int, _ storage: String) {
        state.withLock { s in
            s.queued.append(Queued(vmid: vmid, storage: storage, id: Self.newID()))
            persist(s)
        }
        kick()
    }

    /// Starts the worker when nothing runs. A queued test whose journal operation finished already
    /// (the restart came after its `done`) is dropped; one a restart interrupted gets a new id.
    func kick() {
        let next = state.withLock { s -> Queued? in
            guard !s.running, !s.held else { return nil }
            while var q = s.queued.first {
                s.queued.removeFirst()
                let entries = tester.journal.entries(of: RestoreTester.op(vmid: q.vmid, id: q.id))
                if let last = entries.last {
                    guard last.step == "done", last.data["reason"] == RestoreTester.interrupted else {
                        persist(s)
                        continue  // it ran (or a restart is closing it): never twice
                    }
                    q.id = Self.newID()
                }
                s.running = true
                s.current = q
                persist(s)
                return q
            }
            return nil
        }
        guard let next else { return }
        Task {
            let result = await self.tester.run(vmid: next.vmid, backupStorage: next.storage, id: next.id)
            self.state.withLock { s in
                s.last[next.vmid] = Last(at: Date(), result: result)
                s.current = nil
                self.persist(s)  // before the report: an event at most once, the journal holds the result
            }
            await Self.report(result, hub: self.hub, logger: self.logger, ledger: self.outcomes)
            self.state.withLock { $0.running = false }
            self.kick()
        }
    }

    func runOne(vmid: Int, storage: String) async -> RestoreTester.Result {
        let result = await tester.run(vmid: vmid, backupStorage: storage, id: Self.newID())
        state.withLock { $0.last[vmid] = Last(at: Date(), result: result) }
        await Self.report(result, hub: hub, logger: logger, ledger: outcomes)
        return result
    }

    /// `restore_test_passed` (times, stacks) or `restore_test_failed` (the reason) to the hub.
    /// One restore test's outcome as an event to the hub, with the op's idempotency key; `ledger`
    /// remembers that the hub took it, `at` is when it happened (an outcome said again).
    static func report(_ r: RestoreTester.Result, hub: HubClient?, logger: Logger, ledger: OutcomeLedger, at: Date? = nil) async {
        guard let hub else { return }
        var data: [String: JSONValue] = ["vmid": .int(Int64(r.vmid))]
        if let v = r.volid { data["volid"] = .string(v) }
        if let s = r.restoreSeconds { data["restore_seconds"] = .double((s * 10).rounded() / 10) }
        if let s = r.healthySeconds { data["healthy_seconds"] = .double((s * 10).rounded() / 10) }
        data["stacks"] = .int(Int64(r.stacks.count))
        if let reason = r.reason { data["reason"] = .string(String(reason.prefix(300))) }
        let type = r.passed ? "restore_test_passed" : "restore_test_failed"
        let key = OutcomeLedger.key(op: r.op)
        do {
            try await hub.postEvent(type: type, severity: r.passed ? .info : .critical, data: .object(data), idempotencyKey: key, at: at)
            ledger.markDelivered(key)
        } catch {
            logger.warning("cannot post \(type) for \(r.vmid) to the hub (said again next cycle): \(error)")
        }
    }

    /// The guest's last restore test as the local API shows it (`GET /restore-test/status`).
    public func statusJSON(vmid: Int) -> JSONValue {
        guard let last = last(vmid: vmid) else { return .object(["status": "idle"]) }
        var o: [String: JSONValue] = [
            "status": .string(last.result.passed ? "passed" : "failed"), "at": .string(ISO8601DateFormatter().string(from: last.at)),
        ]
        if let v = last.result.volid { o["volid"] = .string(v) }
        if let r = last.result.reason { o["reason"] = .string(r) }
        if let s = last.result.restoreSeconds { o["restore_seconds"] = .double(s) }
        if let s = last.result.healthySeconds { o["healthy_seconds"] = .double(s) }
        return .object(o)
    }
}
