import FelhomAPI
import Foundation
import SQLKit

/// SQL of volume snapshot records (`volume_snapshots`, durable; one row per host and snapshot id).
enum VolumeSnapshotsTable {
    enum Saved { case inserted, unchanged, conflict }

    /// Inserts a record; the same record again is `unchanged` (a box retrying after a lost
    /// answer), another record under the same id is a `conflict`.
    static func insert(hostID: String, _ r: VolumeSnapshotRecord, at: Int64, in db: any SQLDatabase) async throws -> Saved {
        if let row = try await db.select().column("*").from("volume_snapshots").where("host_id", .equal, SQLBind(hostID))
            .where("snapshot_id", .equal, SQLBind(r.snapshotID)).first()
        {
            return try decode(row) == r ? .unchanged : .conflict
        }
        try await db.insert(into: "volume_snapshots")
            .columns(
                "host_id", "snapshot_id", "volume_id", "created_at", "size", "object_size", "checksum", "encryption_key_id", "wrapped_data_key",
                "object_key", "state", "recorded_at"
            )
            .values(
                SQLBind(hostID), SQLBind(r.snapshotID), SQLBind(r.volumeID), SQLBind(Int64(r.createdAt.timeIntervalSince1970)), SQLBind(r.size),
                SQLBind(r.objectSize), SQLBind(r.checksum), SQLBind(r.encryptionKeyID), SQLBind(r.wrappedDataKey), SQLBind(r.objectKey),
                SQLBind(r.state), SQLBind(at)
            ).run()
        return .inserted
    }

    /// A host's records, newest first (all volumes, or one).
    static func list(hostID: String, volumeID: String?, in db: any SQLDatabase) async throws -> [VolumeSnapshotRecord] {
        var q = db.select().column("*").from("volume_snapshots").where("host_id", .equal, SQLBind(hostID))
        if let volumeID { q = q.where("volume_id", .equal, SQLBind(volumeID)) }
        return try await q.orderBy("created_at", .descending).orderBy("snapshot_id", .descending).limit(10_000).all().map(decode)
    }

    /// Marks records deleted (their objects are gone); returns how many changed.
    static func markDeleted(hostID: String, snapshotIDs: [String], at: Int64, in db: any SQLDatabase) async throws -> Int {
        var changed = 0
        for id in snapshotIDs {
            let found = try await db.select().column("state").from("volume_snapshots").where("host_id", .equal, SQLBind(hostID))
                .where("snapshot_id", .equal, SQLBind(id)).first()
            guard let state = try found?.decode(column: "state", as: String.self), state != "deleted" else { continue }
            try await db.update("volume_snapshots").set("state", to: SQLBind("deleted")).set("deleted_at", to: SQLBind(at))
                .where("host_id", .equal, SQLBind(hostID)).where("snapshot_id", .equal, SQLBind(id)).run()
            changed += 1
        }
        return changed
    }

    static func decode(_ row: any SQLRow) throws -> VolumeSnapshotRecord {
        VolumeSnapshotRecord(
            volumeID: try row.decode(column: "volume_id", as: String.self), snapshotID: try row.decode(column: "snapshot_id", as: String.self),
            createdAt: Date(timeIntervalSince1970: TimeInterval(try row.decode(column: "created_at", as: Int64.self))),
            size: try row.decode(column: "size", as: Int64.self), objectSize: try row.decode(column: "object_size", as: Int64.self),
            checksum: try row.decode(column: "checksum", as: String.self),
            encryptionKeyID: try row.decode(column: "encryption_key_id", as: String.self),
            wrappedDataKey: try row.decode(column: "wrapped_data_key", as: String.self),
            objectKey: try row.decode(column: "object_key", as: String.self),
            state: try row.decode(column: "state", as: String.self))
    }
}
