import FelhomAgent
import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

@Suite struct BackupRunnerTests {
    func runner(_ h: SimHarness, journal: Journal) async throws -> (BackupRunner, String) {
        let key = try #require(await h.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
        let r = BackupRunner(
            pve: try h.client(), node: "pve1", queue: GuestQueue(), journal: journal, storage: "pbs-felhom", boxKey: key,
            taskTimeout: .seconds(30))
        return (r, key)
    }

    func journal() throws -> Journal {
        try Journal(path: NSTemporaryDirectory() + "felhom-backup-\(UUID().uuidString).jsonl")
    }

    @Test func aBackupIsEncryptedUnderTheBoxKeyJournaledAndDoneOncePerWindow() async throws {
        try await withSim { h in
            let j = try journal()
            let (r, key) = try await runner(h, journal: j)
            let first = await r.run(vmid: 101, window: "2026-11-30", consistency: .app)
            #expect(first.failure == nil, "\(String(describing: first.failure))")
            #expect(first.volid?.hasPrefix("pbs-felhom:backup/ct/101/") == true && first.encrypted == key && first.verification == "ok")
            #expect(j.entries(of: first.op).map(\.step) == ["begin", "vzdump", "done"])
            let again = await r.run(vmid: 101, window: "2026-11-30", consistency: .crash)
            #expect(again.alreadyDone && again.volid == first.volid, "one backup per window")
            let backups = await h.engine.snapshot().volumes.filter { $0.vmid == 101 && $0.content == "backup" }
            #expect(backups.count == 1)
        }
    }

    @Test func failuresAreNamedJournaledAndNeverSuccess() async throws {
        try await withSim { h in
            let j = try journal()
            let (r, _) = try await runner(h, journal: j)
            // Verification fails on PBS.
            var faults = SimFaults()
            faults.verificationFailures = [101]
            await h.engine.setFaults(faults)
            let unverified = await r.run(vmid: 101, window: "w1", consistency: .app)
            #expect(unverified.failure?.code == .verificationFailed)
            #expect(j.entries(of: unverified.op).last?.step == "failed" && j.entries(of: unverified.op).last?.data["reason"] == "verification_failed")
            // The task fails.
            faults = SimFaults()
            faults.taskFailures["/nodes/pve1/vzdump"] = "job errors"
            await h.engine.setFaults(faults)
            #expect(await r.run(vmid: 101, window: "w2", consistency: .app).failure?.code == .taskFailed)
            await h.engine.setFaults(SimFaults())
            // The key removed from the storage: refused before anything runs, nothing stored.
            var st = try #require(await h.engine.snapshot().storages.first { $0.id == "pbs-felhom" })
            st.encryptionKeyFingerprint = nil
            await h.engine.setStorage(st)
            let before = await h.engine.snapshot().volumes.count
            let refused = await r.run(vmid: 101, window: "w3", consistency: .app)
            #expect(refused.failure?.code == .encryptionKeyMissing)
            #expect(await h.engine.snapshot().volumes.count == before, "no backup was made")
            #expect(j.entries(of: refused.op).map(\.step) == ["failed"], "refused before begin")
        }
    }

    @Test func aBackupInFlightAtACrashIsFinishedOrFailedAtTheNextStart() async throws {
        try await withSim { h in
            let j = try journal()
            let (r, key) = try await runner(h, journal: j)
            // As if the agent died right after starting vzdump: the task runs on.
            let op = BackupRunner.op(vmid: 101, window: "w")
            try j.append(op: op, kind: BackupRunner.kind, step: "begin", data: ["vmid": "101", "storage": "pbs-felhom", "consistency": "app"])
            let upid = try #require(try await h.client().vzdump(node: "pve1", VzdumpOptions(vmids: [101], storage: "pbs-felhom")).upid)
            try j.append(op: op, kind: BackupRunner.kind, step: "vzdump", data: ["vmid": "101", "upid": upid.description])
            let resumed = try #require(await r.resume(op: op, entries: j.entries(of: op)))
            #expect(resumed.failure == nil && resumed.encrypted == key && resumed.consistency == .app, "\(String(describing: resumed.failure))")
            #expect(j.entries(of: op).last?.step == "done" && r.tried(vmid: 101, window: "w"))
            #expect(await r.run(vmid: 101, window: "w", consistency: .crash).alreadyDone, "no second backup in the window")
            // Killed before vzdump started: failed as interrupted, nothing stored.
            let op2 = BackupRunner.op(vmid: 100, window: "w")
            try j.append(op: op2, kind: BackupRunner.kind, step: "begin", data: ["vmid": "100", "storage": "pbs-felhom", "consistency": "crash"])
            let interrupted = try #require(await r.resume(op: op2, entries: j.entries(of: op2)))
            #expect(interrupted.failure?.message.contains("interrupted") == true && j.entries(of: op2).last?.step == "failed")
        }
    }

    /// Killed after asking for vzdump but before journaling its UPID: the restart finds the task in
    /// PVE's task list (this token's vzdump of the guest after `begin`) and finishes it, so the
    /// backup PVE made is recorded; another token's vzdump of the same guest is not adopted.
    @Test func aKillBeforeTheVzdumpIsJournaledStillRecordsTheBackup() async throws {
        try await withSim { h in
            let j = try journal()
            let (r, key) = try await runner(h, journal: j)
            let op = BackupRunner.op(vmid: 101, window: "u")
            try j.append(op: op, kind: BackupRunner.kind, step: "begin", data: ["vmid": "101", "storage": "pbs-felhom", "consistency": "crash"])
            _ = try #require(try await h.client().vzdump(node: "pve1", VzdumpOptions(vmids: [101], storage: "pbs-felhom")).upid)
            let resumed = try #require(await r.resume(op: op, entries: j.entries(of: op)))
            #expect(resumed.failure == nil && resumed.encrypted == key, "\(String(describing: resumed.failure))")
            #expect(j.entries(of: op).map(\.step) == ["begin", "vzdump", "done"])
            #expect(j.entries(of: op)[1].data["found"] == "task list")

            let op2 = BackupRunner.op(vmid: 100, window: "u")
            try j.append(op: op2, kind: BackupRunner.kind, step: "begin", data: ["vmid": "100", "storage": "pbs-felhom", "consistency": "crash"])
            _ = try #require(try await h.rootClient().vzdump(node: "pve1", VzdumpOptions(vmids: [100], storage: "pbs-felhom")).upid)
            let theirs = try #require(await r.resume(op: op2, entries: j.entries(of: op2)))
            #expect(theirs.failure?.message.contains("interrupted") == true && j.entries(of: op2).last?.step == "failed")
        }
    }
}
