import FelhomAPI
import FelhomCore
import Foundation

/// Volume snapshot records (issue 17; docs/object-storage.md): a box reports each snapshot it
/// uploaded; the operator, the host's customer and the box list them; the retention job marks the
/// ones whose objects it deleted. The hub holds only wrapped keys: it cannot decrypt a snapshot.
extension Hub {
    /// A box reports one of its snapshots (host key only). The same record again is accepted (a
    /// retry); another record under the same snapshot id is 409.
    public func recordVolumeSnapshot(_ record: VolumeSnapshotRecord, by principal: Principal) async throws {
        guard case .host(let hostID, _) = principal else { throw HubError.forbidden("report volume snapshots (host keys only)") }
        do { try record.validate() } catch { throw HubError.badRequest(error.message, path: error.path) }
        let now = self.now
        let saved = try await store.transaction { db in
            try await VolumeSnapshotsTable.insert(hostID: hostID, record, at: now, in: db)
        }
        if saved == .conflict {
            throw HubError(.conflict, "snapshot_conflict", "snapshot \(record.snapshotID) is already recorded with other values")
        }
    }

    /// A host's snapshot records, newest first (`volumeID`: one volume only).
    public func volumeSnapshots(hostID: String, volumeID: String?, by principal: Principal) async throws -> [VolumeSnapshotRecord] {
        _ = try await hostForRead(hostID, by: principal)
        return try await store.withDB { db in try await VolumeSnapshotsTable.list(hostID: hostID, volumeID: volumeID, in: db) }
    }

    /// The retention job deleted these snapshots' objects (operator only); returns how many records changed.
    public func markVolumeSnapshotsDeleted(hostID: String, snapshotIDs: [String], by principal: Principal) async throws -> Int {
        guard case .operator = principal else { throw HubError.forbidden("mark volume snapshots deleted (operator only)") }
        _ = try await host(hostID, by: principal)
        guard snapshotIDs.count <= 1000 else { throw HubError.badRequest("at most 1,000 ids per request", path: "$.snapshot_ids") }
        for (i, id) in snapshotIDs.enumerated() where !Pattern.whole(id, #"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"#) {
            throw HubError.badRequest("must be a snapshot id", path: "$.snapshot_ids[\(i)]")
        }
        let now = self.now
        return try await store.transaction { db in
            try await VolumeSnapshotsTable.markDeleted(hostID: hostID, snapshotIDs: snapshotIDs, at: now, in: db)
        }
    }
}
