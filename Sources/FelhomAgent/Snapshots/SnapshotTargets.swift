import FelhomCore
import Foundation
import Proxmox

/// Which guest volumes get snapshotted to object storage, and why the others do not (pure; the
/// agent's snapshot round feeds it the desired state, the guests' mount points as PVE reports
/// them, and the storage configuration). Every desired mount point ends up in `protection`:
/// nothing is silently skipped.
public enum SnapshotTargets {
    public struct Plan: Sendable, Equatable {
        public var targets: [(vmid: Int, key: String, target: VolumeSnapshotter.Target)]
        public var protection: [VolumeProtection]

        public static func == (a: Plan, b: Plan) -> Bool {
            a.protection == b.protection
                && a.targets.map { "\($0.vmid)\($0.key)\($0.target.volumeID)" } == b.targets.map { "\($0.vmid)\($0.key)\($0.target.volumeID)" }
        }
    }

    /// - Parameters:
    ///   - mounts: each guest's mount points as PVE reports them (vmid → key → volume).
    public static func plan(desired: DesiredState, mounts: [Int: [String: String]], storages: [PVEStorageConfig]) -> Plan {
        var plan = Plan(targets: [], protection: [])
        let byID = Dictionary(storages.map { ($0.storage, $0) }, uniquingKeysWith: { a, _ in a })
        for guest in desired.guests.sorted(by: { $0.vmid < $1.vmid }) {
            for mp in guest.mountPoints.sorted(by: { $0.key < $1.key }) {
                let volume = mounts[guest.vmid]?[mp.key]
                func record(_ state: VolumeProtection.State, _ reason: String?, _ message: String?) {
                    plan.protection.append(
                        VolumeProtection(guestVMID: guest.vmid, key: mp.key, volumeID: volume ?? "", state: state, reason: reason, message: message))
                }
                guard mp.backupEnabled else {
                    record(.disabled, "backup_disabled", "backup_enabled is false in the desired state")
                    continue
                }
                guard let volume else {
                    record(.notProtected, "volume_missing", "the guest has no \(mp.key) yet")
                    continue
                }
                if volume.hasPrefix("/") {
                    record(.notProtected, "bind_mount", "\(volume) is a host path (bind mount), not an LVM-thin volume")
                    continue
                }
                guard let colon = volume.firstIndex(of: ":") else {
                    record(.notProtected, "unknown_volume", "\(volume) is not a STORAGE:VOLUME id")
                    continue
                }
                let storageID = String(volume[..<colon])
                let name = String(volume[volume.index(after: colon)...])
                guard let storage = byID[storageID] else {
                    record(.notProtected, "unknown_storage", "storage \(storageID) is not configured")
                    continue
                }
                guard storage.type == "lvmthin", let vg = storage.vgname, !vg.isEmpty else {
                    record(.notProtected, "not_lvm_thin", "storage \(storageID) is \(storage.type), not LVM-thin: no block-level snapshot")
                    continue
                }
                plan.targets.append((guest.vmid, mp.key, .init(volumeID: volume, volumeGroup: vg, logicalVolume: name)))
                record(.protected, nil, nil)
            }
        }
        return plan
    }
}
