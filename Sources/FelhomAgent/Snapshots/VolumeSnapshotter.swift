import Crypto
import FelhomAPI
import FelhomCore
import Foundation
import ObjectStore
import Proxmox

/// Volume snapshots to object storage (ADR 0011; docs/object-storage.md): one LVM-thin volume
/// → a read-only `felhom-snap-*` thin snapshot → read, encrypted (``SnapshotSealer``, a fresh
/// data key) and uploaded as one object (``S3Client/upload(key:next:)``, aborted on failure) →
/// the snapshot LV removed — on success, on every failure, and after a crash (``recover()``).
///
/// Every run is journaled (`volume-snapshot`: `begin`, `lv_created`, `uploaded`, `lv_removed`,
/// then `done` or `failed`), so a restarted agent knows what was in flight. The record it returns
/// is what the hub stores: no key in the clear, only the data key wrapped by the box's snapshot
/// master key (``SnapshotKeys``).
public final class VolumeSnapshotter: Sendable {
    public static let kind = "volume-snapshot"

    /// A volume to snapshot: PVE's volume id and where LVM has it.
    public struct Target: Sendable, Equatable {
        /// `local-lvm:vm-100-disk-1`.
        public var volumeID: String
        public var volumeGroup: String
        public var logicalVolume: String
        public init(volumeID: String, volumeGroup: String, logicalVolume: String) {
            self.volumeID = volumeID
            self.volumeGroup = volumeGroup
            self.logicalVolume = logicalVolume
        }
    }

    /// What the hub keeps per snapshot (FelhomAPI's ``VolumeSnapshotRecord``).
    public typealias Record = VolumeSnapshotRecord

