import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Whole-file writes that survive a crash: the new content goes to a temporary file in the same
/// directory, is fsync'd, renamed over the target, and the directory is fsync'd. A reader sees the
/// old file or the new one, never a mix; every system call's result is checked.
public enum DurableFile {
    /// Writes `data` to `path` with `mode` (default 0600), atomically and durably; with `owner`,
    /// the file gets that user and group before it takes the target's name (the temporary file is
    /// created with `mode` already, so the content is never readable by more than that).
    public static func write(
        _ data: [UInt8], to path: String, mode: mode_t = 0o600, owner: (user: uid_t, group: gid_t)? = nil, io: any AppendLogIO = POSIXAppendLogIO()
    ) throws(AppendLogError) {
        let dir = AppendLog.directory(of: path)
        let tmp = dir + "/." + (path as NSString).lastPathComponent + ".tmp-\(getpid())"
        unlink(tmp)  // a leftover of a crash keeps its old mode and owner: start fresh
        let fd = io.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw AppendLogError(code: .open, message: "cannot create '\(tmp)': \(AppendLog.errnoText())")
        }
        let ok = AppendLog.writeAll(data, to: fd, io: io) == nil && io.fsync(fd) == 0
        let why = AppendLog.errnoText()
        io.close(fd)
        guard ok else {
            unlink(tmp)
            throw AppendLogError(code: .write, message: "cannot write '\(path)': \(why)")
        }
        if let owner, chown(tmp, owner.user, owner.group) != 0 {
            let why = AppendLog.errnoText()
            unlink(tmp)
            throw AppendLogError(code: .write, message: "cannot set the owner of '\(path)' to \(owner.user):\(owner.group): \(why)")
        }
        guard chmod(tmp, mode) == 0 else {
            let why = AppendLog.errnoText()
            unlink(tmp)
            throw AppendLogError(code: .write, message: "cannot set the mode of '\(path)': \(why)")
        }
        guard io.rename(tmp, path) == 0 else {
            let why = AppendLog.errnoText()
            unlink(tmp)
            throw AppendLogError(code: .write, message: "cannot rename into '\(path)': \(why)")
        }
        guard AppendLog.fsyncDirectory(dir, io: io) else {
            throw AppendLogError(code: .write, message: "wrote '\(path)' but cannot fsync its directory: \(AppendLog.errnoText())")
        }
    }
}
