import FelhomCore
import Foundation
import Synchronization

/// The marker a quiesce writes before it stops anything: which stacks it is about to stop. A
/// controller that finds one at start-up (it crashed mid-quiesce) restarts exactly those stacks.
public struct QuiesceMarker: Codable, Sendable, Equatable {
    public var startedAt: Date
    public var stacks: [String]
    public init(startedAt: Date, stacks: [String]) {
        self.startedAt = startedAt
        self.stacks = stacks
    }
    enum CodingKeys: String, CodingKey {
        case stacks
        case startedAt = "started_at"
    }

    public static func path(in stateDir: String) -> String { stateDir + "/quiesce-marker.json" }

    /// Writes the marker whole and durably (temporary file, fsync, rename, directory fsync), 0600.
    public func write(stateDir: String) throws(ControllerError) {
        try StateFiles.write(self, to: Self.path(in: stateDir), in: stateDir, what: "the quiesce marker")
    }

    /// The marker left in `stateDir`, if any. A marker that cannot be read is an error: the
    /// stacks it names must not be forgotten.
    public static func read(stateDir: String) throws(ControllerError) -> QuiesceMarker? {
        try StateFiles.read(QuiesceMarker.self, from: path(in: stateDir)) {
            "the quiesce marker '\(path(in: stateDir))' is damaged (\($0)); start its stacks by hand, then delete it"
        }
    }

    public static func remove(stateDir: String) {
        try? FileManager.default.removeItem(atPath: path(in: stateDir))
    }
}

/// App-consistent backups (SPEC §5): when the agent says a backup is due, stop the running app
/// stacks (never protected ones), let the agent back the guest up, and start again exactly the
/// stacks that were stopped — whatever happens: a backup that fails to start, a status that cannot
/// be read, a backup still running at `maxQuiesce`, cancellation (SIGTERM). The marker is written
/// before the first stop and removed after the last start; ``recover()`` finishes a quiesce a crash
/// interrupted. One quiesce at a time, also across processes (`state_dir/quiesce.lock`).
public struct Quiescer: Sendable {
    public struct Settings: Sendable {
        public var pollInterval: Duration
        public var maxQuiesce: Duration
        public init(pollInterval: Duration = .seconds(60), maxQuiesce: Duration = .seconds(1800)) {
            self.pollInterval = pollInterval
            self.maxQuiesce = maxQuiesce
        }
    }

    /// How a quiesce ended.
    public enum Outcome: Sendable, Equatable {
        /// No backup due.
        case notDue
        /// The backup finished (`volid` when the agent named it); stacks restarted.
        case done(volid: String?)
        /// The backup failed or could not be started or followed; stacks restarted.
        case failed(reason: String)
        /// The bound was reached; stacks restarted while the backup goes on on the agent.
        case timedOut
        /// Another quiesce is running (this process or another on the same state_dir).
        case busy
    }

    let stacks: Stacks
    let agent: any AgentLocalAPI
    let stateDir: String
    let settings: Settings
    let log: @Sendable (String) -> Void
    let running = InFlight()

    final class InFlight: Sendable {
        let flag = Mutex(false)
        func begin() -> Bool {
            flag.withLock { f in
                f
                    ? false
                    : {
                        f = true
                        return true
                    }()
            }
        }
        func end() { flag.withLock { $0 = false } }
    }

    public init(
        stacks: Stacks, agent: any AgentLocalAPI, stateDir: String, settings: Settings = Settings(),
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.stacks = stacks
        self.agent = agent
        self.stateDir = stateDir
        self.settings = settings
        self.log = log
    }

    /// Asks the agent whether a backup is due and, if so, quiesces.
    public func runIfDue() async throws(ControllerError) -> Outcome {
        guard try await agent.backupDue() else { return .notDue }
        return try await quiesce()
    }

    /// One quiesce, now. Errors before anything is stopped are thrown; once stacks are stopped,
    /// every path ends by starting them again and the outcome says how the backup went.
    public func quiesce() async throws(ControllerError) -> Outcome {
        guard running.begin() else { return .busy }
        defer { running.end() }
        try StateFiles.ensureDirectory(stateDir)
        let lock: FileLock
        do { lock = try FileLock(path: stateDir + "/quiesce.lock") } catch {
            if error.code == .held { return .busy }
            throw ControllerError(.config, error.message)
        }
        defer { lock.release() }
        if let left = try QuiesceMarker.read(stateDir: stateDir) {
            // A crash left stacks stopped: bring them back before taking new ones down.
            await restart(left.stacks)
        }

        // Deterministic order: by name. Only stacks that run (fully or partly), never protected ones.
        let toStop = try await stacks.runningNames().filter { !stacks.isProtected($0) }
        try QuiesceMarker(startedAt: Date(), stacks: toStop).write(stateDir: stateDir)
        let started = ContinuousClock.now
        var stopped: [String] = []
        let outcome = await withTaskCancellationHandler {
            await stopBackUpAndWait(toStop, stopped: &stopped, started: started)
        } onCancel: {
        }
        // Always, also when cancelled: an unstructured task is not cancelled with this one.
        let toRestart = stopped
        await Task { await restart(toRestart) }.value
        return outcome
    }