    /// Why a snapshot failed; `code` is stable (`lvcreate_failed`, `read_failed`, `upload_failed`,
    /// `journal_failed`), the message names the cause (never a key or secret).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var code: String
        public var message: String
        public var description: String { "\(code): \(message)" }
    }

    let backend: PrivilegedBackend
    let s3: S3Client
    let journal: Journal
    let masterKeyBytes: Data
    /// Object keys start with this, as it is (`boxes/<host id>/` by default): the box's
    /// credentials reach only this prefix.
    let prefix: String
    let partSize: Int
    let devicePath: @Sendable (String, String) -> String
    let now: @Sendable () -> Date

    /// - Parameters:
    ///   - masterKey: the box's snapshot master key (``SnapshotKeys/masterKey(pbsKey:)``).
    ///   - devicePath: where a snapshot LV's device appears (`/dev/VG/NAME`; tests point it at a file).
    public init(
        backend: PrivilegedBackend, s3: S3Client, journal: Journal, masterKey: SymmetricKey, prefix: String, partSize: Int = 8 << 20,
        devicePath: @escaping @Sendable (String, String) -> String = { "/dev/\($0)/\($1)" }, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.backend = backend
        self.s3 = s3
        self.journal = journal
        masterKeyBytes = masterKey.withUnsafeBytes { Data($0) }
        self.prefix = prefix
        self.partSize = max(5 << 20, partSize)
        self.devicePath = devicePath
        self.now = now
    }

    var masterKey: SymmetricKey { SymmetricKey(data: masterKeyBytes) }

    /// The upload part size for an object: `minimum`, or bigger (whole MiB) when the object
    /// would take more than 9,000 parts (S3 allows 10,000).
    public static func partSize(objectSize: Int64, minimum: Int) -> Int {
        let needed = (objectSize + 8_999) / 9_000
        let rounded = (needed + (1 << 20) - 1) / (1 << 20) * (1 << 20)
        return max(minimum, Int(rounded))
    }

    /// A snapshot id: `YYYYMMDDTHHMMSSZ-` + 8 random hex digits (sortable, unique).
    func newSnapshotID(at date: Date) -> String {
        var rng = SystemRandomNumberGenerator()
        return SigV4.Scope(date: date, region: "", service: "").amzDate + "-" + String(format: "%08x", UInt32.random(in: 0...UInt32.max, using: &rng))
    }

    /// The object key of a snapshot: `<prefix><volume id with ':' as '/'>/<snapshot id>.felsnap`.
    public func objectKey(volumeID: String, snapshotID: String) -> String {
        let volume = volumeID.map { $0 == ":" ? "/" : ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_") }
        return prefix + String(volume) + "/" + snapshotID + ".felsnap"
    }

    /// A snapshot LV made and journaled (`begin`, `lv_created`), not uploaded yet: made while a
    /// guest's apps are quiesced for its backup (app-consistent), uploaded later by ``finish(_:progress:)``.
    public struct Prepared: Sendable {
        public var target: Target
        public var snapshotID: String
        var lvName: String
        var key: String
        var op: String
        var createdAt: Date
    }

    /// Takes, uploads and cleans up one snapshot of `target`; `progress` gets the volume bytes
    /// read so far, after each uploaded part.
    public func snapshot(_ target: Target, progress: (@Sendable (Int64) -> Void)? = nil) async throws(Failure) -> Record {
        try await finish(try await prepare(target), progress: progress)
    }

    /// Makes the read-only `felhom-snap-*` thin snapshot of `target` (fast: no data is copied).
    public func prepare(_ target: Target) async throws(Failure) -> Prepared {
        let createdAt = now()
        let snapshotID = newSnapshotID(at: createdAt)
        let lvName = PrivilegedBackend.snapshotPrefix + snapshotID.lowercased()
        let key = objectKey(volumeID: target.volumeID, snapshotID: snapshotID)
        let op = "snap-\(snapshotID)"
        try step(
            op, "begin",
            ["volume": target.volumeID, "vg": target.volumeGroup, "lv": target.logicalVolume, "snapshot_lv": lvName, "object_key": key])
        do {
            try await backend.createThinSnapshot(volumeGroup: target.volumeGroup, origin: target.logicalVolume, name: lvName)
        } catch {
            try? step(op, "failed", ["reason": "lvcreate_failed"])
            throw Failure(code: "lvcreate_failed", message: "cannot snapshot \(target.volumeGroup)/\(target.logicalVolume): \(error)")
        }
        try step(op, "lv_created")
        return Prepared(target: target, snapshotID: snapshotID, lvName: lvName, key: key, op: op, createdAt: createdAt)
    }

    /// Uploads a prepared snapshot and removes its LV (on success and on every failure).
    public func finish(_ p: Prepared, progress: (@Sendable (Int64) -> Void)? = nil) async throws(Failure) -> Record {
        let (target, lvName, op) = (p.target, p.lvName, p.op)
        let result: Result<Record, Failure>
        do {
            result = .success(
                try await upload(target, snapshotID: p.snapshotID, lvName: lvName, key: p.key, createdAt: p.createdAt, progress: progress))
            try? step(op, "uploaded", ["object_key": p.key])
        } catch {
            result = .failure(error)
        }
        // The snapshot LV goes in every case (a thin snapshot pins the pool's blocks).
        do {
            try await backend.removeSnapshot(volumeGroup: target.volumeGroup, name: lvName)
            try? step(op, "lv_removed")
        } catch {
            try? step(op, "failed", ["reason": "lvremove_failed"])
            throw Failure(code: "lvremove_failed", message: "cannot remove \(target.volumeGroup)/\(lvName) (the next start retries): \(error)")
        }
        switch result {
        case .success(let record):
            try step(op, "done", ["checksum": record.checksum])
            return record
        case .failure(let failure):
            try? step(op, "failed", ["reason": failure.code])
            throw failure
        }
    }

    func upload(
        _ target: Target, snapshotID: String, lvName: String, key: String, createdAt: Date, progress: (@Sendable (Int64) -> Void)?
    ) async throws(Failure) -> Record {
        let device = devicePath(target.volumeGroup, lvName)
        let dataKey = SnapshotKeys.newDataKey()
        let wrapped: String
        do { wrapped = try SnapshotKeys.wrap(dataKey, master: masterKey, volumeID: target.volumeID, snapshotID: snapshotID) } catch {
            throw Failure(code: "key_failed", message: error.message)
        }
        let fd = open(device, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(code: "read_failed", message: "cannot open \(device): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // The volume's size (a block device's too) decides the part size: S3 takes at most
        // 10,000 parts, so a big volume gets bigger parts (9,000 here, to spare).
        let volumeSize = Int64(lseek(fd, 0, SEEK_END))
        guard volumeSize >= 0, lseek(fd, 0, SEEK_SET) == 0 else {
            throw Failure(code: "read_failed", message: "cannot find the size of \(device): \(String(cString: strerror(errno)))")
        }
        let objectSize = SnapshotFormat.objectSize(plaintext: volumeSize, snapshotID: snapshotID)
        let part = Self.partSize(objectSize: objectSize, minimum: partSize)
        let source = SealedSource(fd: fd, device: device, dataKey: dataKey, snapshotID: snapshotID, partSize: part)
        // The object's SHA-256 is computed on another core while the part is uploaded and the
        // next one sealed (SHA-256 is slower than AES-GCM here).
        let hash = PipelinedHash()
        var parts = 0
        let uploaded: (etag: String, size: Int)
        do {
            let next: () async throws -> Data? = {
                parts += 1
                // The second call comes after the first part was uploaded (crash tests).
                if parts == 2 { Failpoint.hit("snapshot.during_upload") }
                if parts > 1 {
                    SnapshotFormat.returnFreedMemory()
                    progress?(Int64(source.plaintextBytes))
                }
                guard let part = try source.nextPart() else { return nil }
                await hash.add(part)
                return part
            }
            if objectSize <= Int64(part) {
                let body = try await next() ?? Data()
                uploaded = (try await s3.putObject(key: key, body: body), body.count)
            } else {
                uploaded = try await s3.uploadMultipart(key: key, next: next)
            }
        } catch let e as SealedSource.ReadFailure {
            throw Failure(code: "read_failed", message: e.message)
        } catch {
            throw Failure(code: "upload_failed", message: "\(error)")
        }
        return Record(
            volumeID: target.volumeID, snapshotID: snapshotID, createdAt: createdAt, size: Int64(source.plaintextBytes),
            objectSize: Int64(uploaded.size),
            checksum: "sha256:" + SigV4.hex(Array(await hash.finish())), encryptionKeyID: SnapshotKeys.keyID(masterKey),
            wrappedDataKey: wrapped, objectKey: key, state: "complete")
    }

    /// After a start or a crash: removes every leftover `felhom-snap-*` LV, aborts every open
    /// multipart upload under the box's prefix, and closes journaled runs that were cut off.
    /// Returns what it cleaned and what it could not, for the log (a failure here is retried at
    /// the next start; a leftover LV is also seen by the next run's `lvs`).
    public func recover() async -> [String] {
        var cleaned: [String] = []
        do {
            for lv in try await backend.logicalVolumes() where lv.name.hasPrefix(PrivilegedBackend.snapshotPrefix) {
                do {
                    try await backend.removeSnapshot(volumeGroup: lv.volumeGroup, name: lv.name)
                    cleaned.append("removed the leftover snapshot \(lv.volumeGroup)/\(lv.name)")
                } catch { cleaned.append("cannot remove the leftover snapshot \(lv.volumeGroup)/\(lv.name): \(error)") }
            }
        } catch { cleaned.append("cannot list the logical volumes: \(error)") }
        do {
            for upload in try await s3.listMultipartUploads(prefix: prefix) {
                do {
                    try await s3.abortMultipartUpload(key: upload.key, uploadID: upload.uploadID)
                    cleaned.append("aborted the unfinished upload of \(upload.key)")
                } catch { cleaned.append("cannot abort the unfinished upload of \(upload.key): \(error)") }
            }
        } catch { cleaned.append("cannot list the unfinished uploads under \(prefix): \(error)") }
        for (op, entries) in journal.inFlight() where entries.first?.kind == Self.kind {
            try? journal.append(op: op, kind: Self.kind, step: "failed", data: ["reason": "interrupted"])
            cleaned.append("closed the interrupted run \(op)")
        }
        return cleaned
    }

    func step(_ op: String, _ name: String, _ data: [String: String] = [:]) throws(Failure) {
        do { try journal.append(op: op, kind: Self.kind, step: name, data: data) } catch {
            throw Failure(code: "journal_failed", message: error.message)
        }
    }
}

/// SHA-256 over a sequence of parts, each hashed on a detached task after the one before it
/// (in order) while the caller uploads it and seals the next; one part in flight, so memory
/// holds no extra part.
final class PipelinedHash: @unchecked Sendable {
    // `hash` is touched only by the hashing task, one at a time; `running` only by the
    // (sequential) caller.
    private var hash = SHA256()
    private var running: Task<Void, Never>?

    func add(_ part: Data) async {
        await running?.value
        running = Task.detached { [self] in hash.update(data: part) }
    }

    func finish() async -> SHA256.Digest {
        await running?.value
        running = nil
        return hash.finalize()
    }
}

/// Reads a snapshot device chunk by chunk, seals it and hands out upload parts. Memory: one
/// part and one chunk.
final class SealedSource: @unchecked Sendable {
    struct ReadFailure: Error { var message: String }

    let fd: Int32
    let device: String
    var sealer: SnapshotSealer
    let partSize: Int
    var pending: Data
    var chunk: [UInt8]
    var next: [UInt8]
    var have = -1
    var done = false
    private(set) var plaintextBytes = 0

    init(fd: Int32, device: String, dataKey: SymmetricKey, snapshotID: String, partSize: Int) {
        self.fd = fd
        self.device = device
        // A valid id and the default chunk size: the header cannot fail.
        let header = try! SnapshotFormat.Header(snapshotID: snapshotID)
        sealer = SnapshotSealer(dataKey: dataKey, header: header)
        self.partSize = partSize
        pending = Data(capacity: partSize + header.chunkSize + 64)
        pending.append(contentsOf: header.bytes)
        chunk = [UInt8](repeating: 0, count: header.chunkSize)
        next = [UInt8](repeating: 0, count: header.chunkSize)
    }

    func fill(_ buffer: inout [UInt8]) throws -> Int {
        var total = 0
        while total < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadFailure(message: "cannot read \(device): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            total += n
        }
        return total
    }

    /// The next upload part (nil at the end).
    func nextPart() throws -> Data? {
        if have < 0 { have = try fill(&chunk) }
        while pending.count < partSize && !done {
            let following = have == chunk.count ? try fill(&next) : 0
            let last = following == 0
            let n = have
            let sealed = try chunk.withUnsafeBytes { try sealer.sealChunk(UnsafeRawBufferPointer(rebasing: $0[0..<n]), last: last) }
            pending += sealed.ciphertext
            pending += sealed.tag
            plaintextBytes += n
            if last {
                done = true
            } else {
                swap(&chunk, &next)
                have = following
            }
        }
        guard !pending.isEmpty else { return nil }
        // The part keeps the buffer (truncated in place, no copy); the rest (under one chunk)
        // starts the next one.
        var part = pending
        pending = Data(capacity: done ? 0 : partSize + chunk.count + 64)
        if part.count > partSize {
            pending.append(part[part.startIndex + partSize..<part.endIndex])
            part.removeSubrange(part.startIndex + partSize..<part.endIndex)
        }
        return part
    }
}
