import FelhomCore
import Foundation
import Proxmox
import Synchronization

/// The box's storage manifest (SPEC §4, seed review S3): every disk besides the system disk, known
/// by its filesystem UUID, with its state, label, size, free space, role and default flag. Pure:
/// ``observe(_:policies:now:)`` folds one `lsblk` scan and the published disk policies into it and
/// says what to tell the hub and what to mount; ``StorageKeeper`` does the I/O.
///
/// The handshake (SPEC §1 rule 7): a new disk is `unassigned` until the operator publishes a policy
/// for its UUID; then the agent mounts it by UUID under `/mnt/felhom/` and it is `attached`. A disk
/// that disappears is `disconnected`; when the same UUID comes back it is what it was — a disk is
/// never silently taken for another one, and a `decommissioned` disk stays decommissioned.
public struct StorageManifest: Codable, Sendable, Equatable {
    public var disks: [StorageTarget] = []
    /// Policies naming a UUID never seen here (said once each).
    public var unknownPolicies: Set<String> = []

    public init() {}

    /// Filesystems the manifest considers: with a UUID, a data filesystem, and not mounted by the
    /// system (unmounted, or under `/mnt/felhom/`).
    public static let dataFilesystems: Set<String> = ["ext4", "xfs", "btrfs", "vfat", "exfat", "ntfs"]

    static func eligible(_ fs: PrivilegedBackend.BlockFilesystem) -> Bool {
        guard let uuid = fs.uuid, Pattern.whole(uuid, DesiredState.filesystemUUIDPattern), let type = fs.fstype,
            dataFilesystems.contains(type)
        else { return false }
        return fs.mountPoint.map { $0.hasPrefix("/mnt/felhom/") } ?? true
    }

    /// Where the agent mounts a disk: `/mnt/felhom/` + its label made path-safe, or its UUID.
    public static func mountPoint(uuid: String, label: String?) -> String {
        let slug = String(
            (label ?? "").lowercased().map { $0.isLetter && $0.isASCII || $0.isNumber && $0.isASCII ? $0 : "-" }.prefix(40)
        ).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return "/mnt/felhom/" + (slug.isEmpty ? uuid.lowercased() : slug + "-" + uuid.lowercased().prefix(8))
    }

    /// An event to post.
    public typealias Event = AgentEvent

