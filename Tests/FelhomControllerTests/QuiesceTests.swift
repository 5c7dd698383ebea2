import FelhomController
import FelhomCore
import FelhomTestSupport
import Foundation
import Synchronization
import Testing

/// The agent's local API, scripted.
final class FakeAgent: AgentLocalAPI, Sendable {
    struct Script {
        var due = true
        var startError: ControllerError?
        var statuses: [BackupRun.Status] = [.done]  // the last repeats
        var statusError: ControllerError?
        var starts = 0
        var polls = 0
    }
    let script: Mutex<Script>
    init(_ s: Script = Script()) { script = Mutex(s) }

    func backupDue() async throws(ControllerError) -> Bool { script.withLock { $0.due } }
    func startBackup() async throws(ControllerError) -> BackupRun {
        let e = script.withLock { s -> ControllerError? in
            s.starts += 1
            return s.startError
        }
        if let e { throw e }
        return BackupRun(id: "run-1", status: .running)
    }
    func backupStatus(id: String) async throws(ControllerError) -> BackupRun {
        let (status, error) = script.withLock { s -> (BackupRun.Status, ControllerError?) in
            s.polls += 1
            let st = s.statuses.count > 1 ? s.statuses.removeFirst() : s.statuses[0]
            return (st, s.statusError)
        }
        if let error { throw error }
        return BackupRun(id: id, status: status, volid: status == .done ? "pbs:backup/ct/120/x" : nil, reason: status == .failed ? "disk full" : nil)
    }
}

extension QuiesceWorld {
    /// The bound is generous: a 2-core run of the whole suite can hold the cooperative threads for
    /// seconds, and the outcome of these tests does not depend on it (the timeout test sets its own).
    func quiescer(_ compose: FakeCompose, _ agent: FakeAgent, max: Duration = .seconds(60)) -> Quiescer {
        Quiescer(
            stacks: Stacks(directory: stacksDir, protectedNames: ["traefik"], runtime: compose), agent: agent, stateDir: stateDir,
            settings: .init(pollInterval: .milliseconds(20), maxQuiesce: max))
    }
}

@Suite struct QuiesceTests {
    static let allRunning = ["a": true, "b": true, "c": true, "traefik": true]

