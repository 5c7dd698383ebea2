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

/// `PUT /storage/{storage}` as `pvesm set` uses it: the operator removes or generates the key;
/// the agent's token may not touch storage config.
@Suite struct PBSStorageConfigTests {
    /// Storage definitions need `Datastore.Allocate` on `/storage`: the auditor cannot touch the
    /// key. (The agent's token has it there, unpropagated, to add the storages of assigned disks —
    /// PVE checks `PUT /storage/{id}` on `/storage` itself, so it could; the agent only ever calls
    /// the storage endpoints for its own `felhom-*` disk storages: docs/proxmox.md.)
    @Test func theKeyCanBeRemovedAndGeneratedByRootOnly() async throws {
        try await withSim { h in
            await #expect(throws: PVEError.self) {
                _ = try await h.client(SimSeed.auditorTokenID).request("PUT", "/storage/pbs-felhom", form: [("delete", "encryption-key")])
            }
            let root = try h.rootClient()
            _ = try await root.request("PUT", "/storage/pbs-felhom", form: [("delete", "encryption-key")])
            #expect(try await root.storages().first { $0.storage == "pbs-felhom" }?.encryptionKey == nil)
            let made = try await root.request("PUT", "/storage/pbs-felhom", form: [("encryption-key", "autogen")])
            let keyJSON = try #require(made["config"]?["encryption-key"]?.stringValue)
            let fingerprint = try #require(try JSONValue.parse(Data(keyJSON.utf8))["fingerprint"]?.stringValue)
            #expect(made["type"] == "pbs" && fingerprint.count == 95)
            #expect(try await root.storages().first { $0.storage == "pbs-felhom" }?.encryptionKey == fingerprint, "the config shows the fingerprint")
            await #expect(throws: PVEError.self) {
                _ = try await root.request("PUT", "/storage/pbs-felhom", form: [("encryption-key", "not json")])
            }
            await #expect(throws: PVEError.self) { _ = try await root.request("PUT", "/storage/local", form: [("encryption-key", "autogen")]) }
        }
    }
}

/// Two simulated hosts on one simulated PBS datastore: each sees only its own namespace, backups
/// made at the same time are both kept, a host pointed at another box's namespace (the DR drill)
/// restores that box's backups, and the datastore's prune job — not the box — applies keep-last.
@Suite struct SharedPBSDatastoreTests {
    func backUp(_ h: SimHarness, _ vmid: Int) async throws -> String {
        let c = try h.client()
        let up = try #require(try await c.vzdump(node: "pve1", VzdumpOptions(vmids: [vmid], storage: "pbs-felhom")).upid)
        _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
        return try #require(try await c.storageContent(node: "pve1", storage: "pbs-felhom", content: "backup", vmid: vmid).map(\.volid).max())
    }

    func namespace(_ ns: String) -> (inout SimState) -> Void {
        { state in
            if let i = state.storages.firstIndex(where: { $0.id == "pbs-felhom" }) { state.storages[i].namespace = ns }
            state.volumes.removeAll { $0.storage == "pbs-felhom" }
        }
    }