    /// Folds one scan and the policies in. Returns the events and the disks to mount (UUID, where).
    public mutating func observe(_ scan: [PrivilegedBackend.BlockFilesystem], policies: [DesiredState.DiskPolicy], now: Date) -> (
        events: [Event], mounts: [(uuid: String, at: String)]
    ) {
        var events: [Event] = []
        let present = Dictionary(scan.filter(Self.eligible).map { ($0.uuid!.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
        func data(_ d: StorageTarget) -> [String: JSONValue] {
            var o: [String: JSONValue] = ["uuid": .string(d.uuid)]
            if let l = d.label { o["label"] = .string(l) }
            if let s = d.size { o["size"] = .int(s) }
            if let r = d.role { o["role"] = .string(r.rawValue) }
            return o
        }
        // Known disks: seen again, back, or gone.
        for i in disks.indices {
            let key = disks[i].uuid.lowercased()
            if let fs = present[key] {
                disks[i].device = fs.device
                disks[i].size = fs.size
                disks[i].free = fs.available
                disks[i].fstype = fs.fstype
                disks[i].mountPoint = fs.mountPoint
                disks[i].lastSeen = now
                if disks[i].label == nil { disks[i].label = fs.label }
                if disks[i].state == .disconnected {
                    disks[i].state = disks[i].role == nil ? .unassigned : .attached
                    events.append(Event(type: "storage_reconnected", severity: .info, data: data(disks[i])))
                }
            } else if disks[i].state == .attached || disks[i].state == .unassigned {
                disks[i].state = .disconnected
                disks[i].mountPoint = nil
                disks[i].free = nil
                events.append(Event(type: "storage_disconnected", severity: disks[i].role == nil ? .warning : .critical, data: data(disks[i])))
            }
        }
        // New disks: unassigned until the operator says what they are for.
        for (key, fs) in present.sorted(by: { $0.key < $1.key }) where !disks.contains(where: { $0.uuid.lowercased() == key }) {
            let d = StorageTarget(
                uuid: fs.uuid ?? key, state: .unassigned, device: fs.device, label: fs.label, fstype: fs.fstype, size: fs.size,
                free: fs.available, mountPoint: fs.mountPoint, firstSeen: now, lastSeen: now)
            disks.append(d)
            events.append(Event(type: "storage_detected", severity: .info, data: data(d)))
        }
        // Policies: label, role, default; an assigned present disk is mounted.
        var mounts: [(String, String)] = []
        let policyByUUID = Dictionary(policies.map { ($0.uuid.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
        for i in disks.indices {
            let key = disks[i].uuid.lowercased()
            guard let p = policyByUUID[key], disks[i].state != .decommissioned else {
                if disks[i].state != .decommissioned { disks[i].isDefault = false }
                continue
            }
            disks[i].label = p.label
            disks[i].role = p.role
            disks[i].isDefault = p.isDefault
            guard present[key] != nil else { continue }
            if disks[i].mountPoint == nil {
                mounts.append((disks[i].uuid, Self.mountPoint(uuid: disks[i].uuid, label: p.label)))
            } else {
                disks[i].state = .attached
            }
        }
        for p in policies where !disks.contains(where: { $0.uuid.lowercased() == p.uuid.lowercased() }) {
            if unknownPolicies.insert(p.uuid.lowercased()).inserted {
                events.append(
                    Event(
                        type: "storage_policy_unknown_disk", severity: .warning,
                        data: ["uuid": .string(p.uuid), "label": .string(p.label), "reason": "no disk with this filesystem UUID was ever seen here"]))
            }
        }
        return (events, mounts)
    }

    /// Records a mount the backend did.
    public mutating func mounted(uuid: String, at: String) {
        guard let i = disks.firstIndex(where: { $0.uuid == uuid }) else { return }
        disks[i].mountPoint = at
        if disks[i].role != nil { disks[i].state = .attached }
    }
}

/// Runs the manifest on the box: scans through the fenced `lsblk`, mounts assigned disks by UUID
/// through the fenced `mount`, gives each mounted disk its Proxmox VE storage through the API
/// (a `dir` storage with `is_mountpoint`, so Proxmox never writes to the system disk under an
/// unplugged disk), keeps the manifest in `state_dir/storage-manifest.json` (written whole,
/// fsync'd), and hands back the events and the `storage_targets` for the report.
///
/// Scans and decommissions run one at a time in one lane: a decommission never races a scan
/// that would write back the manifest it read before.
public final class StorageKeeper: Sendable {
    let backend: PrivilegedBackend
    let pve: (any PVEAPI)?
    let node: String
    let file: String
    let log: @Sendable (String) -> Void
    let current: Mutex<StorageManifest>
    /// The last Proxmox storage error per disk, so each is said once, not every round.
    let pveErrors = Mutex<[String: String]>([:])
    /// One lane (key 0) for scans, mounts and decommissions.
    let lane = GuestQueue()

    public init(
        backend: PrivilegedBackend, stateDir: String, pve: (any PVEAPI)? = nil, node: String = "",
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.backend = backend
        self.pve = pve
        self.node = node
        self.file = stateDir + "/storage-manifest.json"
        self.log = log
        let loaded = FileManager.default.contents(atPath: stateDir + "/storage-manifest.json").flatMap {
            try? ContractCoding.decode($0) as StorageManifest
        }
        current = Mutex(loaded ?? StorageManifest())
    }

    /// The manifest as the report shows it.
    public var targets: [StorageTarget] { current.withLock { $0.disks } }

    /// The Proxmox VE storage id the agent gives a disk: `felhom-` and the first 8 hex digits of
    /// its UUID (stable when the operator renames the disk).
    public static func storageID(uuid: String) -> String {
        "felhom-" + String(uuid.lowercased().filter(\.isHexDigit).prefix(8))
    }

    /// What Proxmox may put on a disk of each role: backups, container mount points (bulk media),
    /// or guest disks and mount points.
    public static func content(for role: StorageTarget.Role) -> [String] {
        switch role {
        case .backup: return ["backup"]
        case .bulk: return ["rootdir"]
        case .guestData: return ["images", "rootdir"]
        }
    }

    /// One round: scan, fold in the policies, mount what is assigned, give mounted disks their
    /// PVE storage, save. A scan that fails changes nothing (a missing `lsblk` is not every disk gone).
    public func tick(policies: [DesiredState.DiskPolicy], now: Date = Date()) async -> [StorageManifest.Event] {
        (try? await lane.run(vmid: 0) { await self.round(policies: policies, now: now) }) ?? []
    }

    func round(policies: [DesiredState.DiskPolicy], now: Date) async -> [StorageManifest.Event] {
        let scan: [PrivilegedBackend.BlockFilesystem]
        do { scan = try await backend.filesystems() } catch {
            log("storage scan failed (nothing changed): \(error)")
            return []
        }
        var manifest = current.withLock { $0 }
        var (events, mounts) = manifest.observe(scan, policies: policies, now: now)
        for (uuid, at) in mounts {
            do {
                try await backend.mountDisk(filesystemUUID: uuid, mountPoint: at)
                manifest.mounted(uuid: uuid, at: at)
                log("mounted disk \(uuid) at \(at)")
            } catch {
                log("cannot mount disk \(uuid) at \(at): \(error)")
                events.append(
                    .init(type: "storage_mount_failed", severity: .warning, data: ["uuid": .string(uuid), "message": .string("\(error)")]))
            }
        }
        events += await applyPVEStorages(&manifest)
        save(manifest)
        return events
    }

    func save(_ manifest: StorageManifest) {
        current.withLock { $0 = manifest }
        do throws(AppendLogError) {
            try DurableFile.write(Array(ContractCoding.encode(manifest)), to: file, mode: 0o600)
        } catch {
            log("cannot save the storage manifest: \(error.message)")
        }
    }

    /// Every attached, mounted disk with a role gets its `dir` storage (created, or its content
    /// updated when the role changed). Errors are events, said once per disk until they change.
    func applyPVEStorages(_ manifest: inout StorageManifest) async -> [StorageManifest.Event] {
        guard let pve else { return [] }
        let wanted = manifest.disks.indices.filter {
            manifest.disks[$0].state == .attached && manifest.disks[$0].role != nil && manifest.disks[$0].mountPoint != nil
        }
        guard !wanted.isEmpty else { return [] }
        var events: [StorageManifest.Event] = []
        let existing: [PVEStorageConfig]
        do { existing = try await pve.storages() } catch {
            log("cannot read the Proxmox storages (retried next round): \(error)")
            return []
        }
        for i in wanted {
            let disk = manifest.disks[i]
            guard let role = disk.role, let path = disk.mountPoint else { continue }
            let id = disk.pveStorage ?? Self.storageID(uuid: disk.uuid)
            let content = Self.content(for: role)
            var failure: String?
            do {
                if let have = existing.first(where: { $0.storage == id }) {
                    if have.type != "dir" || have.path != path {
                        failure =
                            "Proxmox storage \(id) exists as \(have.type) at \(have.path ?? "no path"), not as the directory \(path): left alone; remove or rename it"
                    } else if Set(have.content) != Set(content) {
                        try await pve.updateStorage(id, content: content)
                        log("storage \(id): content set to \(content.joined(separator: ",")) (role \(role.rawValue))")
                    }
                } else {
                    try await pve.createStorage(StorageCreateSpec(storage: id, path: path, content: content, nodes: node.isEmpty ? [] : [node]))
                    log("added Proxmox storage \(id) (dir \(path), \(content.joined(separator: ",")))")
                    events.append(
                        .init(
                            type: "storage_attached", severity: .info,
                            data: ["uuid": .string(disk.uuid), "pve_storage": .string(id), "role": .string(role.rawValue), "path": .string(path)]))
                }
            } catch {
                failure = "cannot add or update Proxmox storage \(id): \(error)"
            }
            if failure == nil { manifest.disks[i].pveStorage = id }
            let said = pveErrors.withLock { errors -> Bool in
                defer { errors[disk.uuid] = failure }
                return errors[disk.uuid] == failure
            }
            if let failure, !said {
                log(failure)
                events.append(.init(type: "storage_pve_failed", severity: .warning, data: ["uuid": .string(disk.uuid), "message": .string(failure)]))
            }
        }
        return events
    }

    /// Why a decommission was refused or failed.
    public struct DecommissionError: Error, Sendable, CustomStringConvertible {
        public enum Code: String, Sendable {
            case unknownDisk = "unknown_disk"
            case volumesLiveOnIt = "volumes_live_on_disk"
            case pve
        }
        public var code: Code
        public var message: String
        public var description: String { "\(code.rawValue): \(message)" }
    }

    /// The `disk.decommission` signed op (after the gate): refuses while any guest volume lives on
    /// the disk (naming each), removes its Proxmox storage entry, marks the disk `decommissioned`
    /// for good. Never wipes, formats or deletes anything on the disk. Idempotent: a second run,
    /// or a run after a crash, finds what is done and finishes the rest. `record` journals steps.
    public func decommission(uuid: String, record: @escaping @Sendable (String, [String: String]) throws -> Void) async throws {
        try await lane.run(vmid: 0) {
            var manifest = self.current.withLock { $0 }
            guard let i = manifest.disks.firstIndex(where: { $0.uuid.lowercased() == uuid.lowercased() }) else {
                throw DecommissionError(code: .unknownDisk, message: "no disk with filesystem UUID \(uuid) is in this box's storage manifest")
            }
            if manifest.disks[i].state == .decommissioned { return }
            let disk = manifest.disks[i]
            let id = disk.pveStorage ?? Self.storageID(uuid: disk.uuid)
            if let pve = self.pve {
                let living = try await self.volumesOn(storage: id, mountPoint: disk.mountPoint, pve: pve)
                guard living.isEmpty else {
                    throw DecommissionError(
                        code: .volumesLiveOnIt,
                        message: "disk \(disk.label ?? disk.uuid) (\(disk.uuid)) still holds guest volumes: \(living.joined(separator: ", ")); "
                            + "move or remove them first (nothing was changed)")
                }
                let exists: Bool
                do { exists = try await pve.storages().contains { $0.storage == id } } catch {
                    throw DecommissionError(code: .pve, message: "cannot read the Proxmox storages: \(error)")
                }
                if exists {
                    do { try await pve.deleteStorage(id) } catch {
                        throw DecommissionError(code: .pve, message: "cannot remove Proxmox storage \(id): \(error)")
                    }
                    try record("storage_removed", ["pve_storage": id])
                    self.log("removed Proxmox storage \(id) (disk \(disk.uuid)); its data stays on the disk")
                }
            }
            manifest.disks[i].state = .decommissioned
            manifest.disks[i].isDefault = false
            manifest.disks[i].pveStorage = nil
            self.save(manifest)
            try record("decommissioned", ["uuid": disk.uuid])
        }
    }

    /// Guest volumes on the disk: every container's `rootfs`, `mpN` and `unusedN` on its storage
    /// (or a bind mount from under its mount point), and any guest volume the storage lists.
    func volumesOn(storage id: String, mountPoint: String?, pve: any PVEAPI) async throws -> [String] {
        var out: [String] = []
        do {
            for guest in try await pve.containers(node: node).sorted(by: { $0.vmid < $1.vmid }) {
                let config = try await pve.containerConfig(node: node, vmid: guest.vmid, current: false)
                for (key, value) in config.raw.sorted(by: { $0.key < $1.key }) {
                    guard key == "rootfs" || key.hasPrefix("mp") || key.hasPrefix("unused"), let text = value.stringValue else { continue }
                    // The one mount-point parser (a `volume=` key or the leading value); `unusedN` is a bare volid.
                    let volume = (try? MountPoint(parsing: text).volume) ?? String(text.split(separator: ",").first ?? "")
                    let onStorage = volume.hasPrefix(id + ":")
                    let bindUnder = mountPoint.map { volume == $0 || volume.hasPrefix($0 + "/") } ?? false
                    if onStorage || bindUnder { out.append("guest \(guest.vmid) \(key) (\(volume))") }
                }
            }
            // A disk that is unplugged (its storage inactive) cannot be listed; its guests' configs were.
            if try await pve.nodeStorages(node: node).contains(where: { $0.storage == id && $0.active }) {
                for item in try await pve.storageContent(node: node, storage: id, content: nil, vmid: nil)
                where item.content == "images" || item.content == "rootdir" {
                    let name = "volume \(item.volid)"
                    if !out.contains(where: { $0.contains(item.volid) }) { out.append(name) }
                }
            }
        } catch let e as DecommissionError {
            throw e
        } catch {
            throw DecommissionError(code: .pve, message: "cannot list the guest volumes to check the disk is empty: \(error)")
        }
        return out
    }
}
