import FelhomCore
import FelhomHubClient
import Foundation
import Logging
import Synchronization

/// When restore tests run, and what the last one of each guest said: after a guest's successful
/// backup, when its last restore test is older than `everyDays` (default weekly), or when asked
/// (`runNow`). One at a time (a scratch guest costs space and memory). Each outcome goes to the
/// hub as `restore_test_passed` / `restore_test_failed`. The last results survive a restart: they
/// are read back from the journal.
public final class RestoreTests: Sendable {
    public struct Last: Sendable, Equatable {
        public var at: Date
        public var result: RestoreTester.Result
    }
    struct State {
        var last: [Int: Last] = [:]
        var queued: [(vmid: Int, storage: String)] = []
        var running = false
    }

    public let tester: RestoreTester
    let everyDays: Int
    let hub: HubClient?
    let logger: Logger
    let state = Mutex(State())

    public init(tester: RestoreTester, everyDays: Int = 7, hub: HubClient?, logger: Logger) {
        self.tester = tester
        self.everyDays = max(1, everyDays)
        self.hub = hub
        self.logger = logger
        state.withLock { $0.last = Self.fromJournal(tester.journal) }
    }

    /// The last finished restore test per guest, from the journal's `done` records.
    static func fromJournal(_ journal: Journal) -> [Int: Last] {
        var out: [Int: Last] = [:]
        for (op, entries) in journal.allOperations() where entries.first?.kind == RestoreTester.kind {
            guard let done = entries.last(where: { $0.step == "done" }), let vmid = done.data["vmid"].flatMap(Int.init) else { continue }
            let begin = entries.first
            var r = RestoreTester.Result(
                vmid: vmid, op: op, scratchVMID: begin?.data["scratch"].flatMap(Int.init), volid: begin?.data["volid"],
                passed: done.data["passed"] == "1",
                reason: done.data["reason"].flatMap { $0.isEmpty ? nil : $0 })
            r.restoreSeconds = done.data["restore_seconds"].flatMap(Double.init)
            r.healthySeconds = done.data["healthy_seconds"].flatMap(Double.init)
            if (out[vmid]?.at ?? .distantPast) <= done.at { out[vmid] = Last(at: done.at, result: r) }
        }
        return out
    }

    /// The last restore test of `vmid`.
    public func last(vmid: Int) -> Last? { state.withLock { $0.last[vmid] } }

    /// After a backup: queues a restore test of the guest when its last one is older than the period.
    public func afterBackup(_ backup: BackupRunner.Result, now: Date = Date()) {
        guard backup.failure == nil, !backup.alreadyDone, let volid = backup.volid, let storage = volid.split(separator: ":").first else { return }
        let due = state.withLock { s -> Bool in
            guard !s.queued.contains(where: { $0.vmid == backup.vmid }) else { return false }
            guard let last = s.last[backup.vmid] else { return true }
            return now.timeIntervalSince(last.at) >= Double(everyDays) * 86_400
        }
        if due { enqueue(backup.vmid, String(storage)) }
    }

    /// An operator's request: queues a restore test of `vmid`'s latest backup on `storage`
    /// (once: a guest already queued is not queued again).
    public func request(vmid: Int, storage: String) {
        let queued = state.withLock { s in s.queued.contains { $0.vmid == vmid } }
        if !queued { enqueue(vmid, storage) }
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
        while state.withLock({ $0.running || !$0.queued.isEmpty }) { try? await Task.sleep(for: .milliseconds(50)) }
    }

    func enqueue(_ vmid: Int, _ storage: String) {
        state.withLock { $0.queued.append((vmid, storage)) }
        kick()
    }

    /// Starts the worker when nothing runs.
    func kick() {
        let next = state.withLock { s -> (Int, String)? in
            guard !s.running, !s.queued.isEmpty else { return nil }
            s.running = true
            return s.queued.removeFirst()
        }
        guard let (vmid, storage) = next else { return }
        Task {
            _ = await self.runOne(vmid: vmid, storage: storage)
            self.state.withLock { $0.running = false }
            self.kick()
        }
    }

    func runOne(vmid: Int, storage: String) async -> RestoreTester.Result {
        let id = String(Int(Date().timeIntervalSince1970))
        let result = await tester.run(vmid: vmid, backupStorage: storage, id: id)
        state.withLock { $0.last[vmid] = Last(at: Date(), result: result) }
        await Self.report(result, hub: hub, logger: logger)
        return result
    }

    /// `restore_test_passed` (times, stacks) or `restore_test_failed` (the reason) to the hub.
    static func report(_ r: RestoreTester.Result, hub: HubClient?, logger: Logger) async {
        guard let hub else { return }
        var data: [String: JSONValue] = ["vmid": .int(Int64(r.vmid))]
        if let v = r.volid { data["volid"] = .string(v) }
        if let s = r.restoreSeconds { data["restore_seconds"] = .double((s * 10).rounded() / 10) }
        if let s = r.healthySeconds { data["healthy_seconds"] = .double((s * 10).rounded() / 10) }
        data["stacks"] = .int(Int64(r.stacks.count))
        if let reason = r.reason { data["reason"] = .string(String(reason.prefix(300))) }
        let type = r.passed ? "restore_test_passed" : "restore_test_failed"
        do { try await hub.postEvent(type: type, severity: r.passed ? .info : .critical, data: .object(data)) } catch {
            logger.warning("cannot post \(type) for \(r.vmid) to the hub: \(error)")
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
