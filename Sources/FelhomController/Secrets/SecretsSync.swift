import FelhomAPI
import FelhomCore
import Foundation

/// Brings a guest's secret bundles (from the hub) into `secrets.dir` and, when a bundle that
/// existed changes, restarts the running stacks that use it **one at a time**, each healthy
/// before the next (no hot reload; ADR 0010).
///
/// A stack uses a bundle when one of its bind mounts is the bundle's file or a directory above
/// it (`docker compose config`). The stacks still to restart are written to
/// `state_dir/secrets-rollout.json` before the new file is written, so a crash mid-rollout goes
/// on at the next start (``resume()``) instead of leaving some apps on the old secrets unnoticed.
/// A stack that does not come back healthy within `healthTimeout` stops the rollout (the others
/// keep running on the old values) with a `secrets_rollout_failed` event naming it.
public struct SecretsSync: Sendable {
    /// What one ``apply(_:)`` did.
    public struct Outcome: Sendable, Equatable {
        /// Bundles written (new or changed).
        public var written: [String] = []
        /// Bundles refused (bad name, bad file, group conflict), with the reason.
        public var refused: [String: String] = [:]
        /// Stacks restarted, in order.
        public var restarted: [String] = []
        /// The stack that stopped the rollout, if one did.
        public var failed: String?
    }

    struct Rollout: Codable, Equatable {
        var stacks: [String]
        var bundles: [String]
    }

    let stacks: Stacks
    let writer: SecretsWriter
    let stateDir: String
    let healthTimeout: Duration
    let event: @Sendable (String, [String: String]) async -> Void
    let log: @Sendable (String) -> Void

    public init(
        stacks: Stacks, writer: SecretsWriter, stateDir: String, healthTimeout: Duration = .seconds(120),
        event: @escaping @Sendable (String, [String: String]) async -> Void = { _, _ in }, log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.stacks = stacks
        self.writer = writer
        self.stateDir = stateDir
        self.healthTimeout = healthTimeout
        self.event = event
        self.log = log
    }

    var rolloutFile: String { stateDir + "/secrets-rollout.json" }

    /// Writes each bundle of the hub's list (the exact file bytes, base64) and restarts the
    /// running stacks using a bundle that changed. A bad bundle is refused (its old file kept) and
    /// the others still go through.
    public func apply(_ bundles: [SecretBundleView]) async throws(ControllerError) -> Outcome {
        var outcome = Outcome()
        let settings = try ControllerSettings.load(stateDir: stateDir)
        var sources: [String: [String]]?  // stack → bind sources, read once and only when needed
        var toRestart: [String] = []
        var changedBundles: [String] = []
        for view in bundles.sorted(by: { $0.bundle < $1.bundle }) {
            let bundle = view.bundle
            do throws(ControllerError) {
                guard let text = view.file, let data = Data(base64Encoded: text) else {
                    throw ControllerError(.secrets, "secret bundle '\(TerminalText.escaped(String(bundle.prefix(80))))' came without its file bytes")
                }
                let bytes = Array(data)
                _ = try SecretsWriter.check(bundle: bundle, bytes: bytes)
                let old = writer.current(bundle)
                if sources == nil { sources = try await bindSources() }
                let users = Self.users(of: writer.path(of: bundle), sources: sources ?? [:])
                let group = try Self.group(for: bundle, users: users, settings: settings).map { name throws(ControllerError) in
                    try SecretsWriter.groupID(name)
                }
                if let old, old != bytes {
                    // Rotation: remember who must restart before the new file exists.
                    var running: [String] = []
                    for name in users where try await stacks.status(name).state != .notDeployed { running.append(name) }
                    toRestart = Array(Set(toRestart + running)).sorted()
                    changedBundles.append(bundle)
                    try saveRollout(Rollout(stacks: toRestart, bundles: changedBundles))
                }
                if try writer.write(bundle: bundle, bytes: bytes, group: group) {
                    outcome.written.append(bundle)
                    log("secrets: wrote bundle \(bundle) version \(view.version) (\(old == nil ? "new" : "changed"))")
                }
            } catch {
                outcome.refused[bundle] = error.message
                log("secrets: \(error.message)")
            }
        }
        let (restarted, failed) = try await rollout()
        outcome.restarted = restarted
        outcome.failed = failed
        return outcome
    }

