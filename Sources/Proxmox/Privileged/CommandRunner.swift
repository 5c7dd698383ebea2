import Subprocess

/// What a finished command produced.
public struct CommandResult: Sendable, Equatable {
    /// Exit code, or 128+signal when killed by a signal.
    public var exitCode: Int32
    public var stdout: String
    public var stderr: String

    public init(exitCode: Int32, stdout: String, stderr: String = "") {
        self.exitCode = exitCode
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs a program with an argument vector (never through a shell). The root backend's only I/O edge.
public protocol CommandRunner: Sendable {
    func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult
}

/// Runs commands with swift-subprocess: bounded output capture, and the child is torn down when the
/// calling task is cancelled.
public struct SubprocessCommandRunner: CommandRunner {
    /// Largest stdout or stderr kept, in bytes.
    public var outputLimit: Int

    public init(outputLimit: Int = 4 << 20) { self.outputLimit = outputLimit }

    public func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        let result = try await Subprocess.run(
            .name(executable), arguments: Arguments(arguments),
            output: .string(limit: outputLimit), error: .string(limit: outputLimit))
        let code: Int32
        switch result.terminationStatus {
        case .exited(let c): code = Int32(c)
        case .signaled(let s): code = 128 + Int32(s)
        }
        return CommandResult(exitCode: code, stdout: result.standardOutput, stderr: result.standardError)
    }
}
