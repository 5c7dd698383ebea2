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