    /// Goes on with a rollout a crash interrupted (at start-up). Returns the stacks restarted.
    public func resume() async throws(ControllerError) -> [String] {
        try await rollout().restarted
    }

    /// Restarts the stacks recorded in the rollout file one at a time, each healthy before the next.
    func rollout() async throws(ControllerError) -> (restarted: [String], failed: String?) {
        guard
            var pending = try StateFiles.read(
                Rollout.self, from: rolloutFile, damaged: { "secrets rollout file '\(rolloutFile)' is damaged (\($0))" })
        else { return ([], nil) }
        var restarted: [String] = []
        while let name = pending.stacks.first {
            let state = (try? await stacks.status(name).state) ?? .notDeployed
            if state == .running || state == .partial {
                log("secrets: restarting \(name) for bundle(s) \(pending.bundles.joined(separator: ", "))")
                var failure: String?
                do throws(ControllerError) {
                    try await stacks.restart(name)
                    failure = await waitHealthy(name)
                } catch { failure = error.message }
                if let failure {
                    let left = Array(pending.stacks.dropFirst())
                    log("secrets: \(name) did not come back healthy (\(failure)); rollout stopped, not restarted: \(left.joined(separator: ", "))")
                    await event(
                        "secrets_rollout_failed",
                        [
                            "stack": name, "reason": String(failure.prefix(300)), "count": "\(left.count)",
                            "not_restarted": left.joined(separator: ","),
                        ])
                    try removeRollout()
                    return (restarted, name)
                }
                restarted.append(name)
            }
            // A stopped stack reads the new file when it next starts.
            pending.stacks.removeFirst()
            try saveRollout(pending)
        }
        try removeRollout()
        return (restarted, nil)
    }

    /// Waits until every service of `name` runs and no container is unhealthy or still starting;
    /// nil when healthy, else why not.
    func waitHealthy(_ name: String) async -> String? {
        let deadline = ContinuousClock.now + healthTimeout
        var last = "not checked"
        while true {
            do throws(ControllerError) {
                let status = try await stacks.status(name)
                let containers = try await stacks.runtime.containers(project: try stacks.project(name))
                let unhealthy = containers.filter { $0.health == "unhealthy" || $0.health == "starting" }
                if status.state == .running && unhealthy.isEmpty { return nil }
                last =
                    status.state != .running
                    ? "state \(status.state.rawValue)" : "health: " + unhealthy.map { "\($0.name) \($0.health)" }.joined(separator: ", ")
            } catch { last = error.message }
            if ContinuousClock.now >= deadline { return "after \(healthTimeout): \(last)" }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    func bindSources() async throws(ControllerError) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for name in try stacks.names() { out[name] = try await stacks.bindSources(name) }
        return out
    }

    /// The stacks whose bind mounts are `file` or a directory above it.
    static func users(of file: String, sources: [String: [String]]) -> [String] {
        sources.filter { _, paths in
            paths.contains { p in
                let dir = p.hasSuffix("/") ? p : p + "/"
                return p == file || file.hasPrefix(dir)
            }
        }.keys.sorted()
    }

    /// The group the bundle's file gets: the one its users opted in to (all must agree), or none.
    static func group(for bundle: String, users: [String], settings: ControllerSettings) throws(ControllerError) -> String? {
        let asked = users.compactMap { u in settings.secretsGroups[u].map { (u, $0) } }
        let groups = Set(asked.map(\.1))
        guard groups.count <= 1 else {
            throw ControllerError(
                .secrets,
                "secret bundle '\(bundle)' is used by stacks asking different groups (\(asked.map { "\($0.0): \($0.1)" }.joined(separator: ", "))); kept as it was"
            )
        }
        return groups.first
    }

    func saveRollout(_ rollout: Rollout) throws(ControllerError) {
        try StateFiles.write(rollout, to: rolloutFile, in: stateDir, what: "secrets rollout")
    }

    func removeRollout() throws(ControllerError) {
        guard unlink(rolloutFile) == 0 || errno == ENOENT else {
            throw ControllerError(.secrets, "cannot remove '\(rolloutFile)': \(String(cString: strerror(errno)))")
        }
    }
}
