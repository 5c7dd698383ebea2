import Crypto
import FelhomAPI
import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomSigning
import FelhomTestSupport
import Foundation
import Logging
import ObjectStore
import PVESimulator
import Proxmox
import Synchronization
import Testing

/// LVM as the snapshot pipeline sees it, without device-mapper (this machine has none): the
/// commands are recorded, and a "snapshot LV" is a regular file copied from the origin's file.
final class FakeLVM: CommandRunner {
    let dir: String
    let calls = Mutex<[[String]]>([])
    let failing = Mutex<Set<String>>([])
    /// LVs that exist besides the snapshots (`vg/name`).
    let extra = Mutex<[String]>([])

    init(dir: String) { self.dir = dir }

    func device(_ vg: String, _ name: String) -> String { "\(dir)/\(vg)--\(name)" }

    func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        calls.withLock { $0.append([executable] + arguments) }
        if failing.withLock({ $0.contains(executable) }) {
            return CommandResult(exitCode: 5, stdout: "", stderr: "  \(executable): injected failure")
        }
        switch executable {
        case "lvcreate":
            let (vgOrigin, name) = (arguments.last!, arguments[arguments.firstIndex(of: "--name")! + 1])
            let parts = vgOrigin.split(separator: "/").map(String.init)
            try? FileManager.default.copyItem(atPath: device(parts[0], parts[1]), toPath: device(parts[0], name))
        case "lvremove":
            let parts = arguments.last!.split(separator: "/").map(String.init)
            try? FileManager.default.removeItem(atPath: device(parts[0], parts[1]))
        case "lvs":
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            let names =
                files.compactMap { f -> (String, String)? in
                    guard let r = f.range(of: "--") else { return nil }
                    return (String(f[..<r.lowerBound]), String(f[r.upperBound...]))
                }
                + extra.withLock { $0 }.map {
                    let p = $0.split(separator: "/")
                    return (String(p[0]), String(p[1]))
                }
            let items = names.map {
                #"{"lv_name":"\#($0.1)", "vg_name":"\#($0.0)", "lv_attr":"Vwi-a-tz--", "pool_lv":"data", "origin":"", "lv_size":"0"}"#
            }
            return CommandResult(exitCode: 0, stdout: #"  {"report": [{"lv": [\#(items.joined(separator: ","))]}]}"#)
        default: break
        }
        return CommandResult(exitCode: 0, stdout: "")
    }
}

@Suite(.enabled(if: Moto.runSuites), .serialized)
struct VolumeSnapshotterTests {
    struct World {
        let dir: String
        let lvm: FakeLVM
        let journal: Journal
        let master: SymmetricKey
        let prefix: String
        let volume: Data

        init(size: Int = (3 << 20) + 5) throws {
            dir = NSTemporaryDirectory() + "felhom-snap-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir + "/lvm", withIntermediateDirectories: true)
            lvm = FakeLVM(dir: dir + "/lvm")
            journal = try Journal(path: dir + "/journal.jsonl")
            master = try SnapshotKeys.masterKey(pbsKey: Data((0..<32).map { _ in UInt8.random(in: 0...255) }))
            // No "/" in it: moto cannot check the signature of a listing whose prefix has one (real S3 can).
            prefix = Moto.prefix()
            var rng = SystemRandomNumberGenerator()
            volume = Data((0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) })
            try volume.write(to: URL(fileURLWithPath: lvm.device("pve", "vm-100-disk-1")))
        }

        func snapshotter(_ s3: S3Client? = nil) throws -> VolumeSnapshotter {
            let lvm = self.lvm
            return VolumeSnapshotter(
                backend: PrivilegedBackend(runner: lvm), s3: try s3 ?? Moto.client(), journal: journal, masterKey: master, prefix: prefix,
                partSize: 5 << 20, devicePath: { lvm.device($0, $1) })
        }

        static let target = VolumeSnapshotter.Target(volumeID: "local-lvm:vm-100-disk-1", volumeGroup: "pve", logicalVolume: "vm-100-disk-1")

