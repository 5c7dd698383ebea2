import FelhomController
import FelhomCore
import Foundation
import Synchronization

/// An in-memory compose runtime for the quiesce, watchdog and secrets tests: one container per
/// project, a log of the calls, scripted start failures and bind mounts.
public final class FakeCompose: ComposeRuntime, Sendable {
    public struct State {
        public var running: [String: Bool] = [:]
        public var log: [String] = []
        public var failStart: Set<String> = []
        public var onStop: (@Sendable (String) -> Void)?
        public var binds: [String: [String]] = [:]
    }
    public let state = Mutex(State())

    public init(running: [String: Bool]) { state.withLock { $0.running = running } }

    public var log: [String] { state.withLock { $0.log } }
    public func isRunning(_ p: String) -> Bool { state.withLock { $0.running[p] ?? false } }

    public func containers(project: String) async throws(ControllerError) -> [ComposeContainer] {
        state.withLock { s in
            guard let r = s.running[project] else { return [] }
            return [ComposeContainer(service: "app", name: "\(project)-app-1", state: r ? "running" : "exited")]
        }
    }
    public func validate(project: String, file: String) async throws(ControllerError) {}
    public func up(project: String, file: String) async throws(ControllerError) { try await start(project: project, file: file) }
    public func start(project: String, file: String) async throws(ControllerError) {
        let fail = state.withLock { s -> Bool in
            s.log.append("start \(project)")
            if s.failStart.contains(project) { return true }
            s.running[project] = true
            return false
        }
        if fail { throw ControllerError(.runtime, "start \(project) failed") }
    }
    public func stop(project: String, file: String) async throws(ControllerError) {
        let hook = state.withLock { s in
            s.log.append("stop \(project)")
            s.running[project] = false
            return s.onStop
        }
        hook?(project)
    }
    public func restart(project: String, file: String) async throws(ControllerError) { state.withLock { $0.log.append("restart \(project)") } }
    public func down(project: String, file: String) async throws(ControllerError) { state.withLock { $0.running[project] = nil } }
    public func bindSources(project: String, file: String) async throws(ControllerError) -> [String] { state.withLock { $0.binds[project] ?? [] } }
}

/// Stack folders for the fake engine: app stacks a, b, c and the protected traefik.
public struct QuiesceWorld {
    public let dir = NSTemporaryDirectory() + "felhom-quiesce-\(UUID().uuidString)"
    public var stacksDir: String { dir + "/stacks" }
    public var stateDir: String { dir + "/state" }

    public init(_ names: [String] = ["a", "b", "c", "traefik"]) throws {
        for n in names {
            try FileManager.default.createDirectory(atPath: stacksDir + "/" + n, withIntermediateDirectories: true)
            try "services: {}\n".write(toFile: stacksDir + "/\(n)/compose.yaml", atomically: true, encoding: .utf8)
        }
    }

    public var marker: QuiesceMarker? { try? QuiesceMarker.read(stateDir: stateDir) }
}
