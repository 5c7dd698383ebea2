import FelhomCore
import Foundation
import Synchronization

/// An in-memory ``ComposeRuntime`` for `felhom demo` on a machine without a Docker engine: each
/// stack is one service `app` whose container only changes state. Nothing runs; the demo says so.
/// Never used by `felhom-controller` itself.
public final class SimulatedCompose: ComposeRuntime, Sendable {
    let state = Mutex<[String: ComposeContainer]>([:])
    let binds: [String: [String]]

    /// `binds`: project → the host paths its (imagined) services bind-mount.
    public init(binds: [String: [String]] = [:]) { self.binds = binds }

    /// Makes the project's container exit as a crash would (exit code 137).
    public func crash(project: String) {
        state.withLock { s in
            s[project]?.state = "exited"
            s[project]?.exitCode = 137
        }
    }

    public func containers(project: String) async throws(ControllerError) -> [ComposeContainer] {
        state.withLock { s in s[project].map { [$0] } ?? [] }
    }

    public func validate(project: String, file: String) async throws(ControllerError) {
        guard FileManager.default.fileExists(atPath: file) else { throw ControllerError(.invalidCompose, "stack \(project): no \(file)") }
    }

    public func up(project: String, file: String) async throws(ControllerError) {
        try await validate(project: project, file: file)
        set(project, "running", create: true)
    }

    public func start(project: String, file: String) async throws(ControllerError) { set(project, "running") }
    public func stop(project: String, file: String) async throws(ControllerError) { set(project, "exited") }
    public func restart(project: String, file: String) async throws(ControllerError) { set(project, "running") }
    public func down(project: String, file: String) async throws(ControllerError) { state.withLock { _ = $0.removeValue(forKey: project) } }
    public func bindSources(project: String, file: String) async throws(ControllerError) -> [String] { binds[project] ?? [] }

    func set(_ project: String, _ value: String, create: Bool = false) {
        state.withLock { s in
            if s[project] == nil && create { s[project] = ComposeContainer(service: "app", name: "\(project)-app-1", state: value) }
            s[project]?.state = value
            s[project]?.exitCode = 0
        }
    }
}