        func cleanup() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test func aSnapshotIsUploadedEncryptedAndItsLVRemoved() async throws {
        let w = try World(size: (11 << 20) + 5)
        defer { w.cleanup() }
        let record = try await w.snapshotter().snapshot(World.target)
        let calls = w.lvm.calls.withLock { $0 }
        let lv = "felhom-snap-" + record.snapshotID.lowercased()
        #expect(
            calls == [
                ["lvcreate", "--snapshot", "--setactivationskip", "n", "--permission", "r", "--name", lv, "pve/vm-100-disk-1"],
                ["lvremove", "--yes", "pve/\(lv)"],
            ])
        #expect(!FileManager.default.fileExists(atPath: w.lvm.device("pve", lv)), "the snapshot LV is gone")
        #expect(record.size == Int64(w.volume.count) && record.state == "complete" && record.objectKey.hasPrefix(w.prefix))
        #expect(record.encryptionKeyID == SnapshotKeys.keyID(w.master))
        // The object: its checksum as recorded, and it decrypts to the volume with the unwrapped key.
        let s3 = try Moto.client()
        let object = try await s3.getObject(key: record.objectKey)
        #expect(Int64(object.count) == record.objectSize)
        #expect(record.checksum == "sha256:" + SigV4.hex(Array(SHA256.hash(data: object))))
        let dataKey = try SnapshotKeys.unwrap(record.wrappedDataKey, master: w.master, volumeID: record.volumeID, snapshotID: record.snapshotID)
        var opener = SnapshotOpener(dataKey: dataKey)
        let plain = try opener.add(object) + (try opener.finish())
        #expect(plain == w.volume)
        #expect(!object.starts(with: w.volume.prefix(64)) && object.range(of: w.volume.prefix(4096)) == nil, "nothing in the clear")
        let steps = w.journal.entries(of: "snap-\(record.snapshotID)").map(\.step)
        #expect(steps == ["begin", "lv_created", "uploaded", "lv_removed", "done"])
        try await s3.deleteObject(key: record.objectKey)
    }

    @Test func aSnapshotRestoresVerifiedAndATamperedOneLeavesNothing() async throws {
        let w = try World(size: (6 << 20) + 3)
        defer { w.cleanup() }
        let first = try await w.snapshotter().snapshot(World.target)
        let second = try await w.snapshotter().snapshot(World.target)
        let chosen = try SnapshotRestorer.choose([first, second], volumeID: World.target.volumeID, snapshotID: nil)
        #expect(chosen.snapshotID == second.snapshotID, "the newest")
        let restorer = SnapshotRestorer(s3: try Moto.client(), masterKey: w.master, rangeSize: 1 << 20)
        let target = w.dir + "/restored.raw"
        #expect(try await restorer.restore(first, to: target) == Int64(w.volume.count))
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == w.volume)
        let e0 = await #expect(throws: SnapshotRestorer.Failure.self) { try await restorer.restore(first, to: target) }
        #expect(e0?.code == "target_exists")

        // The object changed in the bucket (one flipped byte in the last chunk): refused, nothing written.
        let s3 = try Moto.client()
        var object = try await s3.getObject(key: second.objectKey)
        object[object.count - 20] ^= 0x01
        try await s3.putObject(key: second.objectKey, body: object)
        let other = w.dir + "/never.raw"
        let e1 = await #expect(throws: SnapshotRestorer.Failure.self) { try await restorer.restore(second, to: other) }
        #expect(e1?.code == "verify_failed", "\(String(describing: e1))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: w.dir).filter { $0.contains("never") }.isEmpty, "no file, no temporary")
        // Another box's master key cannot open the wrapped data key.
        let stranger = SnapshotRestorer(s3: s3, masterKey: try SnapshotKeys.masterKey(pbsKey: Data(count: 32)))
        let e2 = await #expect(throws: SnapshotRestorer.Failure.self) { try await stranger.restore(first, to: other) }
        #expect(e2?.code == "key_failed" && !FileManager.default.fileExists(atPath: other))
        // A record whose checksum does not match the object.
        var wrongSum = first
        wrongSum.checksum = "sha256:" + String(repeating: "0", count: 64)
        let e3 = await #expect(throws: SnapshotRestorer.Failure.self) { try await restorer.restore(wrongSum, to: other) }
        #expect(e3?.code == "checksum_mismatch" && !FileManager.default.fileExists(atPath: other))
        #expect(throws: SnapshotRestorer.Failure.self) { try SnapshotRestorer.choose([first], volumeID: "local-lvm:vm-999-disk-0", snapshotID: nil) }
        try await s3.deleteObjects(keys: [first.objectKey, second.objectKey])
    }

    /// A full local disk: refused before a byte is written, naming the directory; and a record (the
    /// hub's word) naming an object outside the box's prefix is refused before anything is read.
    @Test(.enabled(if: getuid() == 0, "mounts a 16 MiB tmpfs as the full disk"))
    func aFullDiskOrAForeignObjectIsRefusedBeforeAnythingIsWritten() async throws {
        let w = try World(size: (3 << 20) + 1)
        defer { w.cleanup() }
        let record = try await w.snapshotter().snapshot(World.target)
        defer { Task { try? await Moto.client().deleteObject(key: record.objectKey) } }
        let small = w.dir + "/small"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=16m", "tmpfs", small]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "mount -t tmpfs")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [small]
            try? umount.run()
            umount.waitUntilExit()
        }
        let restorer = SnapshotRestorer(s3: try Moto.client(), masterKey: w.master, prefix: w.prefix)
        let e = await #expect(throws: SnapshotRestorer.Failure.self) { try await restorer.restore(record, to: small + "/media.raw") }
        #expect(e?.code == "no_space" && e?.message.contains(small) == true, "\(String(describing: e))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small).isEmpty, "nothing written")

        var foreign = record
        foreign.objectKey = "boxes/another-box/" + record.objectKey
        let f = await #expect(throws: SnapshotRestorer.Failure.self) { try await restorer.restore(foreign, to: w.dir + "/x.raw") }
        #expect(f?.code == "foreign_object" && !FileManager.default.fileExists(atPath: w.dir + "/x.raw"))
    }

    @Test func anUploadFailureAbortsTheUploadAndStillRemovesTheLV() async throws {
        let w = try World()
        defer { w.cleanup() }
        let e = await #expect(throws: VolumeSnapshotter.Failure.self) {
            _ = try await w.snapshotter(try Moto.client(secret: "wrong")).snapshot(World.target)
        }
        #expect(e?.code == "upload_failed" && e?.message.contains("SignatureDoesNotMatch") == true)
        #expect(!(e?.message.contains("wrong") ?? true), "the secret is not in the error")
        #expect(w.lvm.calls.withLock { $0.map(\.[0]) } == ["lvcreate", "lvremove"])
        #expect(try await Moto.client().listMultipartUploads(prefix: w.prefix).isEmpty)
        #expect(try await Moto.client().listObjects(prefix: w.prefix).isEmpty)
        let op = try #require(w.journal.allOperations().first)
        #expect(op.entries.map(\.step) == ["begin", "lv_created", "lv_removed", "failed"] && op.entries.last?.data["reason"] == "upload_failed")
    }

    @Test func aReadFailureAndAnLvcreateFailureAreNamed() async throws {
        let w = try World()
        defer { w.cleanup() }
        let lvm = w.lvm
        // The device never appears: read_failed, and the LV is still removed.
        let s = VolumeSnapshotter(
            backend: PrivilegedBackend(runner: lvm), s3: try Moto.client(), journal: w.journal, masterKey: w.master, prefix: w.prefix,
            devicePath: { _, _ in "/nonexistent/device" })
        let e = await #expect(throws: VolumeSnapshotter.Failure.self) { _ = try await s.snapshot(World.target) }
        #expect(e?.code == "read_failed" && e?.message.contains("/nonexistent/device") == true)
        #expect(lvm.calls.withLock { $0.map(\.[0]) } == ["lvcreate", "lvremove"])
        lvm.failing.withLock { $0 = ["lvcreate"] }
        let e2 = await #expect(throws: VolumeSnapshotter.Failure.self) { _ = try await w.snapshotter().snapshot(World.target) }
        #expect(e2?.code == "lvcreate_failed" && e2?.message.contains("injected failure") == true)
        #expect(try await Moto.client().listMultipartUploads(prefix: w.prefix).isEmpty)
    }

    @Test func recoveryRemovesLeftoversAbortsUploadsAndClosesTheJournal() async throws {
        let w = try World()
        defer { w.cleanup() }
        // What a crash mid-upload leaves: the snapshot LV, an open multipart upload, a journaled run.
        try w.volume.write(to: URL(fileURLWithPath: w.lvm.device("pve", "felhom-snap-20261201t020000z-deadbeef")))
        w.lvm.extra.withLock { $0 = ["pve/snap_vm-100-disk-1_before-upgrade"] }
        let s3 = try Moto.client()
        let key = w.prefix + "local-lvm/vm-100-disk-1/20261201T020000Z-deadbeef.felsnap"
        let uploadID = try await s3.createMultipartUpload(key: key)
        _ = try await s3.uploadPart(key: key, uploadID: uploadID, number: 1, body: Data(repeating: 1, count: 5 << 20))
        try w.journal.append(op: "snap-20261201T020000Z-deadbeef", kind: VolumeSnapshotter.kind, step: "begin")
        try w.journal.append(op: "snap-20261201T020000Z-deadbeef", kind: VolumeSnapshotter.kind, step: "lv_created")

        let cleaned = await try w.snapshotter().recover()
        #expect(cleaned.count == 3, "\(cleaned)")
        let removed = w.lvm.calls.withLock { $0.filter { $0[0] == "lvremove" } }
        #expect(removed == [["lvremove", "--yes", "pve/felhom-snap-20261201t020000z-deadbeef"]], "PVE's own snap_ LV is never touched")
        #expect(try await s3.listMultipartUploads(prefix: w.prefix).isEmpty)
        #expect(w.journal.inFlight().isEmpty)
        // And the next run works, with a new snapshot (a new salt, a new object).
        let record = try await w.snapshotter().snapshot(World.target)
        #expect(record.snapshotID != "20261201T020000Z-deadbeef")
        try await s3.deleteObject(key: record.objectKey)
    }
}

