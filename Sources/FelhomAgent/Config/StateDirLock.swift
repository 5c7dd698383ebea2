import FelhomCore
import Foundation

/// An exclusive lock on `state_dir/agent.lock` (flock): two agents on one state directory would
/// interleave journal and nonce writes. Held for the life of the process (the kernel releases it
/// when the process exits, however it exits).
public final class StateDirLock: Sendable {
    let lock: FileLock
    public var path: String { lock.path }

    /// Takes the lock, or throws naming the directory when another process holds it.
    public init(stateDir: String) throws(AgentLockError) {
        do {
            lock = try FileLock(path: stateDir + "/agent.lock")
        } catch {
            switch error.code {
            case .held:
                throw AgentLockError(
                    code: .held, message: "another felhom-agent is using state_dir '\(stateDir)' (it holds \(stateDir)/agent.lock); stop it first")
            case .unopenable: throw AgentLockError(code: .unopenable, message: error.message)
            }
        }
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
    public func release() { lock.release() }
}

/// The state directory is locked by another agent, or the lock file cannot be opened.
public struct AgentLockError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable { case held, unopenable }
    public var code: Code
    public var message: String
    public var description: String { message }
}