    /// Stops the stacks, starts the backup and follows it; returns how it went. Cancellation ends
    /// the wait early (the caller restarts).
    private func stopBackUpAndWait(_ names: [String], stopped: inout [String], started: ContinuousClock.Instant) async -> Outcome {
        for name in names {
            do {
                try await stacks.stop(name)
                stopped.append(name)
                log("quiesce: stopped \(name)")
            } catch {
                stopped.append(name)  // partly stopped is still restarted
                return .failed(reason: "cannot stop \(name): \(error.message)")
            }
            if Task.isCancelled { return .failed(reason: "cancelled") }
        }
        let runID: String
        do {
            let run = try await agent.startBackup()
            runID = run.id ?? ""
            log("quiesce: backup \(runID) started")
        } catch {
            return .failed(reason: "backup did not start: \(error.message)")
        }
        while true {
            if ContinuousClock.now - started >= settings.maxQuiesce {
                log("quiesce: still running after \(settings.maxQuiesce); restarting the stacks, the backup goes on")
                return .timedOut
            }
            do {
                try await Task.sleep(for: min(settings.pollInterval, settings.maxQuiesce - (ContinuousClock.now - started)))
            } catch {
                return .failed(reason: "cancelled")
            }
            let run: BackupRun
            do { run = try await agent.backupStatus(id: runID) } catch {
                return .failed(reason: "cannot follow backup \(runID): \(error.message)")
            }
            switch run.status {
            case .done: return .done(volid: run.volid)
            case .failed: return .failed(reason: "backup \(runID) failed: \(run.reason ?? "no reason given")")
            case .running, .idle: continue
            }
        }
    }

    /// Starts `names` again (in reverse stop order), retrying each a few times; the marker is
    /// removed only when all of them were started (otherwise it stays for ``recover()``).
    func restart(_ names: [String]) async {
        await Self.restart(names, stacks: stacks, stateDir: stateDir, log: log)
    }

    static func restart(_ names: [String], stacks: Stacks, stateDir: String, log: @Sendable (String) -> Void) async {
        // The fast path first: `start` each (they were deployed when stopped), then one listing
        // to see which run; any that does not goes through the careful path below.
        var pending = names
        if !names.isEmpty, (try? await stacks.runtime.projectStatuses()) != nil {
            for name in names.reversed() { try? await stacks.startDeployed(name) }
            let running = Set((try? await stacks.runningNames()) ?? [])
            for name in names.reversed() where running.contains(name) { log("quiesce: started \(name)") }
            pending = names.filter { !running.contains($0) }
        }
        var failed: [String] = []
        for name in pending.reversed() {
            var lastError: ControllerError?
            for attempt in 1...3 {
                do {
                    try await stacks.start(name)
                    lastError = nil
                    break
                } catch {
                    lastError = error
                    if attempt < 3 { try? await Task.sleep(for: .milliseconds(500 * attempt)) }
                }
            }
            if let lastError {
                failed.append(name)
                log("quiesce: could not start \(name) again: \(lastError.message)")
            } else {
                log("quiesce: started \(name)")
            }
        }
        if failed.isEmpty {
            QuiesceMarker.remove(stateDir: stateDir)
        } else {
            try? QuiesceMarker(startedAt: Date(), stacks: failed.reversed()).write(stateDir: stateDir)
        }
    }

    /// At start-up: a marker left by a crash restarts its stacks and is cleared. Returns the stacks.
    public func recover() async throws(ControllerError) -> [String] {
        try await Self.recover(stacks: stacks, stateDir: stateDir, log: log)
    }

    /// ``recover()`` without an agent (a controller whose quiescing is off still finishes what a
    /// crash left).
    public static func recover(stacks: Stacks, stateDir: String, log: @Sendable (String) -> Void) async throws(ControllerError) -> [String] {
        guard let marker = try QuiesceMarker.read(stateDir: stateDir) else { return [] }
        log("recover: a quiesce was interrupted; starting \(marker.stacks.joined(separator: ", "))")
        await restart(marker.stacks, stacks: stacks, stateDir: stateDir, log: log)
        return marker.stacks
    }
}