/// The agent's snapshot round end to end: simulated PVE, a real hub, moto, LVM recorded.
@Suite(.enabled(if: Moto.runSuites), .serialized)
struct AgentVolumeSnapshotTests {
    @Test func theAgentSnapshotsProtectedVolumesRecordsThemAndReportsTheRest() async throws {
        try await withAgentWorld { w in
            let lvmDir = w.stateDir + "-lvm"
            try FileManager.default.createDirectory(atPath: lvmDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: lvmDir) }
            let lvm = FakeLVM(dir: lvmDir)
            let media = Data((0..<((2 << 20) + 7)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            try media.write(to: URL(fileURLWithPath: lvm.device("pve", "vm-100-disk-1")))
            let master = try SnapshotKeys.masterKey(pbsKey: Data(repeating: 9, count: 32))
            let agent = try await w.agent(
                snapshots: VolumeSnapshotSettings(
                    s3: try Moto.client(), prefix: Moto.prefix(), masterKey: master, runner: lvm, devicePath: { lvm.device($0, $1) }))
            // web's media volume (local-lvm, LVM-thin) is protected; db opts out of it.
            var web = DesiredState.Guest(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running)
            web.mountPoints = [.init(key: "mp0", path: "/srv/media", sizeGB: 32, backup: false, bulk: true)]
            var db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)
            db.mountPoints = [.init(key: "mp0", path: "/var/lib/postgresql", sizeGB: 16, backup: true, bulk: false, backupEnabled: false)]
            var desired = DesiredState(guests: [web, db])
            desired.storagePolicy.backupHour = 0
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            try #require(agent.snapshots != nil)
            await agent.snapshots?.wait()

            let records = try await w.op.volumeSnapshots(hostID: w.hostID)
            #expect(records.map(\.volumeID) == ["local-lvm:vm-100-disk-1"] && records.first?.size == Int64(media.count))
            let completed = try await w.op.events(hostID: w.hostID, type: "volume_snapshot_completed")
            #expect(completed.count == 1)
            let report = try #require(try await agent.hostReport()?.volumeSnapshots)
            #expect(report.map(\.state) == [.protected, .disabled], "\(report)")
            #expect(report.first?.lastSnapshotAt != nil && report.last?.reason == "backup_disabled")
            // The object restores with the box's master key (what the hub holds cannot).
            let r = try #require(records.first)
            let object = try await Moto.client().getObject(key: r.objectKey)
            var opener = SnapshotOpener(
                dataKey: try SnapshotKeys.unwrap(r.wrappedDataKey, master: master, volumeID: r.volumeID, snapshotID: r.snapshotID))
            #expect(try opener.add(object) + (try opener.finish()) == media)
            // Once a day: the next cycle starts nothing.
            try await agent.cycle()
            await agent.snapshots?.wait()
            #expect(try await w.op.volumeSnapshots(hostID: w.hostID).count == 1)
            #expect(lvm.calls.withLock { $0.filter { $0[0] == "lvcreate" }.count } == 1)
            try await Moto.client().deleteObject(key: r.objectKey)
        }
    }
}

