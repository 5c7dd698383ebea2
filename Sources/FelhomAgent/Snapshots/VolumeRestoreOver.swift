import FelhomAPI
import FelhomCore
import Foundation
import Proxmox

/// The `volume.restore` signed op (docs/object-storage.md "Restoring over a volume"): a volume
/// snapshot from object storage written over one of a guest's volumes. Runs after the gate, in
/// the guest's queue slot, journaled under the op's id:
///
/// 1. the volume must be a mount point of the op's guest (PVE's config, not the hub's word) on an
///    LVM-thin storage, and the snapshot a complete record of that volume;
/// 2. `downloaded`: the snapshot is downloaded, every chunk and the checksum verified, into a
///    file in `workDir` (``SnapshotRestorer``: it appears only when fully verified);
/// 3. `stop_started`: the guest is stopped (the reconciler starts it again as desired);
/// 4. `copy_started` → `copied`: the verified file is written over the volume's device and synced,
///    then removed.
///
/// A crash anywhere resumes from the journal: a verified file is not downloaded again, and an
/// interrupted copy is written again in full from it. Nothing touches the volume before step 4,
/// so a tampered object, a wrong key, a full disk or a lost connection leave it as it was.
public struct VolumeRestoreOver: Sendable {
    /// Why the op failed; `code` is stable.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var code: String
        public var message: String
        public var description: String { "\(code): \(message)" }
    }

    let restorer: SnapshotRestorer
    let records: @Sendable (String) async throws -> [VolumeSnapshotRecord]
    let devicePath: @Sendable (String, String) -> String
    let workDir: String

    /// - Parameters:
    ///   - records: the hub's records of a volume (checked here: the restorer verifies the bytes).
    ///   - workDir: where the verified volume waits before it is written (needs its size free).
    public init(
        restorer: SnapshotRestorer, records: @escaping @Sendable (String) async throws -> [VolumeSnapshotRecord],
        devicePath: @escaping @Sendable (String, String) -> String, workDir: String
    ) {
        self.restorer = restorer
        self.records = records
        self.devicePath = devicePath
        self.workDir = workDir
    }

    /// The file the verified volume is downloaded to for op `id`.
    func stagingPath(op id: String) -> String {
        workDir + "/volume-restore-" + String(id.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }) + ".img"
    }

    /// Runs the op. `step` journals a step, `done` says whether the journal has one, `stopGuest`
    /// stops the guest (a journaled PVE task of the op).
    public func run(
        op id: String, vmid: Int, volumeID: String, snapshotID: String, pve: any PVEAPI, node: String,
        step: @Sendable (String, [String: String]) throws -> Void, done: @Sendable (String) -> Bool,
        stopGuest: @Sendable () async throws -> Void
    ) async throws {
        let config = try await pve.containerConfig(node: node, vmid: vmid, current: false)
        guard config.mountPoints.values.contains(where: { $0.volume == volumeID }) else {
            throw Failure(code: "not_a_mount_point", message: "volume \(volumeID) is not a mount point of guest \(vmid)")
        }
        let storages = Dictionary(try await pve.storages().map { ($0.storage, $0) }, uniquingKeysWith: { a, _ in a })
        let target: VolumeSnapshotter.Target
        switch SnapshotTargets.target(volumeID: volumeID, storages: storages) {
        case .success(let t): target = t
        case .failure(let why): throw Failure(code: why.reason, message: why.message)
        }
        let device = devicePath(target.volumeGroup, target.logicalVolume)
        let staging = stagingPath(op: id)

        if !done("copied") {
            if !done("downloaded") || !FileManager.default.fileExists(atPath: staging) {
                let record: VolumeSnapshotRecord
                do { record = try SnapshotRestorer.choose(try await records(volumeID), volumeID: volumeID, snapshotID: snapshotID) } catch {
                    throw Failure(code: "no_snapshot", message: "\(error)")
                }
                try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                unlink(staging)  // an earlier attempt's unverified leftover, if any (never the volume)
                do { try await restorer.restore(record, to: staging) } catch { throw Failure(code: error.code, message: error.message) }
                try step("downloaded", ["snapshot_id": record.snapshotID, "size": String(record.size), "staging": staging])
            }
            try await stopGuest()
            try step("copy_started", ["device": device])
            try Self.copy(staging, over: device)
            try step("copied", [:])
        }
        unlink(staging)
    }

    /// Writes `source` over `device` from its start and syncs it; a device smaller than the
    /// source is refused before anything is written. A regular file (tests) is cut to size.
    static func copy(_ source: String, over device: String) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw Failure(code: "read_failed", message: "cannot open \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let output = open(device, O_WRONLY | O_CLOEXEC)
        guard output >= 0 else { throw Failure(code: "write_failed", message: "cannot open \(device): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        var info = stat()
        guard fstat(input, &info) == 0 else { throw Failure(code: "read_failed", message: "cannot stat \(source)") }
        let size = Int64(info.st_size)
        var target = stat()
        guard fstat(output, &target) == 0 else { throw Failure(code: "write_failed", message: "cannot stat \(device)") }
        let isRegular = (target.st_mode & S_IFMT) == S_IFREG
        if !isRegular {
            let capacity = Int64(lseek(output, 0, SEEK_END))
            guard capacity >= size else {
                throw Failure(code: "volume_too_small", message: "\(device) holds \(capacity) bytes; the snapshot has \(size)")
            }
            guard lseek(output, 0, SEEK_SET) == 0 else { throw Failure(code: "write_failed", message: "cannot seek \(device)") }
        }
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        var copied: Int64 = 0
        while copied < size {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(code: "read_failed", message: "\(source) ended after \(copied) of \(size) bytes") }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else {
                    throw Failure(
                        code: "write_failed", message: "cannot write \(device) at \(copied + Int64(written)): \(String(cString: strerror(errno)))")
                }
                written += w
            }
            copied += Int64(n)
        }
        if isRegular { guard ftruncate(output, off_t(size)) == 0 else { throw Failure(code: "write_failed", message: "cannot size \(device)") } }
        guard fsync(output) == 0 else { throw Failure(code: "write_failed", message: "cannot sync \(device): \(String(cString: strerror(errno)))") }
    }
}
