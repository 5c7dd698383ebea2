import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

/// The simulator's PBS storage as PVE shows it (PVE-FACTS §2.14 and §7): the default seed's
/// `pbs-felhom` with a key, encrypted entries carrying the key fingerprint, verification state,
/// plaintext entries from a storage without a key, and the faults backups must survive.
@Suite struct PBSSimTests {
    let node = "pve1"

    func changePBS(_ h: SimHarness, _ change: (inout SimStorage) -> Void) async throws {
        var st = try #require(await h.engine.snapshot().storages.first { $0.id == "pbs-felhom" })
        change(&st)
        await h.engine.setStorage(st)
    }

    @Test func theDefaultSeedHasAnEncryptedPBSStorageNamedPbsFelhom() async throws {
        try await withSim { h in
            let c = try h.client()
            let pbs = try #require(try await c.storages().first { $0.storage == "pbs-felhom" })
            #expect(pbs.type == "pbs" && pbs.encryptionKey != nil, "PVE shows that a key is configured (its fingerprint), never the key")
            let seeded = try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 100)
            #expect(seeded.first?.encrypted?.count == 95, "the key's SHA-256 fingerprint, colon separated")
            #expect(seeded.first?.verificationState == "ok")
        }
    }

    @Test func backupsRecordTheKeyConfiguredAtBackupTimeAndAStorageWithoutOneIsPlaintext() async throws {
        try await withSim { h in
            let c = try h.client()
            let up = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [101], storage: "pbs-felhom")).upid)
            _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
            let key = await h.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint
            #expect(try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 101).first?.encrypted == key)
            // The key is removed from the storage: the next backup is plaintext, the earlier one keeps its fingerprint.
            try await changePBS(h) { $0.encryptionKeyFingerprint = nil }
            try await Task.sleep(for: .seconds(1.1))  // PBS snapshot names have one-second resolution
            let up2 = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [101], storage: "pbs-felhom")).upid)
            _ = try await c.waitTask(up2, initialInterval: .milliseconds(10))
            let items = try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 101).sorted { $0.volid < $1.volid }
            #expect(items.count == 2 && items[0].encrypted == key && items[1].encrypted == nil)
            #expect(try await c.taskLog(up2, start: 0, limit: 0).map(\.text).contains("INFO: WARNING: backup is not encrypted"))
        }
    }

    @Test func faultsFailTheBackupOrItsVerification() async throws {
        try await withSim { h in
            var injected = SimFaults()
            injected.verificationFailures = [101]
            await h.engine.setFaults(injected)
            let c = try h.client()
            let up = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [101], storage: "pbs-felhom")).upid)
            _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
            #expect(try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 101).first?.verificationState == "failed")
            // Unreachable PBS: the task fails naming the server, nothing is stored.
            try await changePBS(h) { $0.active = false }
            let up2 = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [100], storage: "pbs-felhom")).upid)
            let failed = await #expect(throws: PVEError.self) { _ = try await c.waitTask(up2, initialInterval: .milliseconds(10)) }
            #expect(failed?.exitStatus?.contains("Can't connect to pbs.felhom.internal:8007") == true, "\(String(describing: failed))")
            try await changePBS(h) { $0.active = true }
            #expect(try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 100).count == 1, "only the seeded one")
            // A task failure injected by path.
            var faults = await h.engine.snapshot().faults
            faults.taskFailures["/nodes/pve1/vzdump"] = "job errors"
            await h.engine.setFaults(faults)
            let up3 = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [100], storage: "pbs-felhom")).upid)
            await #expect(throws: PVEError.self) { _ = try await c.waitTask(up3, initialInterval: .milliseconds(10)) }
        }
    }
}
