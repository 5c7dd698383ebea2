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
/// through the fenced `mount`, keeps the manifest in `state_dir/storage-manifest.json` (written
/// whole, fsync'd), and hands back the events and the `storage_targets` for the report.
public final class StorageKeeper: Sendable {
    let backend: PrivilegedBackend
    let file: String
    let log: @Sendable (String) -> Void
    let current: Mutex<StorageManifest>

    public init(backend: PrivilegedBackend, stateDir: String, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.backend = backend
        self.file = stateDir + "/storage-manifest.json"
        self.log = log
        let loaded = FileManager.default.contents(atPath: stateDir + "/storage-manifest.json").flatMap {
            try? ContractCoding.decode($0) as StorageManifest
        }
        current = Mutex(loaded ?? StorageManifest())
    }

    /// The manifest as the report shows it.
    public var targets: [StorageTarget] { current.withLock { $0.disks } }

    /// One round: scan, fold in the policies, mount what is assigned, save. A scan that fails
    /// changes nothing (a missing `lsblk` is not every disk gone).
    public func tick(policies: [DesiredState.DiskPolicy], now: Date = Date()) async -> [StorageManifest.Event] {
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
        current.withLock { $0 = manifest }
        do throws(AppendLogError) {
            try DurableFile.write(Array(ContractCoding.encode(manifest)), to: file, mode: 0o600)
        } catch {
            log("cannot save the storage manifest: \(error.message)")
        }
        return events
    }
}
