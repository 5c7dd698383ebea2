import FelhomCore
import Foundation

/// One volume snapshot in object storage (issue 17; docs/object-storage.md), as the box reports
/// it (`POST /api/v1/volume-snapshots`) and the hub lists it. No key in the clear: the data key is
/// wrapped by the box's snapshot master key, which the hub never has.
public struct VolumeSnapshotRecord: Codable, Sendable, Equatable {
    /// PVE's volume id (`local-lvm:vm-100-disk-1`).
    public var volumeID: String
    public var snapshotID: String
    public var createdAt: Date
    /// Plaintext bytes (the volume's size).
    public var size: Int64
    /// Bytes of the stored object.
    public var objectSize: Int64
    /// `sha256:` + hex of the encrypted object.
    public var checksum: String
    /// `snapkey:` + 16 hex digits: which master key wraps the data key.
    public var encryptionKeyID: String
    /// `v1.` + base64 (docs/object-storage.md "Keys").
    public var wrappedDataKey: String
    public var objectKey: String
    /// `complete`, or `deleted` once retention removed the object.
    public var state: String

    public init(
        volumeID: String, snapshotID: String, createdAt: Date, size: Int64, objectSize: Int64, checksum: String, encryptionKeyID: String,
        wrappedDataKey: String, objectKey: String, state: String = "complete"
    ) {
        self.volumeID = volumeID
        self.snapshotID = snapshotID
        self.createdAt = createdAt
        self.size = size
        self.objectSize = objectSize
        self.checksum = checksum
        self.encryptionKeyID = encryptionKeyID
        self.wrappedDataKey = wrappedDataKey
        self.objectKey = objectKey
        self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case volumeID = "volume_id"
        case snapshotID = "snapshot_id"
        case createdAt = "created_at"
        case size
        case objectSize = "object_size"
        case checksum
        case encryptionKeyID = "encryption_key_id"
        case wrappedDataKey = "wrapped_data_key"
        case objectKey = "object_key"
        case state
    }

    /// The rules the hub enforces (and the OpenAPI document states), each naming its field.
    public func validate() throws(ContractError) {
        func check(_ ok: Bool, _ path: String, _ message: String) throws(ContractError) {
            guard ok else { throw ContractError(path: "$.\(path)", message: message) }
        }
        try check(
            Pattern.whole(volumeID, #"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}"#), "volume_id", "must be a PVE volume id (1–200 of A-Z a-z 0-9 . _ : / -)")
        try check(Pattern.whole(snapshotID, #"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"#), "snapshot_id", "must be 1–128 of A-Z a-z 0-9 . _ -")
        try check(size >= 0, "size", "must not be negative")
        try check(objectSize >= 0, "object_size", "must not be negative")
        try check(Pattern.whole(checksum, "sha256:[0-9a-f]{64}"), "checksum", "must be sha256: and 64 lower-case hex digits")
        try check(Pattern.whole(encryptionKeyID, "snapkey:[0-9a-f]{16}"), "encryption_key_id", "must be snapkey: and 16 lower-case hex digits")
        try check(Pattern.whole(wrappedDataKey, "v1\\.[A-Za-z0-9+/]{80}"), "wrapped_data_key", "must be v1. and the base64 of 60 bytes")
        try check(
            !objectKey.isEmpty && objectKey.unicodeScalars.count <= 1024
                && objectKey.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F },
            "object_key", "must be 1–1024 printable characters")
        try check(state == "complete", "state", "a box reports complete snapshots only")
    }
}

/// `GET /api/v1/hosts/{id}/volume-snapshots`.
public struct VolumeSnapshotList: Codable, Sendable {
    public var snapshots: [VolumeSnapshotRecord]
    public init(snapshots: [VolumeSnapshotRecord]) { self.snapshots = snapshots }
}

/// `POST /api/v1/hosts/{id}/volume-snapshots/deleted`: the retention job removed these objects.
public struct DeletedVolumeSnapshots: Codable, Sendable {
    public var snapshotIDs: [String]
    public init(snapshotIDs: [String]) { self.snapshotIDs = snapshotIDs }
    enum CodingKeys: String, CodingKey { case snapshotIDs = "snapshot_ids" }
}

/// Which snapshots retention deletes (issue 17): per volume, the newest `keep` complete ones stay
/// (default 14), the older ones go. Only complete snapshots are ever recorded (a failed run
/// leaves no record), so a failed newer run can never cost the last good one; `keep` is at
/// least 1, so the only complete snapshot of a volume is never deleted.
public enum VolumeSnapshotRetention {
    public static let defaultKeep = 14

    /// The records to delete, oldest first.
    public static func plan(_ records: [VolumeSnapshotRecord], keep: Int = defaultKeep) -> [VolumeSnapshotRecord] {
        let keep = max(1, keep)
        var out: [VolumeSnapshotRecord] = []
        for (_, list) in Dictionary(grouping: records.filter { $0.state == "complete" }, by: \.volumeID) {
            let newestFirst = list.sorted { ($0.createdAt, $0.snapshotID) > ($1.createdAt, $1.snapshotID) }
            out += newestFirst.dropFirst(keep)
        }
        return out.sorted { ($0.createdAt, $0.snapshotID) < ($1.createdAt, $1.snapshotID) }
    }
}
