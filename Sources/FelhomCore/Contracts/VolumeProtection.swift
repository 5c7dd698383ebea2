import Foundation

/// How one guest volume is protected off-box (issue 17; docs/object-storage.md), as the host
/// report's `volume_snapshots` says it: never silently skipped.
public struct VolumeProtection: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// Snapshotted to object storage (see `last_snapshot_at`).
        case protected
        /// Cannot be snapshotted here (`reason`: a bind mount, not on LVM-thin, no object storage…).
        case notProtected = "not_protected"
        /// `backup_enabled: false` in the desired state.
        case disabled
        /// The last run failed (`reason`, `message`).
        case failing
    }
    public var guestVMID: Int
    /// `mp0` …
    public var key: String
    /// PVE's volume id, or the host path of a bind mount.
    public var volumeID: String
    public var state: State
    public var reason: String?
    public var message: String?
    public var lastSnapshotAt: Date?

    public init(
        guestVMID: Int, key: String, volumeID: String, state: State, reason: String? = nil, message: String? = nil, lastSnapshotAt: Date? = nil
    ) {
        self.guestVMID = guestVMID
        self.key = key
        self.volumeID = volumeID
        self.state = state
        self.reason = reason
        self.message = message
        self.lastSnapshotAt = lastSnapshotAt
    }

    enum CodingKeys: String, CodingKey {
        case key, state, reason, message
        case guestVMID = "guest_vmid"
        case volumeID = "volume_id"
        case lastSnapshotAt = "last_snapshot_at"
    }

}
