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
                let target: VolumeSnapshotter.Target
                switch Self.target(volumeID: volume, storages: byID) {
                case .success(let t): target = t
                case .failure(let why):
                    record(.notProtected, why.reason, why.message)
                    continue
                }
                plan.targets.append((guest.vmid, mp.key, target))
                record(.protected, nil, nil)
            }
        }
        return plan
    }

    /// Why a volume cannot be snapshotted: `reason` is stable (`bind_mount`, `unknown_volume`,
    /// `unknown_storage`, `not_lvm_thin`), `message` names the volume or storage.
    public struct NotProtected: Error, Sendable, Equatable {
        public var reason: String
        public var message: String
    }

    /// Where LVM has `volumeID` (`STORAGE:NAME` on an LVM-thin storage), or why it has no
    /// block-level snapshot.
    public static func target(volumeID volume: String, storages: [String: PVEStorageConfig]) -> Result<VolumeSnapshotter.Target, NotProtected> {
        if volume.hasPrefix("/") {
            return .failure(.init(reason: "bind_mount", message: "\(volume) is a host path (bind mount), not an LVM-thin volume"))
        }
        guard let colon = volume.firstIndex(of: ":") else {
            return .failure(.init(reason: "unknown_volume", message: "\(volume) is not a STORAGE:VOLUME id"))
        }
        let storageID = String(volume[..<colon])
        let name = String(volume[volume.index(after: colon)...])
        guard let storage = storages[storageID] else {
            return .failure(.init(reason: "unknown_storage", message: "storage \(storageID) is not configured"))
        }
        guard storage.type == "lvmthin", let vg = storage.vgname, !vg.isEmpty else {
            return .failure(.init(reason: "not_lvm_thin", message: "storage \(storageID) is \(storage.type), not LVM-thin: no block-level snapshot"))
        }
        return .success(.init(volumeID: volume, volumeGroup: vg, logicalVolume: name))
    }
}
