import FelhomCore
import Foundation
import Proxmox

/// The fail-closed rules around one backup (SPEC §1 rule 5, issue 14), pure so every case is
/// tested: before, the target must be an active PBS storage whose configured encryption key is the
/// box's own key (by fingerprint) with room for the backup; after, the stored entry must carry that
/// same fingerprint — a plaintext entry, or one under another key, is `backup_unencrypted` and
/// counts as a failure, never as a success.
public enum BackupChecks {
    /// Checks the target before anything runs. `config` is the storage's config (`GET /storage`),
    /// `status` the node's view of it (`GET /nodes/{node}/storage`), `boxKey` the fingerprint of
    /// the key this box holds, `neededBytes` the expected size of the backup.
    public static func target(
        _ storage: String, config: PVEStorageConfig?, status: PVENodeStorage?, boxKey: String, neededBytes: Int64
    ) throws(BackupError) {
        guard let config else { throw BackupError(.badTarget, "the backup storage '\(storage)' does not exist on this node") }
        guard config.type == "pbs" else {
            throw BackupError(.badTarget, "the backup storage '\(storage)' is of type \(config.type): backups go only to an encrypted PBS storage")
        }
        guard !config.disabled else { throw BackupError(.badTarget, "the backup storage '\(storage)' is disabled") }
        guard let configured = config.encryptionKey, !configured.isEmpty else {
            throw BackupError(.encryptionKeyMissing, "the backup storage '\(storage)' has no encryption key: nothing is backed up unencrypted")
        }
        // PVE shows `1` when it knows a key is set but not its fingerprint: that cannot be checked.
        guard PBSKey.normalized(configured) == PBSKey.normalized(boxKey) else {
            throw BackupError(
                .encryptionKeyMismatch,
                "the backup storage '\(storage)' is set up with key \(short(configured)), not this box's key \(short(boxKey))")
        }
        guard let status, status.active else {
            throw BackupError(.storageUnreachable, "the backup storage '\(storage)' is not reachable (PBS \(config.server ?? "?") inactive)")
        }
        guard status.avail >= neededBytes else {
            throw BackupError(
                .noSpace, "the backup storage '\(storage)' has \(status.avail >> 20) MiB free; the backup needs about \(neededBytes >> 20) MiB")
        }
    }

    /// Checks the stored entry after the task: encrypted with the box's key.
    public static func stored(_ entry: PVEStorageContent, boxKey: String) throws(BackupError) {
        guard let encrypted = entry.encrypted, !encrypted.isEmpty else {
            throw BackupError(.unencrypted, "\(entry.volid) was stored WITHOUT encryption")
        }
        guard PBSKey.normalized(encrypted) == PBSKey.normalized(boxKey) else {
            throw BackupError(.unencrypted, "\(entry.volid) is encrypted with key \(short(encrypted)), not this box's key \(short(boxKey))")
        }
        if entry.verificationState == "failed" {
            throw BackupError(.verificationFailed, "PBS could not verify \(entry.volid)")
        }
    }

    /// The first 8 bytes, as PBS displays a fingerprint.
    static func short(_ fingerprint: String) -> String {
        let n = PBSKey.normalized(fingerprint)
        return n.count >= 23 ? String(n.prefix(23)) : n
    }
}
