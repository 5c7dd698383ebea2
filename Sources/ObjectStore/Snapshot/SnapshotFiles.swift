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
        let reader = try open(input)
        defer { try? reader.close() }
        var plain = 0
        let written = try writeAtomically(output) { (write: (Data) throws(SnapshotFormat.FormatError) -> Void) throws(SnapshotFormat.FormatError) in
            try write(Data(header.bytes))
            while true {
                let block = try read(reader, chunkSize, name: input)
                if block.isEmpty { break }
                plain += block.count
                try write(try sealer.add(block))
                progress?(plain)
            }
            try write(try sealer.finish())
        }
        return Summary(plaintextBytes: plain, objectBytes: written, snapshotID: snapshotID)
    }

    /// Decrypts the object `input` into `output`, verifying every chunk and the end; `output`
    /// appears only when all of it verified.
    @discardableResult
    public static func decrypt(input: String, output: String, dataKey: SymmetricKey, progress: ((Int) -> Void)? = nil) throws(SnapshotFormat
        .FormatError) -> Summary
    {
        var opener = SnapshotOpener(dataKey: dataKey)
        let reader = try open(input)
        defer { try? reader.close() }
        var object = 0
        let written = try writeAtomically(output) { (write: (Data) throws(SnapshotFormat.FormatError) -> Void) throws(SnapshotFormat.FormatError) in
            while true {
                let block = try read(reader, 1 << 20, name: input)
                if block.isEmpty { break }
                object += block.count
                try write(try opener.add(block))
                progress?(object)
            }
            try write(try opener.finish())
        }
        return Summary(plaintextBytes: written, objectBytes: object, snapshotID: opener.header?.snapshotID ?? "")
    }

    static func open(_ path: String) throws(SnapshotFormat.FormatError) -> FileHandle {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SnapshotFormat.FormatError(.io, "cannot open \(path) for reading")
        }
        return handle
    }

    static func read(_ handle: FileHandle, _ count: Int, name: String) throws(SnapshotFormat.FormatError) -> Data {
        do { return try handle.read(upToCount: count) ?? Data() } catch {
            throw SnapshotFormat.FormatError(.io, "cannot read \(name): \(error.localizedDescription)")
        }
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
