import Crypto
import FelhomAPI
import FelhomCore
import Foundation
import ObjectStore

/// Brings a volume snapshot back from object storage (docs/object-storage.md "Restore"): the
/// object is read in 8 MiB ranges, every chunk verified before its plaintext is written, the
/// object's SHA-256 compared with the record's checksum, and only then is the temporary file
/// beside the target renamed into place. A tampered, truncated or foreign object fails with the
/// reason and leaves the target untouched (and no temporary file behind).
public struct SnapshotRestorer: Sendable {
    /// Why a restore failed; `code`: `no_snapshot`, `foreign_object`, `target_exists`, `no_space`, `key_failed`,
    /// `download_failed`, `verify_failed`, `checksum_mismatch`, `write_failed`.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var code: String
        public var message: String
        public var description: String { "\(code): \(message)" }
    }

    let s3: S3Client
    let masterKeyBytes: Data
    let rangeSize: Int
    let prefix: String?

    /// - Parameter prefix: the box's prefix in the bucket; a record (the hub's word) naming an
    ///   object outside it is refused before anything is read.
    public init(s3: S3Client, masterKey: SymmetricKey, prefix: String? = nil, rangeSize: Int = 8 << 20) {
        self.s3 = s3
        self.prefix = prefix
        masterKeyBytes = masterKey.withUnsafeBytes { Data($0) }
        self.rangeSize = max(1 << 20, rangeSize)
    }

    /// The snapshot to restore: `snapshotID`, or the newest complete one of `volumeID`.
    public static func choose(_ records: [VolumeSnapshotRecord], volumeID: String, snapshotID: String?) throws(Failure) -> VolumeSnapshotRecord {
        let complete = records.filter { $0.volumeID == volumeID && $0.state == "complete" }
        if let snapshotID {
            guard let r = complete.first(where: { $0.snapshotID == snapshotID }) else {
                throw Failure(code: "no_snapshot", message: "volume \(volumeID) has no complete snapshot \(snapshotID)")
            }
            return r
        }
        guard let newest = complete.max(by: { ($0.createdAt, $0.snapshotID) < ($1.createdAt, $1.snapshotID) }) else {
            throw Failure(code: "no_snapshot", message: "volume \(volumeID) has no complete snapshot")
        }
        return newest
    }

    /// Restores `record` into the new file `target`; `progress` gets the object bytes read.
    /// Returns the plaintext size.
    @discardableResult
    public func restore(_ record: VolumeSnapshotRecord, to target: String, progress: (@Sendable (Int64) -> Void)? = nil) async throws(Failure)
        -> Int64
    {
        if let prefix, !record.objectKey.hasPrefix(prefix) || record.objectKey.contains("..") {
            throw Failure(
                code: "foreign_object",
                message: "the record names the object \(TerminalText.escaped(record.objectKey)), outside this box's prefix \(prefix)")
        }
        guard !FileManager.default.fileExists(atPath: target) else {
            throw Failure(
                code: "target_exists",
                message: "\(target) exists: a restore never overwrites (restoring over a volume is an operator-signed op)")
        }
        let dir = (target as NSString).deletingLastPathComponent.isEmpty ? "." : (target as NSString).deletingLastPathComponent
        var fs = statvfs()
        if statvfs(dir, &fs) == 0 {
            let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
            guard free >= record.size + (64 << 20) else {
                throw Failure(code: "no_space", message: "\(dir) has \(free) bytes free; the volume needs \(record.size) (and 64 MiB to spare)")
            }
        }
        let dataKey: SymmetricKey
        do {
            dataKey = try SnapshotKeys.unwrap(
                record.wrappedDataKey, master: SymmetricKey(data: masterKeyBytes), volumeID: record.volumeID, snapshotID: record.snapshotID)
        } catch { throw Failure(code: "key_failed", message: error.message) }

        let temp = dir + "/." + (target as NSString).lastPathComponent + ".restoring-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(code: "write_failed", message: "cannot create \(temp): \(String(cString: strerror(errno)))") }
        var keep = false
        defer {
            close(fd)
            if !keep { unlink(temp) }
        }
        var opener = SnapshotOpener(dataKey: dataKey)
        var hash = SHA256()
        var offset: Int64 = 0
        var written: Int64 = 0
        func write(_ data: Data) throws(Failure) {
            let ok = data.withUnsafeBytes { raw -> Bool in
                var done = 0
                while done < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    done += n
                }
                return true
            }
            guard ok else { throw Failure(code: "write_failed", message: "cannot write \(temp): \(String(cString: strerror(errno)))") }
            written += Int64(data.count)
        }
        while offset < record.objectSize {
            let end = min(record.objectSize, offset + Int64(rangeSize)) - 1
            let piece: Data
            do { piece = try await s3.getObject(key: record.objectKey, range: Int(offset)...Int(end)) } catch {
                throw Failure(code: "download_failed", message: "\(error)")
            }
            guard !piece.isEmpty else {
                throw Failure(code: "verify_failed", message: "the object ends after \(offset) bytes, not \(record.objectSize)")
            }
            hash.update(data: piece)
            do { try write(try opener.add(piece)) } catch let e as Failure { throw e } catch {
                throw Failure(code: "verify_failed", message: "\(error)")
            }
            offset += Int64(piece.count)
            progress?(offset)
        }
        do { try write(try opener.finish()) } catch let e as Failure { throw e } catch { throw Failure(code: "verify_failed", message: "\(error)") }
        let checksum = "sha256:" + SigV4.hex(Array(hash.finalize()))
        guard checksum == record.checksum else {
            throw Failure(code: "checksum_mismatch", message: "the object's SHA-256 is \(checksum), the record says \(record.checksum)")
        }
        guard written == record.size else {
            throw Failure(code: "verify_failed", message: "the snapshot holds \(written) bytes, the record says \(record.size)")
        }
        guard fsync(fd) == 0, rename(temp, target) == 0 else {
            throw Failure(
                code: "write_failed", message: "cannot move the restored volume into place at \(target): \(String(cString: strerror(errno)))")
        }
        keep = true
        return written
    }
}
