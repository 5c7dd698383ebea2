import FelhomCore
import Foundation

/// A stack's state as `felhom-controller stacks list` shows it.
public enum StackState: String, Sendable, Codable {
    /// Every service has a running container.
    case running
    /// Some services run, some do not.
    case partial
    /// Containers exist and none runs.
    case stopped
    /// No containers: never deployed, or removed.
    case notDeployed = "not_deployed"
}

/// One stack: a folder under `stacks.dir` holding a `compose.yaml`.
public struct StackStatus: Sendable, Equatable, Codable {
    public struct Service: Sendable, Equatable, Codable {
        public var name: String
        public var state: String
    }
    public var name: String
    public var state: StackState
    public var `protected`: Bool
    public var services: [Service]
}

/// The stacks of one guest: discovery under `stacks.dir`, state from Compose, and the operations,
/// with the protected (infrastructure) stacks refused for stop and remove. The one place that
/// mutates stacks; the watchdog and the quiesce loop go through it.
public struct Stacks: Sendable {
    public let directory: String
    public let protectedNames: Set<String>
    public let runtime: any ComposeRuntime

    /// The infrastructure stacks protected by default.
    public static let defaultProtected = ["traefik", "cloudflared", "felhom-controller"]

    public init(directory: String, protectedNames: [String] = Stacks.defaultProtected, runtime: any ComposeRuntime) {
        self.directory = directory
        self.protectedNames = Set(protectedNames)
        self.runtime = runtime
    }

    /// The compose project name of a stack folder, as Compose itself would normalize it:
    /// lower case, only `a-z 0-9 _ -`, starting with a letter or digit. `nil` when nothing is left.
    public static func projectName(folder: String) -> String? {
        let kept = folder.lowercased().unicodeScalars.filter { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
        let name = String(String.UnicodeScalarView(kept)).drop { $0 == "_" || $0 == "-" }
        return name.isEmpty ? nil : String(name)
    }

    /// The stack folders (those holding `compose.yaml`), sorted by name.
    public func names() throws(ControllerError) -> [String] {
        let entries: [String]
        do { entries = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw ControllerError(.config, "cannot list stacks.dir '\(directory)': it does not exist or is not readable")
        }
        return entries.filter { FileManager.default.fileExists(atPath: composeFile($0)) && Self.projectName(folder: $0) != nil }.sorted()
    }

    /// The compose file of stack `name`.
    public func composeFile(_ name: String) -> String { directory + "/" + name + "/compose.yaml" }

    /// The project name of an existing stack; an unknown name is an error naming it.
    func project(_ name: String) throws(ControllerError) -> String {
        guard !name.contains("/"), name != "..", name != ".", FileManager.default.fileExists(atPath: composeFile(name)),
            let project = Self.projectName(folder: name)
        else {
            throw ControllerError(
                .unknownStack, "no stack '\(TerminalText.escaped(name))' (no \(directory)/\(TerminalText.escaped(name))/compose.yaml)")
        }
        return project
    }

    /// The host paths stack `name` bind-mounts.
    public func bindSources(_ name: String) async throws(ControllerError) -> [String] {
        try await runtime.bindSources(project: try project(name), file: composeFile(name))
    }

    /// Whether the platform must never stop or remove `name`.
    public func isProtected(_ name: String) -> Bool { protectedNames.contains(name) }

    /// Every stack with its state.
    public func list() async throws(ControllerError) -> [StackStatus] {
        var out: [StackStatus] = []
        for name in try names() { out.append(try await status(name)) }
        return out
    }

    /// One stack's state, from its containers.
    public func status(_ name: String) async throws(ControllerError) -> StackStatus {
        let containers = try await runtime.containers(project: try project(name))
        let services = Dictionary(grouping: containers, by: \.service).map { service, cs in
            StackStatus.Service(name: service, state: cs.contains { $0.state == "running" } ? "running" : cs.first?.state ?? "unknown")
        }.sorted { $0.name < $1.name }
        let running = services.filter { $0.state == "running" }.count
        let state: StackState =
            services.isEmpty ? .notDeployed : running == services.count ? .running : running == 0 ? .stopped : .partial
        return StackStatus(name: name, state: state, protected: isProtected(name), services: services)
    }

    /// The stacks with at least one running container, in one runtime call when the runtime can
    /// list all projects at once (else one status per stack).
    public func runningNames() async throws(ControllerError) -> [String] {
        let names = try names()
        if let statuses = try await runtime.projectStatuses() {
            return names.filter { name in Self.projectName(folder: name).flatMap { statuses[$0] }?.contains("running") ?? false }
        }
        var out: [String] = []
        for name in names where [.running, .partial].contains(try await status(name).state) { out.append(name) }
        return out
    }

    /// Starts the containers of a stack known to be deployed (no status call first); ``start(_:)``
    /// checks and deploys a stack that has no containers.
    public func startDeployed(_ name: String) async throws(ControllerError) {
        try await runtime.start(project: try project(name), file: composeFile(name))
    }

    /// Validates the compose file and the bulk-volume rule, then creates and starts the stack (`up -d`).
    public func deploy(_ name: String) async throws(ControllerError) {
        let project = try project(name)
        try await runtime.validate(project: project, file: composeFile(name))
        if let config = try await runtime.resolvedConfig(project: project, file: composeFile(name)) {
            let violations = try ComposeJSON.bulkViolations(config)
            if !violations.isEmpty {
                throw ControllerError(.invalidCompose, "stack \(name) breaks the bulk-volume rule: " + violations.joined(separator: "; "))
            }
        }
        try await runtime.up(project: project, file: composeFile(name))
    }

    /// Starts a deployed stack; a stack never deployed is deployed.
    public func start(_ name: String) async throws(ControllerError) {
        let project = try project(name)
        if try await runtime.containers(project: project).isEmpty {
            try await deploy(name)
        } else {
            try await runtime.start(project: project, file: composeFile(name))
        }
    }

    /// Stops a stack (refused for a protected one).
    public func stop(_ name: String) async throws(ControllerError) {
        let project = try project(name)
        try refuseIfProtected(name, "stop")
        try await runtime.stop(project: project, file: composeFile(name))
    }

    /// Restarts a stack. Protected stacks may be restarted: it does not take them away.
    public func restart(_ name: String) async throws(ControllerError) {
        let project = try project(name)
        try await runtime.restart(project: project, file: composeFile(name))
    }

    /// Removes a stack's containers and networks; its named volumes and folders stay (refused for a
    /// protected stack).
    public func remove(_ name: String) async throws(ControllerError) {
        let project = try project(name)
        try refuseIfProtected(name, "remove")
        try await runtime.down(project: project, file: composeFile(name))
    }

    private func refuseIfProtected(_ name: String, _ verb: String) throws(ControllerError) {
        guard isProtected(name) else { return }
        throw ControllerError(
            .protectedStack, "stack '\(name)' is protected infrastructure: the platform never tries to \(verb) it (stacks.protected)")
    }
}