extension AgentVolumeSnapshotTests {
    /// A guest whose backup is due: its volume waits for the controller's quiesce, the snapshot LV
    /// is made inside it (before the controller sees the backup done and resumes the apps), and
    /// the round uploads that one: `consistency: app`.
    @Test func theSnapshotIsTakenWhileTheControllerHoldsTheAppsQuiesced() async throws {
        try await withAgentWorld { w in
            let lvmDir = w.stateDir + "-lvm"
            try FileManager.default.createDirectory(atPath: lvmDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: lvmDir) }
            let lvm = FakeLVM(dir: lvmDir)
            let media = Data((0..<((1 << 20) + 3)).map { UInt8(truncatingIfNeeded: $0 &* 3) })
            try media.write(to: URL(fileURLWithPath: lvm.device("pve", "vm-100-disk-1")))
            let key = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            let agent = try await w.agent(
                backup: BackupSettings(boxKey: key, appBound: 3600, taskTimeout: .seconds(30), timeZone: .gmt),
                snapshots: VolumeSnapshotSettings(
                    s3: try Moto.client(), prefix: Moto.prefix(), masterKey: try SnapshotKeys.masterKey(pbsKey: Data(repeating: 3, count: 32)),
                    runner: lvm, devicePath: { lvm.device($0, $1) }))
            var web = DesiredState.Guest(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running)
            web.mountPoints = [.init(key: "mp0", path: "/srv/media", sizeGB: 32, backup: false, bulk: true)]
            var desired = DesiredState(guests: [web])
            desired.storagePolicy.backupStorage = "pbs-felhom"
            desired.storagePolicy.backupHour = 0
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            func lvcreates() -> Int { lvm.calls.withLock { $0.filter { $0[0] == "lvcreate" }.count } }

            try await agent.cycle()
            await agent.snapshots?.wait()
            let backups = try #require(agent.backups)
            #expect(await backups.backupDue(vmid: 100))
            #expect(lvcreates() == 0, "the volume waits for the guest's quiet moment")

            // The controller quiesced the apps and asks for the backup (POST /backup).
            let run = try await backups.startBackup(vmid: 100)
            var status = run.status
            for _ in 0..<600 where status == .running {
                try await Task.sleep(for: .milliseconds(50))
                status = try await backups.backupStatus(vmid: 100, id: run.id).status
            }
            #expect(status == .done)
            #expect(lvcreates() == 1, "the snapshot LV exists before the controller sees the backup done")

            try await agent.cycle()
            await agent.snapshots?.wait()
            let completed = try await w.op.events(hostID: w.hostID, type: "volume_snapshot_completed")
            #expect(completed.count == 1 && completed.first?.data["consistency"] == "app", "\(completed)")
            #expect(lvcreates() == 1 && lvm.calls.withLock { $0.filter { $0[0] == "lvremove" }.count } == 1)
            let record = try #require(try await w.op.volumeSnapshots(hostID: w.hostID).first)
            #expect(record.size == Int64(media.count))
            try await Moto.client().deleteObject(key: record.objectKey)
        }
    }
}

