import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive lock on `state_dir/agent.lock` (flock): two agents on one state directory would
/// interleave journal and nonce writes. Held for the life of the process (the kernel releases it
/// when the process exits, however it exits).
public final class StateDirLock: Sendable {
    let fd: Int32
    public let path: String

    /// Takes the lock, or throws naming the directory when another process holds it.
    public init(stateDir: String) throws(AgentLockError) {
        path = stateDir + "/agent.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw AgentLockError(code: .unopenable, message: "cannot open '\(path)': \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw AgentLockError(code: .held, message: "another felhom-agent is using state_dir '\(stateDir)' (it holds \(path)); stop it first")
        }
        fd = descriptor
    }

    /// Whether another process holds the lock now (for `felhom-agent check`); does not keep it.
    public static func isHeld(stateDir: String) -> Bool {
        do {
            let lock = try StateDirLock(stateDir: stateDir)
            lock.release()
            return false
        } catch {
            return error.code == .held
        }
    }

    /// Releases the lock (also released when the process exits).
    public func release() {
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}

/// The state directory is locked by another agent, or the lock file cannot be opened.
public struct AgentLockError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable { case held, unopenable }
    public var code: Code
    public var message: String
    public var description: String { message }
}
