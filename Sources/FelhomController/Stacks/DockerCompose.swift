import FelhomCore
import Foundation
import Subprocess

/// The real ``ComposeRuntime``: the `docker compose` CLI (Compose v2), run through
/// swift-subprocess, its JSON output parsed by ``ComposeJSON``.
///
/// Compose's traps (shared facts): `stop`/`restart` of an unknown project exit 0, `up -d` exits 0
/// even when a service exits at once — so callers read `ps --all` before and after.
public struct DockerCompose: ComposeRuntime {
    /// The docker executable (found on `PATH` by default).
    public var docker: String

    public init(docker: String = "docker") { self.docker = docker }

    public func containers(project: String) async throws(ControllerError) -> [ComposeContainer] {
        try ComposeJSON.containers(Array(try await run(["-p", project, "ps", "--all", "--format", "json"], what: "list \(project)").utf8))
    }

    public func validate(project: String, file: String) async throws(ControllerError) {
        do {
            _ = try await run(["-p", project, "-f", file, "config", "--quiet"], what: "validate \(project)")
        } catch {
            throw ControllerError(.invalidCompose, "stack \(project): \(file) is not a valid compose file: \(error.message)")
        }
    }

    public func up(project: String, file: String) async throws(ControllerError) {
        _ = try await run(["-p", project, "-f", file, "up", "-d", "--remove-orphans"], what: "deploy \(project)")
    }

    public func start(project: String, file: String) async throws(ControllerError) {
        _ = try await run(["-p", project, "-f", file, "start"], what: "start \(project)")
    }

    public func stop(project: String, file: String) async throws(ControllerError) {
        _ = try await run(["-p", project, "-f", file, "stop"], what: "stop \(project)")
    }

    public func restart(project: String, file: String) async throws(ControllerError) {
        _ = try await run(["-p", project, "-f", file, "restart"], what: "restart \(project)")
    }

    public func down(project: String, file: String) async throws(ControllerError) {
        _ = try await run(["-p", project, "-f", file, "down"], what: "remove \(project)")
    }

    public func resolvedConfig(project: String, file: String) async throws(ControllerError) -> String? {
        try await run(["-p", project, "-f", file, "config", "--format", "json"], what: "read the config of \(project)")
    }

    public func bindSources(project: String, file: String) async throws(ControllerError) -> [String] {
        try ComposeJSON.bindSources(try await run(["-p", project, "-f", file, "config", "--format", "json"], what: "read the config of \(project)"))
    }

    public func projectStatuses() async throws(ControllerError) -> [String: String]? {
        try ComposeJSON.projectStatuses(try await run(["ls", "--all", "--format", "json"], what: "list the projects"))
    }

    /// Runs `docker compose ARGS`; stdout on success, else an error with the last line of stderr.
    func run(_ arguments: [String], what: String) async throws(ControllerError) -> String {
        let (status, stdout, stderr): (TerminationStatus, String?, String?)
        do {
            let result = try await Subprocess.run(
                .name(docker), arguments: Arguments(["compose"] + arguments), output: .string(limit: 16 << 20), error: .string(limit: 1 << 20))
            (status, stdout, stderr) = (result.terminationStatus, result.standardOutput, result.standardError)
        } catch {
            throw ControllerError(.runtime, "cannot run \(docker) compose to \(what): \(error)")
        }
        guard status.isSuccess else {
            let lines = (stderr ?? "").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let last = lines.last(where: { !$0.hasPrefix("Container ") && !$0.hasPrefix("Network ") }) ?? lines.last ?? "no output"
            throw ControllerError(.runtime, "docker compose could not \(what) (\(status)): \(last)")
        }
        return stdout ?? ""
    }
}
