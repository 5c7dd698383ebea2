import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive advisory lock on a file (`flock`), across processes: held until ``release()`` or
/// until the process exits, however it exits (the kernel drops it). Used for one agent per state
/// directory and one quiesce per controller state directory.
public final class FileLock: Sendable {
    let fd: Int32
    public let path: String

    /// Takes the lock without waiting, or throws `.held` when another process (or another open of
    /// the same file in this process) holds it.
    /// With `wait`, blocks until the holder releases it instead (short critical sections shared by
    /// two processes, such as the self-update gate's state file).
    public init(path: String, wait: Bool = false) throws(FileLockError) {
        self.path = path
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw FileLockError(code: .unopenable, message: "cannot open '\(path)': \(String(cString: strerror(errno)))")
        }
        var taken = flock(descriptor, wait ? LOCK_EX : LOCK_EX | LOCK_NB)
        while wait && taken != 0 && errno == EINTR { taken = flock(descriptor, LOCK_EX) }
        guard taken == 0 else {
            close(descriptor)
            throw FileLockError(code: .held, message: "'\(path)' is locked by another process")
        }
        fd = descriptor
    }

    /// Releases the lock.
    public func release() {
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}

/// The lock is held elsewhere, or its file cannot be opened.
public struct FileLockError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable { case held, unopenable }
    public var code: Code
    public var message: String
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
