import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A failure of an ``AppendLog``. The message names the file and the system error; it never
/// contains record contents.
public struct AppendLogError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file or its directory could not be opened, created or read.
        case open
        /// A line that is not the last one is malformed: the log is damaged, nothing is trusted.
        case corrupt
        /// An append failed; the log was cut back to its last good byte (nothing half-written).
        case write
        /// An append failed and the log could not be cut back: appends are refused until repaired.
        case damaged
        /// A rewrite (compaction) failed; the old log is untouched and still in use.
        case rewrite
    }
    public var code: Code
    public var message: String
    public var description: String { message }

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }
}

/// The system calls an ``AppendLog`` makes, so tests can inject short writes and failures.
public protocol AppendLogIO: Sendable {
    func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32
    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int
    func fsync(_ fd: Int32) -> Int32
    func ftruncate(_ fd: Int32, _ length: off_t) -> Int32
    func rename(_ from: String, _ to: String) -> Int32
    func close(_ fd: Int32)
}

/// The real system calls.
public struct POSIXAppendLogIO: AppendLogIO {
    public init() {}
    public func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
        #if canImport(Glibc)
            Glibc.open(path, flags, mode)
        #else
            Darwin.open(path, flags, mode)
        #endif
    }
    public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        #if canImport(Glibc)
            Glibc.write(fd, bytes.baseAddress, bytes.count)
        #else
            Darwin.write(fd, bytes.baseAddress, bytes.count)
        #endif
    }
    public func fsync(_ fd: Int32) -> Int32 {
        #if canImport(Glibc)
            Glibc.fsync(fd)
        #else
            Darwin.fsync(fd)
        #endif
    }
    public func ftruncate(_ fd: Int32, _ length: off_t) -> Int32 {
        #if canImport(Glibc)
            Glibc.ftruncate(fd, length)
        #else
            Darwin.ftruncate(fd, length)
        #endif
    }
    public func rename(_ from: String, _ to: String) -> Int32 {
        #if canImport(Glibc)
            Glibc.rename(from, to)
        #else
            Darwin.rename(from, to)
        #endif
    }
    public func close(_ fd: Int32) {
        #if canImport(Glibc)
            _ = Glibc.close(fd)
        #else
            _ = Darwin.close(fd)
        #endif
    }
}

/// The one crash-safe append-only file (the agent's operation journal, the nonce log): one record
/// per line, each fsync'd before ``append(_:)`` returns.
///
/// The rules, so that a record acted on is a record remembered:
/// - the file is created mode 0600 and its directory fsync'd, so the file itself survives a crash;
/// - the log remembers the offset after its last good record; a failed or short write is cut back
///   to it (`ftruncate` + `fsync`), so a fragment can never fuse with the next record. If it cannot
///   be cut back, every later append is refused until the log is reopened;
/// - on open, a last line that is torn (no newline) or unreadable is dropped and cut off; any
///   other unreadable line fails closed (``AppendLogError/Code/corrupt``);
/// - a rewrite (compaction) writes a new file, fsyncs it, renames it over the old one and fsyncs
///   the directory, and appends go to the new file's descriptor opened before the rename — never to
///   an unlinked inode.
public final class AppendLog: Sendable {
    public let path: String
    let io: any AppendLogIO

    private struct State {
        var fd: Int32
        /// Length of the file up to the end of the last good record.
        var goodLength: off_t
        /// Set when a failed append could not be cut back.
        var damaged: String?
        /// False for a device (nothing to cut back).
        var regular: Bool
    }
    private let state: Mutex<State>

