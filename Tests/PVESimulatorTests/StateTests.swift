import FelhomCore
import Foundation
import PVESimulator
import Proxmox
import Testing

/// Persistence across restarts, and what backups capture and restores bring back.
@Suite struct StateTests {
    func client(_ sim: PVESimulator.Running) throws -> PVEClient {
        PVEClient(
            connection: try PVEConnection(
                host: "127.0.0.1", port: sim.port, tokenID: SimSeed.agentTokenID,
                tokenSecret: Secret(sim.secret(for: SimSeed.agentTokenID) ?? ""),
                trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: sim.fingerprint ?? ""))))
    }

    @Test func stateAndCertificateSurviveARestart() async throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory() + "felhom-sim-\(UUID().uuidString)")
        var seed = SimSeed.defaultState()
        seed.settings.taskDurations = ["default": 0.05]
        var options = PVESimulator.Options()
        options.port = 0
        options.stateDirectory = dir
        options.seed = seed
        let first = try await PVESimulator.start(options)
        #expect(!first.resumed)
        let c1 = try client(first)
        _ = try await c1.waitTask(
            try await c1.createSnapshot(node: "pve1", vmid: 101, name: "keep", description: nil), initialInterval: .milliseconds(10))
        try await c1.updateContainerConfig(node: "pve1", vmid: 101, ContainerConfigUpdate(set: ["memory": "3072"]))
        await first.shutdown()

        options.seed = nil
        let second = try await PVESimulator.start(options)
        #expect(second.resumed)
        #expect(second.fingerprint == first.fingerprint)
        #expect(second.secret(for: SimSeed.agentTokenID) == first.secret(for: SimSeed.agentTokenID))
        let c2 = try client(second)
        #expect(try await c2.snapshots(node: "pve1", vmid: 101).map(\.name) == ["keep", "current"])
        #expect(try await c2.containerConfig(node: "pve1", vmid: 101, current: true).memory == 3072)
        await second.shutdown()
        let keyMode = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("key.pem").path)[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
    }

    @Test func damagedStateFileIsAClearError() async throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory() + "felhom-sim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("{\"nodes\": 5}".utf8).write(to: dir.appendingPathComponent("state.json"))
        var options = PVESimulator.Options()
        options.port = 0
        options.stateDirectory = dir
        let e = await #expect(throws: PVESimulator.StartError.self) { _ = try await PVESimulator.start(options) }
        #expect(e?.message.contains("state.json") == true)
        // Nothing was overwritten.
        #expect(try String(contentsOf: dir.appendingPathComponent("state.json"), encoding: .utf8) == "{\"nodes\": 5}")
    }

    @Test func backupCapturesRootfsAndBackupMountPointsOnlyAndRestoreRecreatesThem() async throws {
        let h = EngineHarness(taskSeconds: 1)
        // 100: rootfs "web-rootfs", mp0 /srv/media backup=0 "web-media".
        let r = await h.call("POST", "/nodes/pve1/vzdump", form: "vmid=100&storage=pbs-felhom&mode=snapshot")
        #expect(r.data?.stringValue?.contains(":vzdump:100:") == true)
        h.clock.advance(by: 2)
        let content = await h.call("GET", "/nodes/pve1/storage/pbs-felhom/content", query: "content=backup&vmid=100")
        let volids = content.data?.arrayValue?.compactMap { $0["volid"]?.stringValue } ?? []
        let newest = try #require(volids.filter { $0 != "pbs-felhom:backup/ct/100/2026-01-01T02:00:00Z" }.first)
        #expect(newest == "pbs-felhom:backup/ct/100/2026-01-01T00:00:00Z")

        let restore = await h.call(
            "POST", "/nodes/pve1/lxc",
            form: "vmid=140&restore=1&storage=local-lvm&ostemplate=\(newest.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")")
        #expect(restore.status == 200)
        h.clock.advance(by: 2)
        let state = await h.engine.snapshot()
        let ct = try #require(state.containers[140])
        #expect(ct.config["mp0"]?.contains("mp=/srv/media") == true)
        #expect(ct.config["mp0"]?.contains("backup=0") == true)
        let rootVol = ct.config["rootfs"].map { String($0.split(separator: ",")[0]) }
        let mpVol = ct.config["mp0"].map { String($0.split(separator: ",")[0]) }
        #expect(state.volumes.first { $0.volid == rootVol }?.data == "web-rootfs")
        #expect(state.volumes.first { $0.volid == mpVol }?.data == nil)  // excluded from the backup: restored empty
        let log = await h.call("GET", "/nodes/pve1/tasks/\(restore.data?.stringValue ?? "")/log", query: "limit=0")
        #expect(log.data?.arrayValue?.contains { $0["t"]?.stringValue?.hasPrefix("excluded mount point mp0") == true } == true)
    }

    /// Advanced mode (a `rootfs` given): the backup's rootfs and mount points are ignored, only the
    /// given ones are used — a restore test's scratch guest never gets the original's data volumes.
    @Test func anAdvancedRestoreUsesOnlyTheGivenMountPoints() async throws {
        let h = EngineHarness(taskSeconds: 1)
        let backup = "pbs-felhom%3Abackup%2Fct%2F100%2F2026-01-01T02%3A00%3A00Z"
        let r = await h.call("POST", "/nodes/pve1/lxc", form: "vmid=150&restore=1&ostemplate=\(backup)&rootfs=local-lvm%3A8")
        #expect(r.status == 200)
        h.clock.advance(by: 2)
        let ct = try #require(await h.engine.snapshot().containers[150])
        #expect(ct.config["mp0"] == nil, "the backup's mp0 (/srv/media) is not attached: \(ct.config)")
        #expect(ct.config["rootfs"]?.hasPrefix("local-lvm:vm-150-disk-") == true)
        #expect(ct.config["hostname"] == "web", "the rest of the backed-up config is kept")
    }

    @Test func restoreOverAnExistingGuestNeedsForceAndAStoppedGuest() async throws {
        let h = EngineHarness(taskSeconds: 1)
        let vol = "local%3Abackup%2Fvzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"
        let noForce = await h.call("POST", "/nodes/pve1/lxc", form: "vmid=101&restore=1&ostemplate=\(vol)")
        #expect(noForce.reason == "unable to restore CT 101 - CT 101 already exists on node 'pve1'")
        let running = await h.call("POST", "/nodes/pve1/lxc", form: "vmid=100&restore=1&force=1&ostemplate=\(vol)")
        #expect(running.reason == "unable to restore CT 100 - can't overwrite running container")
        let ok = await h.call("POST", "/nodes/pve1/lxc", form: "vmid=101&restore=1&force=1&storage=local-lvm&ostemplate=\(vol)")
        #expect(ok.status == 200)
        h.clock.advance(by: 2)
        let state = await h.engine.snapshot()
        #expect(state.containers[101]?.config["hostname"] == "felhom-golden")
        #expect(state.volumes.contains { $0.volid == "local-lvm:vm-101-disk-1" } == false)  // old data disk destroyed
    }

    @Test func snapshotsNeedASnapshotCapableStorage() async throws {
        let h = EngineHarness(taskSeconds: 1)
        // A guest on the dir storage cannot snapshot (raw files), as on real PVE.
        let create = await h.call(
            "POST", "/nodes/pve1/lxc", form: "vmid=150&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst&rootfs=local%3A2")
        #expect(create.status == 200)
        h.clock.advance(by: 2)
        let snap = await h.call("POST", "/nodes/pve1/lxc/150/snapshot", form: "snapname=s1")
        h.clock.advance(by: 2)
        let st = await h.call("GET", "/nodes/pve1/tasks/\(snap.data?.stringValue ?? "")/status")
        #expect(st.data?["exitstatus"] == "snapshot feature is not available")
    }
}
