import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomTestSupport
import Foundation
import Logging
import PVESimulator
import SQLKit
import Testing

/// The backup schedule inside the agent's cycle, with a real hub: the storage policy of the
/// published desired state makes running guests due; with no controller calling, the agent backs
/// them up crash-consistent and the hub receives the events.
@Suite struct AgentBackupScheduleTests {
    static let web = DesiredState.Guest(
        vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running, description: "customer apps: photos, passwords")

    /// Publishes `guests` with a daily backup to `pbs-felhom` from hour 0.
    func publishWithBackups(_ w: AgentWorld, _ guests: [DesiredState.Guest]) async throws {
        var desired = DesiredState(guests: guests)
        desired.storagePolicy.backupStorage = "pbs-felhom"
        desired.storagePolicy.backupHour = 0
        _ = try await w.op.putDesired(hostID: w.hostID, desired)
        _ = try await w.op.publishDesired(hostID: w.hostID)
    }

    /// The host's events of `type`, waiting (bounded) for the first to arrive.
    func events(_ w: AgentWorld, _ type: String) async throws -> [HubEvent] {
        var events: [HubEvent] = []
        for _ in 0..<100 {
            events = try await w.op.events(hostID: w.hostID, type: type)
            if !events.isEmpty { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return events
    }

    @Test func thePolicyMakesGuestsDueAndTheHubHearsTheOutcome() async throws {
        try await withAgentWorld { w in
            let key = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            let agent = try await w.agent(backup: BackupSettings(boxKey: key, appBound: 0, taskTimeout: .seconds(30), timeZone: .gmt))
            let db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)
            try await publishWithBackups(w, [Self.web, db])
            try await agent.cycle()
            let backups = try #require(agent.backups)
            await backups.drain()
            #expect(backups.lastResults.keys.sorted() == [100], "only the running guest")
            let result = try #require(backups.lastResults[100])
            #expect(result.failure == nil && result.consistency == .crash && result.encrypted == key)
            let events = try await events(w, "backup_completed")
            #expect(events.count == 1 && events.first?.data["vmid"]?.lenientInt == 100 && events.first?.data["consistency"] == "crash")
            // The host report carries it, typed, from the journal.
            let record = try #require(agent.protectionRecords().backups.first)
            #expect(
                record.vmid == 100 && record.consistency == "crash" && record.encrypted == key && record.verification == "ok"
                    && record.lastSuccessAt != nil)
            // The report also shows what the backup storage really holds, and the audit tail.
            let report = try #require(try await agent.hostReport())
            let stored = report.pbsSnapshots.filter { $0.vmid == 100 }
            #expect(stored.count == 2 && stored.first?.volid == result.volid && stored.first?.encrypted == key, "newest first: \(stored)")
            #expect(report.auditTail.first { $0.kind == "backup" }.map { ($0.op, $0.outcome) } ?? ("", "") == (result.op, "done"))
            // The next cycle in the same window does not back up again.
            try await agent.cycle()
            await backups.drain()
            #expect(
                await w.sim.engine.snapshot().volumes.filter { $0.vmid == 100 && $0.content == "backup" }.count == 2, "the seeded one and today's")
        }
    }

    @Test func aTargetWithoutTheBoxKeyIsRefusedAndReportedAsFailed() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent(
                backup: BackupSettings(boxKey: PBSKey.fingerprint(rawKey: Array(repeating: 9, count: 32)), appBound: 0, timeZone: .gmt))
            try await publishWithBackups(w, [Self.web])
            try await agent.cycle()
            await agent.backups?.drain()
            #expect(agent.backups?.lastResults[100]?.failure?.code == .encryptionKeyMismatch)
            let events = try await events(w, "backup_failed")
            #expect(events.first?.data["reason"] == "encryption_key_mismatch" && events.first?.severity == .critical)
            #expect(agent.protectionRecords().backups.first?.lastFailureReason == "encryption_key_mismatch")
            #expect(agent.protectionRecords().backups.first?.lastSuccessAt == nil)
        }
    }

    /// After a guest's first backup its restore test runs: the hub hears restore_test_passed with
    /// the times; the controller can read it through the local API's `GET /restore-test/status`.
    @Test func aFirstBackupIsFollowedByARestoreTestThatTheHubHears() async throws {
        try await withAgentWorld { w in
            let key = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            await w.sim.engine.setAppHealth(vmid: 100, json: #"[{"name":"photos","state":"running","protected":false,"services":[]}]"#)
            let agent = try await w.agent(
                backup: BackupSettings(boxKey: key, appBound: 0, taskTimeout: .seconds(30), timeZone: .gmt),
                restoreTests: RestoreTestSettings(runner: SimCommandRunner(engine: w.sim.engine), healthTimeout: .seconds(20)))
            try await publishWithBackups(w, [Self.web])
            try await agent.cycle()
            await agent.backups?.drain()
            await agent.restoreTests?.drain()
            let last = try #require(agent.restoreTests?.last(vmid: 100))
            #expect(last.result.passed && last.result.isolated, "\(String(describing: last.result.reason))")
            let events = try await events(w, "restore_test_passed")
            #expect(events.first?.data["vmid"]?.lenientInt == 100 && events.first?.data["restore_seconds"] != nil)
            #expect(agent.restoreTests?.statusJSON(vmid: 100)["status"] == "passed")
            let test = try #require(agent.protectionRecords().restoreTests.first)
            #expect(test.vmid == 100 && test.passed && test.restoreSeconds != nil)
            #expect(agent.restoreTests?.statusJSON(vmid: 101)["status"] == "idle")
            #expect(await w.sim.engine.snapshot().containers.keys.allSatisfy { $0 < 9900 }, "no scratch guest left")
        }
    }

    /// A guest with `backup: false` is never made due; the operator's request backs it up once
    /// anyway (an explicit ask), and a restore-test request runs one — each id acted on once, also
    /// across an agent restart.
    @Test func optedOutGuestsAreSkippedAndOperatorRequestsRunOnce() async throws {
        try await withAgentWorld { w in
            let key = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            await w.sim.engine.setAppHealth(vmid: 100, json: #"[{"name":"photos","state":"running","protected":false,"services":[]}]"#)
            let settings = BackupSettings(boxKey: key, appBound: 0, taskTimeout: .seconds(30), timeZone: .gmt)
            let restore = RestoreTestSettings(runner: SimCommandRunner(engine: w.sim.engine), healthTimeout: .seconds(20))
            var web = Self.web
            web.backup = false
            try await publishWithBackups(w, [web])
            let agent = try await w.agent(backup: settings, restoreTests: restore)
            try await agent.cycle()
            await agent.backups?.drain()
            #expect(agent.backups?.lastResults.isEmpty == true, "opted out: no scheduled backup")

            let asked = try await w.op.requestNow(hostID: w.hostID, kind: .backup, vmid: 100)
            #expect(asked.id.hasPrefix("req-") && asked.kind == .backup)
            try await agent.cycle()
            await agent.backups?.drain()
            let result = try #require(agent.backups?.lastResults[100])
            #expect(result.failure == nil && result.op == "backup-100-\(asked.id)", "\(result.op)")
            _ = try await w.op.requestNow(hostID: w.hostID, kind: .restoreTest, vmid: 100)
            try await agent.cycle()
            await agent.restoreTests?.drain()
            #expect(agent.restoreTests?.last(vmid: 100)?.result.passed == true)
            let published = try #require(try await w.op.desired(hostID: w.hostID).spec)
            #expect(published.requests.map(\.kind) == [.backup, .restoreTest], "both requests stay published")
            let tests = try await events(w, "restore_test_passed").count
            #expect(tests == 2, "after the first backup, and the requested one")

            // A new agent on the same state dir acts on neither again.
            let again = try await w.agent(backup: settings, restoreTests: restore)
            try await again.cycle()
            await again.backups?.drain()
            await again.restoreTests?.drain()
            #expect(again.backups?.lastResults.isEmpty == true)
            let dumps = await w.sim.engine.snapshot().volumes.filter { $0.vmid == 100 && $0.content == "backup" }.count
            #expect(dumps == 2, "the seeded backup and the requested one")
            #expect(try await events(w, "restore_test_passed").count == tests)
        }
    }

    /// An operator's backup request is not "done" while its backup is only due in memory: an
    /// agent restarted before the backup started still makes it (it used to be recorded acted on
    /// at once, and lost), and makes it once.
    @Test func aBackupRequestDueWhenTheAgentRestartsIsStillMade() async throws {
        try await withAgentWorld { w in
            let key = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            var web = Self.web
            web.backup = false
            try await publishWithBackups(w, [web])
            // A long app-consistent bound: the request stays due, waiting for a controller that never calls.
            let waiting = try await w.agent(backup: BackupSettings(boxKey: key, appBound: 3600, taskTimeout: .seconds(30), timeZone: .gmt))
            let asked = try await w.op.requestNow(hostID: w.hostID, kind: .backup, vmid: 100)
            try await waiting.cycle()
            try await waiting.cycle()
            #expect(waiting.backups?.lastResults.isEmpty == true, "still waiting for the controller")
            let done = (try? String(contentsOfFile: w.stateDir + "/requests-done.json", encoding: .utf8)) ?? ""
            #expect(!done.contains(asked.id), "not answered yet: \(done)")

            // Killed here; the next agent (the bound passed) makes the backup of that request.
            let restarted = try await w.agent(backup: BackupSettings(boxKey: key, appBound: 0, taskTimeout: .seconds(30), timeZone: .gmt))
            await restarted.resumeInFlight()
            try await restarted.cycle()
            await restarted.backups?.drain()
            let result = try #require(restarted.backups?.lastResults[100])
            #expect(result.failure == nil && result.op == "backup-100-\(asked.id)", "\(result.op)")
            try await restarted.cycle()
            let recorded = try String(contentsOfFile: w.stateDir + "/requests-done.json", encoding: .utf8)
            #expect(recorded.contains(asked.id))

            // And once: another restart adds no backup.
            let again = try await w.agent(backup: BackupSettings(boxKey: key, appBound: 0, taskTimeout: .seconds(30), timeZone: .gmt))
            await again.resumeInFlight()
            try await again.cycle()
            await again.backups?.drain()
            #expect(again.backups?.lastResults.isEmpty == true)
            let dumps = await w.sim.engine.snapshot().volumes.filter { $0.vmid == 100 && $0.content == "backup" }.count
            #expect(dumps == 2, "the seeded backup and the requested one")
            #expect(try await events(w, "backup_completed").count == 1)
        }
    }

    /// A backup outcome the hub never heard (the agent killed between the journal's `done` and
    /// the post, or the hub away then) is said again by the next agent, and only once however
    /// often the agent restarts (the idempotency key is the journal op).
    @Test func aBackupOutcomeTheHubNeverHeardIsSaidAgainOnce() async throws {
        try await withAgentWorld { w in
            let key = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            let settings = BackupSettings(boxKey: key, appBound: 0, taskTimeout: .seconds(30), timeZone: .gmt)
            try await publishWithBackups(w, [Self.web])
            let agent = try await w.agent(backup: settings)
            try await agent.cycle()
            await agent.backups?.drain()
            let result = try #require(agent.backups?.lastResults[100])
            #expect(result.failure == nil)
            #expect(try await events(w, "backup_completed").count == 1)
            // A restart: the outcome is said again and the hub keeps the first.
            let restarted = try await w.agent(backup: settings)
            await restarted.resumeInFlight()
            try await restarted.cycle()
            #expect(restarted.backupOutcomes.isDelivered(OutcomeLedger.key(op: result.op)))
            #expect(try await events(w, "backup_completed").count == 1, "said again, recorded once")

            // As if the first post never arrived: the next agent says it, with what the journal kept.
            try await w.store.withDB { db in try await db.raw("DELETE FROM events WHERE type = 'backup_completed'").run() }
            let third = try await w.agent(backup: settings)
            await third.resumeInFlight()
            try await third.cycle()
            let said = try await events(w, "backup_completed")
            #expect(said.count == 1)
            let data = said.first?.data
            #expect(data?["vmid"]?.lenientInt == 100 && data?["volid"]?.stringValue == result.volid && data?["size"]?.lenientInt == result.size)
            #expect(data?["encrypted"]?.stringValue == key && data?["client_at"] != nil, "\(String(describing: data))")
            // Still once after yet another restart; no backup was made again.
            let fourth = try await w.agent(backup: settings)
            try await fourth.cycle()
            #expect(try await events(w, "backup_completed").count == 1)
            #expect(await w.sim.engine.snapshot().volumes.filter { $0.vmid == 100 && $0.content == "backup" }.count == 2)
        }
    }

    /// The restore-test queue is kept in a file: a test queued when the agent stops runs after the
    /// restart; one whose journal says it finished (killed after `done`, before the queue was
    /// written) is not run again; one a restart interrupted runs again under a new id.
    @Test func queuedRestoreTestsSurviveARestartAndNeverRunTwice() async throws {
        try await withAgentWorld { w in
            let key = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            await w.sim.engine.setAppHealth(vmid: 100, json: #"[{"name":"photos","state":"running","protected":false,"services":[]}]"#)
            let settings = BackupSettings(boxKey: key, appBound: 0, taskTimeout: .seconds(30), timeZone: .gmt)
            let restore = RestoreTestSettings(runner: SimCommandRunner(engine: w.sim.engine), healthTimeout: .seconds(20))
            try await publishWithBackups(w, [Self.web])
            let agent = try await w.agent(backup: settings, restoreTests: restore)
            // A backup of the running apps (and its first restore test) to test from.
            try await agent.cycle()
            await agent.backups?.drain()
            await agent.restoreTests?.drain()
            let tester = try #require(agent.restoreTests?.tester)
            let file = w.stateDir + "/restore-tests-queued.json"
            let earlier = Set(agent.journal.allOperations().map(\.op).filter { $0.hasPrefix("restore-test-") })
            #expect(earlier.count == 1)
            func ops() -> [String] {
                agent.journal.allOperations().map(\.op).filter { $0.hasPrefix("restore-test-") && !earlier.contains($0) }.sorted()
            }
            func queue(_ ids: [String]) throws {
                let entries = ids.map { #"{"vmid":100,"storage":"pbs-felhom","id":"\#($0)"}"# }.joined(separator: ",")
                try Data("[\(entries)]".utf8).write(to: URL(fileURLWithPath: file))
            }
            func stored() -> String { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }

            // Queued before a stop: held until the restart's journal work is done, then run.
            try queue(["first"])
            let held = RestoreTests(tester: tester, hub: nil, logger: Logger(label: "t"), queueFile: file)
            await held.drain()
            #expect(ops().isEmpty, "held until resumeQueued")
            held.request(vmid: 100, storage: "pbs-felhom")
            #expect(stored().contains("first") && stored().components(separatedBy: "\"vmid\"").count == 2, "one per guest: \(stored())")
            let restarted = RestoreTests(tester: tester, hub: nil, logger: Logger(label: "t"), queueFile: file)
            restarted.resumeQueued()
            await restarted.drain()
            #expect(ops() == ["restore-test-100-first"])
            #expect(restarted.last(vmid: 100)?.result.passed == true)
            #expect(stored() == "[]", "done: out of the kept queue")

            // Killed after its `done`, before the queue was written: not run twice.
            try queue(["first"])
            let afterDone = RestoreTests(tester: tester, hub: nil, logger: Logger(label: "t"), queueFile: file)
            afterDone.resumeQueued()
            await afterDone.drain()
            #expect(ops() == ["restore-test-100-first"])
            #expect(stored() == "[]")

            // Interrupted by a restart (its journal says so): run again, under a new id.
            try agent.journal.append(op: RestoreTester.op(vmid: 100, id: "cut"), kind: RestoreTester.kind, step: "begin", data: ["vmid": "100"])
            try agent.journal.append(
                op: RestoreTester.op(vmid: 100, id: "cut"), kind: RestoreTester.kind, step: "done",
                data: ["vmid": "100", "passed": "0", "reason": RestoreTester.interrupted])
            try queue(["cut"])
            let rerun = RestoreTests(tester: tester, hub: nil, logger: Logger(label: "t"), queueFile: file)
            rerun.resumeQueued()
            await rerun.drain()
            let all = ops()
            #expect(all.count == 3 && all.contains("restore-test-100-cut") && all.contains("restore-test-100-first"), "\(all)")
            #expect(rerun.last(vmid: 100)?.result.passed == true)
            #expect(stored() == "[]")
        }
    }
}