    /// Opens (or creates) the log and reads its records.
    ///
    /// `accept` is called once per complete line (without its newline) in file order and returns
    /// whether the line is a valid record. A rejected last line is treated as torn and cut off;
    /// a rejected line before the last throws ``AppendLogError/Code/corrupt``.
    public init(
        path: String, io: any AppendLogIO = POSIXAppendLogIO(), accept: (ArraySlice<UInt8>) -> Bool
    ) throws(AppendLogError) {
        self.path = path
        self.io = io
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw AppendLogError(code: .open, message: "'\(path)' is a directory")
        }
        let dir = Self.directory(of: path)
        var isDirDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirDir), isDirDir.boolValue else {
            throw AppendLogError(code: .open, message: "the directory '\(dir)' of '\(path)' does not exist (create it, mode 0700)")
        }
        let existed = FileManager.default.fileExists(atPath: path)
        let fd = io.open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AppendLogError(code: .open, message: "cannot open '\(path)': \(Self.errnoText())")
        }
        var good: off_t = 0
        let isRegular = (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeRegular
        if isRegular {
            guard let data = FileManager.default.contents(atPath: path) else {
                io.close(fd)
                throw AppendLogError(code: .open, message: "cannot read '\(path)'")
            }
            let bytes = [UInt8](data)
            var start = 0
            var lines: [Range<Int>] = []
            while let nl = bytes[start...].firstIndex(of: 0x0A) {
                lines.append(start..<nl)
                start = nl + 1
            }
            for (i, r) in lines.enumerated() {
                if accept(bytes[r]) {
                    good = off_t(r.upperBound + 1)
                } else if i == lines.count - 1 && start == bytes.count {
                    break  // an unreadable last line: a torn write that happened to end in a newline
                } else {
                    io.close(fd)
                    throw AppendLogError(
                        code: .corrupt,
                        message:
                            "'\(path)' line \(i + 1) is malformed and is not the last line: refusing to trust the log (restore it or move it aside)")
                }
            }
            if good < off_t(bytes.count) {
                guard io.ftruncate(fd, good) == 0, io.fsync(fd) == 0 else {
                    let why = Self.errnoText()
                    io.close(fd)
                    throw AppendLogError(code: .open, message: "cannot cut the torn last line of '\(path)': \(why)")
                }
            }
        }
        if !existed, !Self.fsyncDirectory(dir, io: io) {
            let why = Self.errnoText()
            io.close(fd)
            throw AppendLogError(code: .open, message: "cannot fsync the directory '\(dir)': \(why)")
        }
        state = Mutex(State(fd: fd, goodLength: good, damaged: nil, regular: isRegular))
    }

    deinit { state.withLock { io.close($0.fd) } }

    /// Appends one record (a newline is added; the record must not contain one) and fsyncs it.
    /// Only after this returns may what it records be acted on. On failure the file is as it was.
    public func append(_ record: [UInt8]) throws(AppendLogError) {
        precondition(!record.contains(0x0A), "an append-log record must not contain a newline")
        let line = record + [0x0A]
        let failure: AppendLogError? = state.withLock { s in
            if let why = s.damaged {
                return AppendLogError(
                    code: .damaged, message: "'\(path)' refuses appends after an unrepaired failed write (\(why)); restart to repair")
            }
            var error = Self.writeAll(line, to: s.fd, io: io)
            if error == nil, io.fsync(s.fd) != 0 { error = "fsync: " + Self.errnoText() }
            guard let error else {
                s.goodLength += off_t(line.count)
                return nil
            }
            // Cut back to the last good record so nothing half-written stays for the next append.
            if s.regular {
                if io.ftruncate(s.fd, s.goodLength) != 0 || io.fsync(s.fd) != 0 {
                    s.damaged = error
                    return AppendLogError(
                        code: .damaged,
                        message: "cannot append to '\(path)' (\(error)) nor cut it back: \(Self.errnoText()); appends refused until restart")
                }
            }
            return AppendLogError(code: .write, message: "cannot append to '\(path)': \(error)")
        }
        if let failure { throw failure }
    }

    /// Replaces the whole log with `records` (compaction): new file, fsync, rename, fsync of the
    /// directory. On failure the old log is kept and stays in use.
    public func rewrite(_ records: [[UInt8]]) throws(AppendLogError) {
        let tmp = path + ".rewrite"
        let failure: AppendLogError? = state.withLock { s in
            let fd = io.open(tmp, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return AppendLogError(code: .rewrite, message: "cannot create '\(tmp)': \(Self.errnoText())") }
            var bytes: [UInt8] = []
            for r in records { bytes += r + [0x0A] }
            guard Self.writeAll(bytes, to: fd, io: io) == nil, io.fsync(fd) == 0, io.rename(tmp, path) == 0 else {
                let why = Self.errnoText()
                io.close(fd)
                unlink(tmp)
                return AppendLogError(code: .rewrite, message: "rewrite of '\(path)' failed: \(why); the old log is kept")
            }
            // The rename happened: from now on the new file is the log, whatever the directory fsync says.
            io.close(s.fd)
            s.fd = fd
            s.goodLength = off_t(bytes.count)
            s.regular = true
            guard Self.fsyncDirectory(Self.directory(of: path), io: io) else {
                return AppendLogError(code: .rewrite, message: "rewrite of '\(path)': cannot fsync its directory: \(Self.errnoText())")
            }
            return nil
        }
        if let failure { throw failure }
    }

    /// Length of the log up to its last good record.
    public var length: Int { state.withLock { Int($0.goodLength) } }

    static func directory(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }

    /// fsyncs a directory so a created or renamed entry in it survives a crash.
    @discardableResult
    public static func fsyncDirectory(_ dir: String, io: any AppendLogIO = POSIXAppendLogIO()) -> Bool {
        let fd = io.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        guard fd >= 0 else { return false }
        defer { io.close(fd) }
        return io.fsync(fd) == 0
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// Writes all of `bytes`, continuing after short writes; the error text when a write fails.
    static func writeAll(_ bytes: [UInt8], to fd: Int32, io: any AppendLogIO) -> String? {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { io.write(fd, UnsafeRawBufferPointer(rebasing: $0[written...])) }
            guard n > 0 else { return n == 0 ? "write returned 0" : errnoText() }
            written += n
        }
        return nil
    }
}