    @Test func happyPathStopsAppStacksBacksUpAndRestartsThem() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        let agent = FakeAgent(.init(statuses: [.running, .running, .done]))
        let outcome = try await w.quiescer(compose, agent).runIfDue()
        #expect(outcome == .done(volid: "pbs:backup/ct/120/x"))
        #expect(compose.log == ["stop a", "stop b", "stop c", "start c", "start b", "start a"], "protected traefik untouched; reverse restart")
        #expect(["a", "b", "c", "traefik"].allSatisfy(compose.isRunning))
        #expect(w.marker == nil)
        #expect(agent.script.withLock { $0.polls } == 3)
    }

    @Test func notDueDoesNothing() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        #expect(try await w.quiescer(compose, FakeAgent(.init(due: false))).runIfDue() == .notDue)
        #expect(compose.log.isEmpty)
    }

    @Test func markerIsWrittenBeforeTheFirstStop() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        let seen = Mutex<[QuiesceMarker?]>([])
        let stateDir = w.stateDir
        compose.state.withLock { $0.onStop = { _ in seen.withLock { $0.append(try? QuiesceMarker.read(stateDir: stateDir)) } } }
        _ = try await w.quiescer(compose, FakeAgent()).runIfDue()
        let markers = seen.withLock { $0 }
        #expect(markers.count == 3 && markers.allSatisfy { $0?.stacks == ["a", "b", "c"] }, "\(markers)")
        // The marker is private.
        #expect(w.marker == nil)
    }

    @Test func backupStartFailureRestartsTheStacks() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        let outcome = try await w.quiescer(compose, FakeAgent(.init(startError: ControllerError(.runtime, "agent says no")))).runIfDue()
        guard case .failed(let reason) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(reason.contains("did not start") && reason.contains("agent says no"))
        #expect(["a", "b", "c"].allSatisfy(compose.isRunning) && w.marker == nil)
    }

    @Test func failedBackupAndUnreadableStatusRestartTheStacks() async throws {
        for script in [FakeAgent.Script(statuses: [.running, .failed]), FakeAgent.Script(statusError: ControllerError(.runtime, "agent gone"))] {
            let w = try QuiesceWorld()
            let compose = FakeCompose(running: Self.allRunning)
            let outcome = try await w.quiescer(compose, FakeAgent(script)).runIfDue()
            guard case .failed = outcome else {
                Issue.record("\(outcome)")
                continue
            }
            #expect(["a", "b", "c"].allSatisfy(compose.isRunning) && w.marker == nil, "\(outcome)")
        }
    }

    @Test func theBoundRestartsTheStacksWhileTheBackupGoesOn() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        let agent = FakeAgent(.init(statuses: [.running]))
        let outcome = try await w.quiescer(compose, agent, max: .milliseconds(300)).runIfDue()
        #expect(outcome == .timedOut)
        #expect(["a", "b", "c"].allSatisfy(compose.isRunning) && w.marker == nil)
        #expect(agent.script.withLock { $0.polls } >= 1, "it followed the run until the bound")
    }

    @Test func onlyTheStacksItStoppedAreRestarted() async throws {
        let w = try QuiesceWorld()
        // b was stopped by the user before: it stays stopped.
        let compose = FakeCompose(running: ["a": true, "b": false, "c": true, "traefik": true])
        _ = try await w.quiescer(compose, FakeAgent()).runIfDue()
        #expect(compose.log == ["stop a", "stop c", "start c", "start a"])
        #expect(!compose.isRunning("b"))
    }

    @Test func cancellationStillRestartsTheStacks() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        let q = w.quiescer(compose, FakeAgent(.init(statuses: [.running])), max: .seconds(60))
        let task = Task { try await q.runIfDue() }
        for _ in 0..<500 where compose.log.count < 3 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        let outcome = try await task.value
        #expect(outcome == .failed(reason: "cancelled"))
        #expect(["a", "b", "c"].allSatisfy(compose.isRunning) && w.marker == nil)
    }

    @Test func recoverRestartsWhatACrashLeftAndClearsTheMarker() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: ["a": false, "b": false, "c": true, "traefik": true])
        try QuiesceMarker(startedAt: Date(), stacks: ["a", "b"]).write(stateDir: w.stateDir)
        let attrs = try FileManager.default.attributesOfItem(atPath: QuiesceMarker.path(in: w.stateDir))
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect(try await w.quiescer(compose, FakeAgent()).recover() == ["a", "b"])
        #expect(compose.isRunning("a") && compose.isRunning("b") && w.marker == nil)
        #expect(compose.log == ["start b", "start a"])
    }

    @Test func aStackThatWillNotStartKeepsTheMarkerForRecovery() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        compose.state.withLock { $0.failStart = ["b"] }
        _ = try await w.quiescer(compose, FakeAgent()).runIfDue()
        #expect(w.marker?.stacks == ["b"], "the one not restarted stays recorded")
        #expect(compose.isRunning("a") && compose.isRunning("c"))
    }

    @Test func oneQuiesceAtATimeAlsoAcrossProcesses() async throws {
        let w = try QuiesceWorld()
        let compose = FakeCompose(running: Self.allRunning)
        let q = w.quiescer(compose, FakeAgent(.init(statuses: [.running, .running, .running, .running, .done])))
        async let first = q.runIfDue()
        for _ in 0..<1000 where compose.log.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        #expect(try await q.runIfDue() == .busy, "same process")
        // Another process holds the lock file: this controller does not quiesce.
        let other = w.quiescer(compose, FakeAgent())
        #expect(try await other.runIfDue() == .busy, "same state_dir, other instance")
        #expect(try await first == .done(volid: "pbs:backup/ct/120/x"))
        let lock = try FileLock(path: w.stateDir + "/quiesce.lock")
        defer { lock.release() }
        #expect(try await other.runIfDue() == .busy, "held by another holder")
    }
}
