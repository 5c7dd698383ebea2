import Foundation

/// One guest's backup state in the host report (`backups`, issue 14): the last success and the
/// last failure, and what the stored backup is.
public struct BackupRecord: Codable, Sendable, Equatable {
    public var vmid: Int
    public var lastSuccessAt: Date?
    /// `pbs-felhom:backup/ct/120/2026-11-30T02:00:00Z`.
    public var volid: String?
    /// The key fingerprint PBS reports for it.
    public var encrypted: String?
    /// PBS verification: `ok`, `failed`, or absent before one ran.
    public var verification: String?
    /// `app` (quiesced by the controller) or `crash`.
    public var consistency: String?
    public var lastFailureAt: Date?
    /// The reason code of the last failure (`encryption_key_missing`, `storage_unreachable`, …).
    public var lastFailureReason: String?

    public init(
        vmid: Int, lastSuccessAt: Date? = nil, volid: String? = nil, encrypted: String? = nil, verification: String? = nil,
        consistency: String? = nil,
        lastFailureAt: Date? = nil, lastFailureReason: String? = nil
    ) {
        self.vmid = vmid
        self.lastSuccessAt = lastSuccessAt
        self.volid = volid
        self.encrypted = encrypted
        self.verification = verification
        self.consistency = consistency
        self.lastFailureAt = lastFailureAt
        self.lastFailureReason = lastFailureReason
    }

    enum CodingKeys: String, CodingKey {
        case vmid, volid, encrypted, verification, consistency
        case lastSuccessAt = "last_success_at"
        case lastFailureAt = "last_failure_at"
        case lastFailureReason = "last_failure_reason"
    }
}

/// One guest's last restore test in the host report (`restore_tests`).
public struct RestoreTestRecord: Codable, Sendable, Equatable {
    public var vmid: Int
    public var at: Date
    public var passed: Bool
    public var volid: String?
    public var reason: String?
    /// Backup → scratch guest restored.
    public var restoreSeconds: Double?
    /// Scratch guest started → every stack running.
    public var healthySeconds: Double?

    public init(
        vmid: Int, at: Date, passed: Bool, volid: String? = nil, reason: String? = nil, restoreSeconds: Double? = nil, healthySeconds: Double? = nil
    ) {
        self.vmid = vmid
        self.at = at
        self.passed = passed
        self.volid = volid
        self.reason = reason
        self.restoreSeconds = restoreSeconds
        self.healthySeconds = healthySeconds
    }

    enum CodingKeys: String, CodingKey {
        case vmid, at, passed, volid, reason
        case restoreSeconds = "restore_seconds"
        case healthySeconds = "healthy_seconds"
    }
}

/// One backup stored on the box's backup storage, as PVE lists it (`pbs_snapshots`): what is
/// really there, independent of what the agent remembers doing.
public struct PBSSnapshotRecord: Codable, Sendable, Equatable {
    public var vmid: Int
    /// `pbs-felhom:backup/ct/120/2026-11-30T02:00:00Z`.
    public var volid: String
    /// Backup time (PVE `ctime`).
    public var at: Date?
    public var size: Int64
    /// The key fingerprint PBS reports; absent: stored unencrypted.
    public var encrypted: String?
    /// PBS verification state (`ok`, `failed`), absent before one ran.
    public var verification: String?

    public init(vmid: Int, volid: String, at: Date?, size: Int64, encrypted: String?, verification: String?) {
        self.vmid = vmid
        self.volid = volid
        self.at = at
        self.size = size
        self.encrypted = encrypted
        self.verification = verification
    }

    enum CodingKeys: String, CodingKey { case vmid, volid, at, size, encrypted, verification }
}

/// One finished multi-step operation of the agent (`audit_tail`): the last signed ops, backups,
/// restore tests and provisions, from the journal — what the box did and what its gate refused.
public struct AuditRecord: Codable, Sendable, Equatable {
    public var at: Date
    /// The journal operation id (`backup-120-2026-11-30`, a signed op's id, `lr-120-…`).
    public var op: String
    /// `signed-op`, `backup`, `restore-test`, `provision`.
    public var kind: String
    /// `done` or `failed`.
    public var outcome: String
    /// The failure reason (a gate refusal names the gate), at most 300 characters.
    public var detail: String?

    public init(at: Date, op: String, kind: String, outcome: String, detail: String? = nil) {
        self.at = at
        self.op = op
        self.kind = kind
        self.outcome = outcome
        self.detail = detail
    }
}

/// One disk in the host report's storage manifest (`storage_targets`, SPEC §4, seed review S3):
/// known by its filesystem UUID, never by its device name (which changes between boots).
public struct StorageTarget: Codable, Sendable, Equatable {
    /// `unassigned` (seen, no policy yet), `attached`, `disconnected`, `decommissioned`.
    public enum State: String, Codable, Sendable, CaseIterable {
        case unassigned, attached, disconnected, decommissioned
    }
    /// What an assigned disk is for.
    public enum Role: String, Codable, Sendable, CaseIterable {
        case backup, bulk
        case guestData = "guest-data"
    }

    /// The filesystem UUID (the durable id).
    public var uuid: String
    public var state: State
    /// The device it was last seen as (`/dev/sdb1`; informational).
    public var device: String?
    public var label: String?
    public var fstype: String?
    /// Bytes.
    public var size: Int64?
    /// Free bytes while mounted.
    public var free: Int64?
    public var role: Role?
    /// The default place for new guest data.
    public var isDefault: Bool
    /// Where the agent mounted it (`/mnt/felhom/…`).
    public var mountPoint: String?
    /// The disk that took over its data after a decommission.
    public var migratedTo: String?
    /// The Proxmox VE storage the agent made for it (a `dir` storage over ``mountPoint``).
    public var pveStorage: String?
    public var firstSeen: Date?
    public var lastSeen: Date?

    public init(
        uuid: String, state: State, device: String? = nil, label: String? = nil, fstype: String? = nil, size: Int64? = nil, free: Int64? = nil,
        role: Role? = nil, isDefault: Bool = false, mountPoint: String? = nil, migratedTo: String? = nil, firstSeen: Date? = nil,
        lastSeen: Date? = nil, pveStorage: String? = nil
    ) {
        self.pveStorage = pveStorage
        self.uuid = uuid
        self.state = state
        self.device = device
        self.label = label
        self.fstype = fstype
        self.size = size
        self.free = free
        self.role = role
        self.isDefault = isDefault
        self.mountPoint = mountPoint
        self.migratedTo = migratedTo
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
    }

    enum CodingKeys: String, CodingKey {
        case uuid, state, device, label, fstype, size, free, role
        case isDefault = "default"
        case mountPoint = "mount_point"
        case migratedTo = "migrated_to"
        case pveStorage = "pve_storage"
        case firstSeen = "first_seen"
        case lastSeen = "last_seen"
    }
}
