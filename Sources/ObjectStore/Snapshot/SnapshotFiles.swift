import Crypto
import Foundation

/// File-to-file encryption and decryption of snapshot objects — the offline tools
/// (`felhom snapshot encrypt|decrypt`) and restore. The output is written under a temporary
/// name beside the target and renamed into place only after everything verified, so a failure
/// never leaves a partial or unverified file behind.
public enum SnapshotFiles {
    /// What went through.
    public struct Summary: Sendable {
        public var plaintextBytes: Int
        public var objectBytes: Int
        public var snapshotID: String
    }

    /// Encrypts `input` into the object `output` (a fresh salt every time).
    @discardableResult
    public static func encrypt(
        input: String, output: String, dataKey: SymmetricKey, snapshotID: String, chunkSize: Int = SnapshotFormat.defaultChunkSize,
        progress: ((Int) -> Void)? = nil
    ) throws(SnapshotFormat.FormatError) -> Summary {
        let header = try SnapshotFormat.Header(snapshotID: snapshotID, chunkSize: chunkSize)
        var sealer = SnapshotSealer(dataKey: dataKey, header: header)
        let reader = try Reader(path: input)
        defer { reader.close() }
        var plain = 0
        let written = try writeAtomically(output) { (write: (Data) throws(SnapshotFormat.FormatError) -> Void) throws(SnapshotFormat.FormatError) in
            try write(Data(header.bytes))
            // Two buffers: a chunk is sealed once the next read shows whether it is the last.
            var current = [UInt8](repeating: 0, count: chunkSize)
            var next = [UInt8](repeating: 0, count: chunkSize)
            var have = try reader.fill(&current)
            while true {
                let following = have == chunkSize ? try reader.fill(&next) : 0
                let sealed = try current.withUnsafeBytes { raw in
                    Result { () throws(SnapshotFormat.FormatError) in
                        try sealer.sealChunk(UnsafeRawBufferPointer(rebasing: raw[0..<have]), last: following == 0)
                    }
                }.get()
                try write(sealed.ciphertext)
                try write(sealed.tag)
                plain += have
                progress?(plain)
                if following == 0 { break }
                swap(&current, &next)
                have = following
            }
        }
        return Summary(plaintextBytes: plain, objectBytes: written, snapshotID: snapshotID)
    }

    /// Decrypts the object `input` into `output`, verifying every chunk and the end; `output`
    /// appears only when all of it verified.
    @discardableResult
    public static func decrypt(input: String, output: String, dataKey: SymmetricKey, progress: ((Int) -> Void)? = nil) throws(SnapshotFormat
        .FormatError) -> Summary
    {
        let reader = try Reader(path: input)
        defer { reader.close() }
        var head = [UInt8](repeating: 0, count: 15 + SnapshotFormat.saltSize + 255)
        let got = try reader.fill(&head)
        guard let header = try SnapshotFormat.Header.parse(head[0..<got]) else {
            throw SnapshotFormat.FormatError(.truncated, "\(input) ends inside the snapshot header")
        }
        var opener = SnapshotOpener(dataKey: dataKey, header: header)
        var object = header.bytes.count
        let full = header.chunkSize + SnapshotFormat.tagSize
        let written = try writeAtomically(output) { (write: (Data) throws(SnapshotFormat.FormatError) -> Void) throws(SnapshotFormat.FormatError) in
            var current = [UInt8](repeating: 0, count: full)
            var next = [UInt8](repeating: 0, count: full)
            // What the header read took beyond the header is the start of the first chunk.
            let spill = Array(head[header.bytes.count..<got])
            current.replaceSubrange(0..<spill.count, with: spill)
            var have = spill.count
            if have < full { have += try reader.fill(&current, from: have) }
            while true {
                let following = have == full ? try reader.fill(&next) : 0
                if following == 0, have < SnapshotFormat.tagSize {
                    throw SnapshotFormat.FormatError(.truncated, "the object ends without its last chunk (after \(object) bytes)")
                }
                let plain = try current.withUnsafeBytes { raw in
                    Result { () throws(SnapshotFormat.FormatError) in
                        try opener.openChunk(UnsafeRawBufferPointer(rebasing: raw[0..<have]), last: following == 0)
                    }
                }.get()
                try write(plain)
                object += have
                progress?(object)
                if following == 0 { break }
                swap(&current, &next)
                have = following
            }
            try write(try opener.finish())
        }
        return Summary(plaintextBytes: written, objectBytes: object, snapshotID: header.snapshotID)
    }

    /// Whole-buffer reads from a file descriptor (no allocation per read).
    final class Reader {
        let fd: Int32
        let path: String

        init(path: String) throws(SnapshotFormat.FormatError) {
            fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            self.path = path
            guard fd >= 0 else { throw SnapshotFormat.FormatError(.io, "cannot open \(path) for reading: \(String(cString: strerror(errno)))") }
        }

        /// Fills `buffer` from `offset` until full or end of file; returns the bytes read.
        func fill(_ buffer: inout [UInt8], from offset: Int = 0) throws(SnapshotFormat.FormatError) -> Int {
            var total = offset
            while total < buffer.count {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + total, $0.count - total) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SnapshotFormat.FormatError(.io, "cannot read \(path): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                total += n
            }
            return total - offset
        }

        func close() { _ = Glibc.close(fd) }
    }

    /// Runs `body` with a writer into a temporary file beside `path`; on success fsyncs and
    /// renames it to `path`, on any failure removes it. Returns the bytes written.
    static func writeAtomically(
        _ path: String, _ body: ((Data) throws(SnapshotFormat.FormatError) -> Void) throws(SnapshotFormat.FormatError) -> Void
    ) throws(SnapshotFormat.FormatError) -> Int {
        let url = URL(fileURLWithPath: path)
        let temp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(UInt32.random(in: 0...UInt32.max))")
            .path
        guard FileManager.default.createFile(atPath: temp, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forWritingAtPath: temp)
        else {
            throw SnapshotFormat.FormatError(.io, "cannot create \(temp) (is the directory of \(path) writable?)")
        }
        var written = 0
        do throws(SnapshotFormat.FormatError) {
            try body { (data: Data) throws(SnapshotFormat.FormatError) in
                guard !data.isEmpty else { return }
                do { try handle.write(contentsOf: data) } catch {
                    throw SnapshotFormat.FormatError(.io, "cannot write \(path): \(error.localizedDescription)")
                }
                written += data.count
            }
            do { try handle.synchronize() } catch { throw SnapshotFormat.FormatError(.io, "cannot sync \(path): \(error.localizedDescription)") }
            try? handle.close()
            guard rename(temp, path) == 0 else {
                throw SnapshotFormat.FormatError(.io, "cannot move the result into place at \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? handle.close()
            unlink(temp)
            throw error
        }
        return written
    }
}
