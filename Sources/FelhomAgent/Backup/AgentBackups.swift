import FelhomCore
import Foundation
import Synchronization

/// The agent's backup coordinator and the local API's backend: the scheduler marks guests
/// **due** for a window; a guest's controller quiesces its apps and calls `POST /backup`
/// (app-consistent); a guest whose controller has not called within `appBound` is backed up by the
/// agent itself (crash-consistent, ``runOverdue(now:)``). One run per guest at a time; a run's
/// result is reported through `onFinished` (events, the host report).
public final class AgentBackups: LocalAPIBackend, Sendable {
    struct Due {
        var window: String
        var since: Date
        var storage: String?
    }
    struct State {
        var due: [Int: Due] = [:]
        var runs: [Int: [BackupRun]] = [:]
        var running: Set<Int> = []
        var results: [Int: BackupRunner.Result] = [:]
    }

    let runner: BackupRunner
    let appBound: TimeInterval
    let onFinished: @Sendable (BackupRunner.Result) async -> Void
    /// Runs after an app-consistent backup succeeded, while the controller still holds the apps
    /// quiesced (it resumes them when it sees the run done): the volume snapshots' LVs.
    let whileQuiesced: (@Sendable (Int) async -> Void)?
    let state = Mutex(State())

    public init(
        runner: BackupRunner, appBound: TimeInterval = 900, onFinished: @escaping @Sendable (BackupRunner.Result) async -> Void = { _ in },
        whileQuiesced: (@Sendable (Int) async -> Void)? = nil
    ) {
        self.runner = runner
        self.appBound = appBound
        self.whileQuiesced = whileQuiesced
        self.onFinished = onFinished
    }

    /// Whether guest `vmid` has a backup due or running (its app-consistent moment may come).
    public func awaitingBackup(vmid: Int) -> Bool { state.withLock { $0.due[vmid] != nil || $0.running.contains(vmid) } }

    /// Marks `vmids` due for `window`; a guest already tried in that window is not marked again
    /// (a failure is retried in the next window, never in a loop).
    public func markDue(_ vmids: [Int], window: String, storage: String? = nil, now: Date = Date()) {
        state.withLock { s in
            for vmid in vmids
            where s.due[vmid]?.window != window && s.results[vmid]?.op != BackupRunner.op(vmid: vmid, window: window)
                && !runner.tried(vmid: vmid, window: window)
            {
                s.due[vmid] = Due(window: window, since: now, storage: storage)
            }
        }
    }

    /// Where an operator's backup request stands (``requestNow(vmid:id:storage:now:)``).
    public enum RequestState: Sendable, Equatable {
        /// Due now in the request's own window, held in memory only: a restart forgets it, so the
        /// request is not yet answered.
        case pending
        /// Answered durably: its backup is journaled (finished or in flight, which a restart
        /// finishes), or another backup of the guest, due or running, answers it (a daily one is
        /// marked again after a restart).
        case answered
    }

    /// An operator's request (`id`): `vmid` is due now in the request's own window, unless a
    /// backup of it is already due or running (that one answers the request). Asked again for the
    /// same request (every cycle until answered), it says where the request stands.
    @discardableResult
    public func requestNow(vmid: Int, id: String, storage: String?, now: Date = Date()) -> RequestState {
        state.withLock { s in
            if runner.journal.entries(of: BackupRunner.op(vmid: vmid, window: id)).isEmpty == false { return .answered }
            if s.due[vmid]?.window == id { return .pending }
            guard s.due[vmid] == nil, !s.running.contains(vmid) else { return .answered }
            s.due[vmid] = Due(window: id, since: now, storage: storage)
            return .pending
        }
    }

    /// The last result per guest (for the host report).
    public var lastResults: [Int: BackupRunner.Result] { state.withLock { $0.results } }

    public func backupDue(vmid: Int) async -> Bool { state.withLock { $0.due[vmid] != nil && !$0.running.contains(vmid) } }

    public func startBackup(vmid: Int) async throws(LocalAPIError) -> BackupRun {
        try start(vmid: vmid, consistency: .app)
    }

    public func backupStatus(vmid: Int, id: String?) async throws(LocalAPIError) -> BackupRun {
        let runs = state.withLock { $0.runs[vmid] ?? [] }
        guard let id else { return runs.last ?? BackupRun(id: nil, status: .idle) }
        guard let run = runs.last(where: { $0.id == id }) else { throw LocalAPIError(.notFound, "no backup run \(id) of this guest") }
        return run
    }

    /// Backs up, crash-consistent, every guest due for longer than `appBound` whose controller
    /// never called. Returns the guests started.
    @discardableResult
    public func runOverdue(now: Date = Date()) -> [Int] {
        let overdue = state.withLock { s in
            s.due.filter { vmid, due in now.timeIntervalSince(due.since) >= appBound && !s.running.contains(vmid) }.keys.sorted()
        }
        return overdue.filter { (try? start(vmid: $0, consistency: .crash)) != nil }
    }

    /// Waits until no backup runs (tests, shutdown).
    public func drain() async {
        while state.withLock({ !$0.running.isEmpty }) { try? await Task.sleep(for: .milliseconds(20)) }
    }

    func start(vmid: Int, consistency: BackupRunner.Consistency) throws(LocalAPIError) -> BackupRun {
        let (run, window, storage, isNew) = try state.withLock { (s: inout State) throws(LocalAPIError) -> (BackupRun, String, String?, Bool) in
            if s.running.contains(vmid), let current = s.runs[vmid]?.last { return (current, "", nil, false) }
            guard let due = s.due[vmid] else {
                throw LocalAPIError(.conflict, "no backup of this guest is due now (GET /backup/due)")
            }
            let run = BackupRun(id: "bk-\(vmid)-\(due.window)-\((s.runs[vmid]?.count ?? 0) + 1)", status: .running)
            s.runs[vmid, default: []].append(run)
            if (s.runs[vmid]?.count ?? 0) > 20 { s.runs[vmid]?.removeFirst() }
            s.running.insert(vmid)
            return (run, due.window, due.storage, true)
        }
        guard isNew, let id = run.id else { return run }
        let runner = self.runner
        Task {
            let result = await runner.run(vmid: vmid, window: window, consistency: consistency, target: storage)
            if consistency == .app, result.failure == nil, let whileQuiesced = self.whileQuiesced { await whileQuiesced(vmid) }
            self.state.withLock { s in
                if let i = s.runs[vmid]?.lastIndex(where: { $0.id == id }) {
                    s.runs[vmid]?[i].status = result.failure == nil ? .done : .failed
                    s.runs[vmid]?[i].volid = result.volid
                    s.runs[vmid]?[i].reason = result.failure?.code.rawValue
                }
                s.results[vmid] = result
                s.due[vmid] = nil  // done, or failed: retried in the next window
            }
            await self.onFinished(result)
            // Only now: whoever waits for the backups (drain) also sees what onFinished queued.
            self.state.withLock { _ = $0.running.remove(vmid) }
        }
        return run
    }
}