    @Test func twoHostsShareOneDatastoreByNamespaceAndADrillRestoresAnotherBoxsBackup() async throws {
        let store = SimPBSDatastore(name: "felhom")
        try await withSim(sharedPBS: store, namespace("customers/box-1")) { a in
            try await withSim(sharedPBS: store, namespace("customers/box-2")) { b in
                // Box 1's guest carries data; both boxes back up at the same time.
                let rootfs = try #require(await a.engine.snapshot().containers[100]?.config["rootfs"]?.split(separator: ",").first)
                await a.engine.writeVolumeData(volid: String(rootfs), data: "box-1 photos")
                async let fromA = backUp(a, 100)
                async let fromB = backUp(b, 100)
                let (volA, volB) = try await (fromA, fromB)
                #expect(store.snapshots(namespace: "customers/box-1").count == 1 && store.snapshots(namespace: "customers/box-2").count == 1)
                let seenByB = try await b.client().storageContent(node: "pve1", storage: "pbs-felhom", content: "backup", vmid: nil)
                #expect(seenByB.map(\.volid) == [volB], "box 2 sees only its own namespace")
                #expect(volA.hasPrefix("pbs-felhom:backup/ct/100/"))

                // The drill: box 2 is pointed at box 1's namespace and restores its backup as guest 300.
                var st = try #require(await b.engine.snapshot().storages.first { $0.id == "pbs-felhom" })
                st.namespace = "customers/box-1"
                await b.engine.setStorage(st)
                let listed = try await b.client().storageContent(node: "pve1", storage: "pbs-felhom", content: "backup", vmid: nil)
                #expect(listed.map(\.volid) == [volA] && listed.first?.encrypted != nil)
                let root = try b.rootClient()
                let up = try await root.createContainer(node: "pve1", ContainerCreateSpec(vmid: 300, ostemplate: volA, restore: true))
                _ = try await root.waitTask(up, initialInterval: .milliseconds(10))
                let snap = await b.engine.snapshot()
                let restoredRoot = snap.containers[300]?.config["rootfs"]?.split(separator: ",").first.map(String.init)
                #expect(snap.volumes.first { $0.volid == restoredRoot }?.data == "box-1 photos", "box 1's data, restored on box 2")
                #expect(store.snapshots(namespace: "customers/box-1").count == 1, "restoring reads; the datastore is unchanged")
            }
        }
    }

    @Test func thePruneJobKeepsTheNewestPerGuestAndNeverAProtectedOne() async throws {
        let store = SimPBSDatastore(name: "felhom")
        try await withSim(sharedPBS: store, namespace("customers/box-1")) { h in
            var made: [String] = []
            for _ in 0..<3 {
                made.append(try await backUp(h, 100))
                try await Task.sleep(for: .seconds(1.05))  // one-second snapshot names
            }
            _ = try await backUp(h, 101)
            store.setPruneJob(.init(namespace: "customers/box-1", keepLast: 2))
            store.setPruneJob(.init(namespace: "customers/box-9", keepLast: 1))
            let removed = store.runPruneJobs()
            #expect(removed["customers/box-1"] == [made[0].replacingOccurrences(of: "pbs-felhom:", with: "")])
            let left = try await h.client().storageContent(node: "pve1", storage: "pbs-felhom", content: "backup", vmid: nil).map(\.volid)
            #expect(Set(left) == Set(made.dropFirst()).union(left.filter { $0.contains("/ct/101/") }) && left.count == 3, "\(left)")
        }
    }

    @Test func aFileBackedDatastoreIsSharedBetweenProcessesAndMergesChanges() throws {
        let path = URL(fileURLWithPath: NSTemporaryDirectory() + "felhom-pbs-\(UUID().uuidString).json")
        let one = SimPBSDatastore(name: "felhom", path: path)
        let two = SimPBSDatastore(name: "felhom", path: path)
        func snap(_ ns: String, _ t: String) -> SimPBSDatastore.Snapshot {
            .init(
                namespace: ns, path: "backup/ct/100/\(t)",
                volume: SimVolume(volid: "x:backup/ct/100/\(t)", storage: "x", content: "backup", format: "pbs-ct", size: 1, vmid: 100, ctime: 0))
        }
        one.apply(namespace: "a", upserts: [snap("a", "T1")], removals: [])
        two.apply(namespace: "a", upserts: [snap("a", "T2")], removals: [])
        #expect(one.snapshots(namespace: "a").map(\.path).sorted() == ["backup/ct/100/T1", "backup/ct/100/T2"], "neither write lost the other")
        two.apply(namespace: "a", upserts: [], removals: ["backup/ct/100/T1"])
        #expect(SimPBSDatastore(name: "felhom", path: path).snapshots(namespace: "a").map(\.path) == ["backup/ct/100/T2"])
    }
}
