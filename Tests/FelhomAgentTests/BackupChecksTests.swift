import FelhomAgent
import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

/// The fail-closed rules against what the simulator's PVE API really answers.
@Suite struct BackupChecksTests {
    let node = "pve1"

    func target(_ h: SimHarness, _ storage: String, boxKey: String, needed: Int64 = 1 << 30) async throws -> BackupError.Code? {
        let c = try h.client()
        let config = try await c.storages().first { $0.storage == storage }
        let status = try await c.nodeStorages(node: node).first { $0.storage == storage }
        do {
            try BackupChecks.target(storage, config: config, status: status, boxKey: boxKey, neededBytes: needed)
            return nil
        } catch { return error.code }
    }

    func pbs(_ h: SimHarness) async throws -> SimStorage { try #require(await h.engine.snapshot().storages.first { $0.id == "pbs-felhom" }) }

    @Test func theTargetMustBeAnActivePBSWithThisBoxsKeyAndRoom() async throws {
        try await withSim { h in
            let boxKey = try #require(try await pbs(h).encryptionKeyFingerprint)
            #expect(try await target(h, "pbs-felhom", boxKey: boxKey) == nil)
            #expect(try await target(h, "pbs-felhom", boxKey: boxKey.uppercased().replacingOccurrences(of: ":", with: "")) == nil, "any spelling")
            #expect(try await target(h, "pbs-felhom", boxKey: PBSKey.fingerprint(rawKey: Array(repeating: 7, count: 32))) == .encryptionKeyMismatch)
            #expect(try await target(h, "pbs-felhom", boxKey: boxKey, needed: 1 << 50) == .noSpace)
            #expect(try await target(h, "local", boxKey: boxKey) == .badTarget, "a dir storage is never a backup target")
            #expect(try await target(h, "nope", boxKey: boxKey) == .badTarget)
            var st = try await pbs(h)
            st.active = false
            await h.engine.setStorage(st)
            #expect(try await target(h, "pbs-felhom", boxKey: boxKey) == .storageUnreachable)
            st.active = true
            st.encryptionKeyFingerprint = nil
            await h.engine.setStorage(st)
            #expect(try await target(h, "pbs-felhom", boxKey: boxKey) == .encryptionKeyMissing)
        }
    }

    @Test func aStoredEntryMustCarryThisBoxsKey() async throws {
        try await withSim { h in
            let c = try h.client()
            let boxKey = try #require(try await pbs(h).encryptionKeyFingerprint)
            let seeded = try #require(try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 100).first)
            try BackupChecks.stored(seeded, boxKey: boxKey)
            do throws(BackupError) {
                try BackupChecks.stored(seeded, boxKey: PBSKey.fingerprint(rawKey: Array(repeating: 1, count: 32)))
                Issue.record("an entry under another key passed")
            } catch { #expect(error.code == .unencrypted && error.message.contains("not this box's key")) }
            // The key removed behind the agent's back: the new entry is plaintext → unencrypted.
            var st = try await pbs(h)
            st.encryptionKeyFingerprint = nil
            await h.engine.setStorage(st)
            let up = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [101], storage: "pbs-felhom")).upid)
            _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
            let plain = try #require(try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 101).first)
            do throws(BackupError) {
                try BackupChecks.stored(plain, boxKey: boxKey)
                Issue.record("a plaintext backup passed")
            } catch { #expect(error.code == .unencrypted && error.message.contains("WITHOUT encryption")) }
        }
    }
}