/// `volume.restore`, the operator-signed op that writes a snapshot over a guest's volume:
/// simulated PVE, a real hub, moto, the volume a regular file.
@Suite(.enabled(if: Moto.runSuites), .serialized)
struct VolumeRestoreOpTests {
    struct Scene {
        let w: AgentWorld
        let agent: Agent
        let lvm: FakeLVM
        let media: Data
        let record: VolumeSnapshotRecord
        var device: String { lvm.device("pve", "vm-100-disk-1") }
        var staging: String { w.stateDir + "/volume-restore" }
    }

    /// The agent snapshots web's media volume once, then the volume is ruined.
    func withScene(_ body: (Scene) async throws -> Void) async throws {
        try await withAgentWorld { w in
            let lvmDir = w.stateDir + "-lvm"
            try FileManager.default.createDirectory(atPath: lvmDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: lvmDir) }
            let lvm = FakeLVM(dir: lvmDir)
            let media = Data((0..<((3 << 20) + 11)).map { UInt8(truncatingIfNeeded: $0 &* 13) })
            try media.write(to: URL(fileURLWithPath: lvm.device("pve", "vm-100-disk-1")))
            let agent = try await w.agent(
                snapshots: VolumeSnapshotSettings(
                    s3: try Moto.client(), prefix: Moto.prefix(), masterKey: try SnapshotKeys.masterKey(pbsKey: Data(repeating: 5, count: 32)),
                    runner: lvm, devicePath: { lvm.device($0, $1) }))
            var web = DesiredState.Guest(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running)
            web.mountPoints = [.init(key: "mp0", path: "/srv/media", sizeGB: 32, backup: false, bulk: true)]
            let db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)
            var desired = DesiredState(guests: [web, db])
            desired.storagePolicy.backupHour = 0
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            await agent.snapshots?.wait()
            let record = try #require(try await w.op.volumeSnapshots(hostID: w.hostID).first)
            try Data("ruined by a bad update".utf8).write(to: URL(fileURLWithPath: lvm.device("pve", "vm-100-disk-1")))
            let scene = Scene(w: w, agent: agent, lvm: lvm, media: media, record: record)
            do { try await body(scene) } catch {
                try? await Moto.client().deleteObject(key: record.objectKey)
                throw error
            }
            try? await Moto.client().deleteObject(key: record.objectKey)
        }
    }

    func queue(_ s: Scene, vmid: Int = 100, snapshot: String? = nil) async throws -> String {
        try await s.w.queueSigned(
            "volume.restore", vmid: vmid,
            params: ["volume_id": .string(s.record.volumeID), "snapshot_id": .string(snapshot ?? s.record.snapshotID)], key: s.w.pinned)
    }

    @Test func theSignedRestoreWritesTheVerifiedSnapshotOverTheVolume() async throws {
        try await withScene { s in
            let id = try await queue(s)
            try await s.agent.cycle()
            let view = try await s.w.op.signedOp(id)
            #expect(view.status == .applied, "\(view)")
            #expect(s.agent.journal.entries(of: id).map(\.step) == ["begin", "downloaded", "stop_started", "copy_started", "copied", "done"])
            #expect(try Data(contentsOf: URL(fileURLWithPath: s.device)) == s.media)
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: s.staging)) ?? []).isEmpty, "the staging file is gone")
            // The reconciler started the guest again (desired: running).
            #expect(await s.w.sim.engine.snapshot().containers[100]?.running == true)
        }
    }

    @Test func aTamperedObjectIsRefusedAndTheVolumeAndGuestAreUntouched() async throws {
        try await withScene { s in
            let s3 = try Moto.client()
            var object = try await s3.getObject(key: s.record.objectKey)
            object[object.count / 2] ^= 0x01
            _ = try await s3.putObject(key: s.record.objectKey, body: object)
            let id = try await queue(s)
            try await s.agent.cycle()
            let view = try await s.w.op.signedOp(id)
            #expect(view.status == .rejected, "\(view)")
            #expect(view.reason?.contains("verify_failed") == true || view.reason?.contains("checksum_mismatch") == true, "\(view)")
            #expect(try String(contentsOfFile: s.device, encoding: .utf8) == "ruined by a bad update", "the volume was not touched")
            #expect(await s.w.sim.engine.snapshot().containers[100]?.running == true, "the guest was not stopped")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: s.staging)) ?? []).isEmpty, "nothing half-written is left")
        }
    }

    @Test func aCopyCutOffByACrashIsWrittenAgainFromTheVerifiedFile() async throws {
        try await withScene { s in
            let id = try await queue(s)
            // As a crash would leave it: verified file staged, copy started, the volume half-written,
            // and the object gone (a second download would fail: the resume must not need one).
            let delivered = try #require(try await HubClient(url: s.w.hubURL, key: s.w.hostKey).nextSignedOp(excluding: []))
            try FileManager.default.createDirectory(atPath: s.staging, withIntermediateDirectories: true)
            let staged = s.staging + "/volume-restore-" + id + ".img"
            try s.media.write(to: URL(fileURLWithPath: staged))
            try s.agent.journal.append(
                op: id, kind: SignedOpRunner.kind, step: "begin", data: ["blob": String(decoding: delivered.blob, as: UTF8.self)])
            try s.agent.journal.append(op: id, kind: SignedOpRunner.kind, step: "downloaded", data: ["staging": staged])
            try s.agent.journal.append(op: id, kind: SignedOpRunner.kind, step: "copy_started")
            try s.media.prefix(1000).write(to: URL(fileURLWithPath: s.device))
            try await Moto.client().deleteObject(key: s.record.objectKey)
            try await s.agent.cycle()
            #expect(try await s.w.op.signedOp(id).status == .applied)
            #expect(try Data(contentsOf: URL(fileURLWithPath: s.device)) == s.media)
            #expect(!FileManager.default.fileExists(atPath: staged))
        }
    }

    @Test func theHubAndTheAgentRefuseWhatDoesNotFit() async throws {
        try await withScene { s in
            // The hub: only a complete snapshot it recorded.
            await #expect(throws: (any Error).self) { _ = try await queue(s, snapshot: "20200101T000000Z-00000000") }
            // The agent: the volume must be a mount point of the op's guest (db has none).
            let id = try await queue(s, vmid: 101)
            try await s.agent.cycle()
            let view = try await s.w.op.signedOp(id)
            #expect(view.status == .rejected && view.reason?.contains("not_a_mount_point") == true, "\(view)")
            #expect(try String(contentsOfFile: s.device, encoding: .utf8) == "ruined by a bad update")
        }
    }
}

/// S3 takes at most 10,000 parts: a big volume gets bigger parts (pure arithmetic).
@Suite struct SnapshotPartSizeTests {
    @Test(arguments: [
        (Int64(20 << 20), 8 << 20), (Int64(80) << 30, 10 << 20), (Int64(100_000_000_000), 11 << 20), (Int64(4) << 40, 467 << 20),
    ])
    func partsStayUnder9000(objectSize: Int64, expected: Int) {
        let part = VolumeSnapshotter.partSize(objectSize: objectSize, minimum: 8 << 20)
        #expect(part == expected)
        #expect((objectSize + Int64(part) - 1) / Int64(part) <= 9_000)
        #expect(part % (1 << 20) == 0)
    }

    @Test func theObjectSizeFormulaMatchesTheFormat() {
        #expect(SnapshotFormat.objectSize(plaintext: 0, snapshotID: "s") == 47 + 1 + 16)
        #expect(SnapshotFormat.objectSize(plaintext: 1 << 20, snapshotID: "ab") == 47 + 2 + (1 << 20) + 16)
        #expect(SnapshotFormat.objectSize(plaintext: (1 << 20) + 1, snapshotID: "ab") == 47 + 2 + (1 << 20) + 1 + 32)
    }
}
