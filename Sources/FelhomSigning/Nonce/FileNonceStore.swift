import FelhomCore
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A durable nonce store: an append-only log, one `NONCE EXPIRES_EPOCH` line per nonce, fsync'd
/// before `record` returns, replayed on open.
///
/// A torn last line (a crash mid-write) is cut off on open. The log is compacted when most of it
/// is dead: live entries go to a temporary file, fsync, rename, fsync of the directory. Only
/// nonces whose op expired more than `retention` ago are dropped. Any I/O error makes `record`
/// answer ``NonceOutcome/unavailable(_:)``, which the verifier treats as a replay: nothing runs twice.
public final class FileNonceStore: NonceStore {
    struct State {
        var fd: Int32
        var live: [String: Int64]
        var lines: Int
    }

    public let path: String
    let clock: WallClock
    let retention: TimeInterval
    /// Compact when the log has this many more lines than live entries.
    let compactionSlack: Int
    private let state: Mutex<State>

    /// Opens (or creates, mode 0600) the log at `path` and replays it.
    public init(path: String, clock: WallClock = SystemWallClock(), retention: TimeInterval = 600, compactionSlack: Int = 4096) throws {
        self.path = path
        self.clock = clock
        self.retention = retention
        self.compactionSlack = compactionSlack
        var live: [String: Int64] = [:]
        var lines = 0
        var goodLength = 0
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw NonceStoreError(message: "nonce log '\(path)' is a directory")
        }
        // Replay regular files only (a device such as /dev/full is opened but never read).
        let isRegular = (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeRegular
        if isRegular, let data = FileManager.default.contents(atPath: path) {
            let bytes = [UInt8](data)
            var start = 0
            while let nl = bytes[start...].firstIndex(of: 0x0A) {
                let parts = String(decoding: bytes[start..<nl], as: UTF8.self).split(separator: " ")
                if parts.count == 2, let exp = Int64(parts[1]) {
                    live[String(parts[0])] = max(live[String(parts[0])] ?? exp, exp)
                    lines += 1
                }
                start = nl + 1
            }
            goodLength = start
            if goodLength < bytes.count {
                // A torn last line: cut it so the next append starts on a fresh line.
                guard truncate(path, off_t(goodLength)) == 0 else {
                    throw NonceStoreError(message: "cannot repair torn nonce log '\(path)': \(String(cString: strerror(errno)))")
                }
            }
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw NonceStoreError(message: "cannot open nonce log '\(path)': \(String(cString: strerror(errno)))")
        }
        Self.fsyncDirectory(of: path)
        state = Mutex(State(fd: fd, live: live, lines: lines))
    }

    deinit {
        state.withLock { _ = close($0.fd) }
    }

    /// Number of nonces currently remembered.
    public var count: Int { state.withLock { $0.live.count } }

    public func record(_ nonce: String, expiresAt: Date) -> NonceOutcome {
        guard !nonce.isEmpty, !nonce.contains(where: { $0 == " " || $0 == "\n" || $0 == "\r" }) else {
            return .unavailable("nonce contains whitespace")
        }
        let now = clock.now()
        return state.withLock { s -> NonceOutcome in
            if s.live[nonce] != nil { return .seen }
            let line = Array("\(nonce) \(Int64(expiresAt.timeIntervalSince1970.rounded(.up)))\n".utf8)
            let written = line.withUnsafeBytes { write(s.fd, $0.baseAddress, $0.count) }
            guard written == line.count else {
                return .unavailable("cannot append to nonce log '\(path)': \(String(cString: strerror(errno)))")
            }
            guard fsync(s.fd) == 0 else {
                return .unavailable("cannot fsync nonce log '\(path)': \(String(cString: strerror(errno)))")
            }
            s.live[nonce] = Int64(expiresAt.timeIntervalSince1970.rounded(.up))
            s.lines += 1
            if s.lines > s.live.count + compactionSlack {
                compact(&s, now: now)
            }
            return .recorded
        }
    }

    /// Drops nonces expired for longer than `retention` and rewrites the log. Public for operators'
    /// maintenance and tests; `record` calls it on its own when the log has grown.
    public func compact() throws {
        let now = clock.now()
        try state.withLock { s in
            if let e = compact(&s, now: now) { throw e }
        }
    }

    @discardableResult
    private func compact(_ s: inout State, now: Date) -> NonceStoreError? {
        let cutoff = Int64(now.timeIntervalSince1970 - retention)
        let keep = s.live.filter { $0.value >= cutoff }
        let tmp = path + ".compact"
        let text = keep.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined()
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return NonceStoreError(message: "compaction: cannot create '\(tmp)'") }
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            return NonceStoreError(message: "compaction of '\(path)' failed: \(String(cString: strerror(errno)))")
        }
        Self.fsyncDirectory(of: path)
        let newFD = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard newFD >= 0 else { return NonceStoreError(message: "cannot reopen '\(path)' after compaction") }
        close(s.fd)
        s.fd = newFD
        s.live = keep
        s.lines = keep.count
        return nil
    }

    static func fsyncDirectory(of path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }
}

/// The nonce log could not be opened, repaired or compacted.
public struct NonceStoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
