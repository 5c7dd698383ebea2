import Crypto
import Foundation
import ObjectStore
import Testing

/// The snapshot master key and the wrapped data keys the hub stores.
struct SnapshotKeysTests {
    @Test func wrappedKeysOpenOnlyForTheirRecordAndTheirBox() throws {
        let master = try SnapshotKeys.masterKey(pbsKey: Data(0..<32))
        let other = try SnapshotKeys.masterKey(pbsKey: Data(1..<33))
        #expect(SnapshotKeys.keyID(master) != SnapshotKeys.keyID(other) && SnapshotKeys.keyID(master).hasPrefix("snapkey:"))
        #expect(SnapshotKeys.keyID(master) == SnapshotKeys.keyID(try SnapshotKeys.masterKey(pbsKey: Data(0..<32))), "derived, so stable")
        let dataKey = SnapshotKeys.newDataKey()
        let wrapped = try SnapshotKeys.wrap(dataKey, master: master, volumeID: "local-lvm:vm-100-disk-1", snapshotID: "s1")
        #expect(wrapped.hasPrefix("v1.") && !wrapped.contains(dataKey.withUnsafeBytes { Data($0) }.base64EncodedString()))
        #expect(try SnapshotKeys.unwrap(wrapped, master: master, volumeID: "local-lvm:vm-100-disk-1", snapshotID: "s1") == dataKey)
        #expect(throws: SnapshotKeys.KeyError.self, "another box") {
            try SnapshotKeys.unwrap(wrapped, master: other, volumeID: "local-lvm:vm-100-disk-1", snapshotID: "s1")
        }
        #expect(throws: SnapshotKeys.KeyError.self, "moved to another snapshot's record") {
            try SnapshotKeys.unwrap(wrapped, master: master, volumeID: "local-lvm:vm-100-disk-1", snapshotID: "s2")
        }
        #expect(throws: SnapshotKeys.KeyError.self, "moved to another volume's record") {
            try SnapshotKeys.unwrap(wrapped, master: master, volumeID: "local-lvm:vm-101-disk-1", snapshotID: "s1")
        }
        #expect(throws: SnapshotKeys.KeyError.self) { try SnapshotKeys.unwrap("v2.abc", master: master, volumeID: "v", snapshotID: "s1") }
        #expect(throws: SnapshotKeys.KeyError.self) { try SnapshotKeys.masterKey(pbsKey: Data(count: 16)) }
    }
}
