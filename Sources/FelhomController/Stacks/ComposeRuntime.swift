import FelhomCore
import Foundation

/// One container of a compose project, as `docker compose ps --all --format json` reports it.
public struct ComposeContainer: Sendable, Equatable, Codable {
    /// The compose service it belongs to.
    public var service: String
    /// The container name (`project-service-1`).
    public var name: String
    /// Docker's state: `running`, `exited`, `created`, `restarting`, `paused`, `dead`, `removing`.
    public var state: String
    /// Meaningful only when `state` is `exited`.
    public var exitCode: Int
    /// `""`, `starting`, `healthy` or `unhealthy`.
    public var health: String

    public init(service: String, name: String, state: String, exitCode: Int = 0, health: String = "") {
        self.service = service
        self.name = name
        self.state = state
        self.exitCode = exitCode
        self.health = health
    }

    enum CodingKeys: String, CodingKey {
        case service = "Service"
        case name = "Name"
        case state = "State"
        case exitCode = "ExitCode"
        case health = "Health"
    }
}

/// The compose engine the controller drives. The real one (``DockerCompose``) runs the
/// `docker compose` CLI and reads its JSON output; tests of pure logic may use a fake.
///
/// Every call names the project explicitly (`-p`); calls that need the compose file get it.
public protocol ComposeRuntime: Sendable {
    /// Every container of the project, running or not (`ps --all`); empty when it is not deployed.
    func containers(project: String) async throws(ControllerError) -> [ComposeContainer]
    /// Checks the compose file without touching containers (`config --quiet`).
    func validate(project: String, file: String) async throws(ControllerError)
    /// Creates and starts the project's containers (`up -d`).
    func up(project: String, file: String) async throws(ControllerError)
    /// Starts existing containers (`start`).
    func start(project: String, file: String) async throws(ControllerError)
    /// Stops the containers, keeping them (`stop`).
    func stop(project: String, file: String) async throws(ControllerError)
    /// Restarts the containers (`restart`).
    func restart(project: String, file: String) async throws(ControllerError)
    /// Removes the containers and networks; named volumes (data) are kept (`down`, never `-v`).
    func down(project: String, file: String) async throws(ControllerError)
    /// The host paths the project's services bind-mount (from the resolved compose config).
    func bindSources(project: String, file: String) async throws(ControllerError) -> [String]
    /// The resolved compose config (`config --format json`), for checks before a deploy; nil when
    /// the runtime cannot show it (the simulated one).
    func resolvedConfig(project: String, file: String) async throws(ControllerError) -> String?
    /// Every project with containers and its status (`ls --all --format json`: `running(2)`,
    /// `exited(1), running(1)`…) in one call; nil when the runtime cannot list them at once.
    func projectStatuses() async throws(ControllerError) -> [String: String]?
}

extension ComposeRuntime {
    public func projectStatuses() async throws(ControllerError) -> [String: String]? { nil }
    public func resolvedConfig(project: String, file: String) async throws(ControllerError) -> String? { nil }
}

/// Parsers for Compose's machine-readable output (never its human tables).
public enum ComposeJSON {
    /// `docker compose config --format json`: the `source` of every `type: bind` volume.
    public static func bindSources(_ output: String) throws(ControllerError) -> [String] {
        let doc: JSONValue
        do { doc = try JSONValue.parse(Data(output.utf8)) } catch {
            throw ControllerError(.runtime, "cannot read `docker compose config --format json` output: \(error)")
        }
        guard case .object(let services)? = doc["services"] else { return [] }
        var out: [String] = []
        for (_, service) in services.sorted(by: { $0.key < $1.key }) {
            for volume in service["volumes"]?.arrayValue ?? [] where volume["type"]?.stringValue == "bind" {
                if let source = volume["source"]?.stringValue { out.append(source) }
            }
        }
        return out
    }

    /// Words that make a named volume look like media (photos, videos, music, downloads…).
    static let mediaWords = ["media", "photo", "picture", "video", "movie", "music", "download", "library", "upload", "gallery"]

    /// The bulk-volume rule at deploy (SPEC §4, seed review B2): a Docker **named volume** lives in
    /// the guest's root disk, which every backup captures, so bulk data must never be in one. From
    /// `docker compose config --format json`: a named volume labelled `felhom.bulk: "true"`, or one
    /// whose name or mount target looks like media (unless labelled `felhom.bulk: "false"`), used by
    /// a service. Each finding names the service, the volume and the rule.
    public static func bulkViolations(_ output: String) throws(ControllerError) -> [String] {
        let doc: JSONValue
        do { doc = try JSONValue.parse(Data(output.utf8)) } catch {
            throw ControllerError(.runtime, "cannot read `docker compose config --format json` output: \(error)")
        }
        guard case .object(let services)? = doc["services"] else { return [] }
        var out: [String] = []
        for (name, service) in services.sorted(by: { $0.key < $1.key }) {
            for volume in service["volumes"]?.arrayValue ?? [] where volume["type"]?.stringValue == "volume" {
                guard let source = volume["source"]?.stringValue else { continue }
                let target = volume["target"]?.stringValue ?? "?"
                let label = doc["volumes"]?[source]?["labels"]?["felhom.bulk"]?.stringValue?.lowercased()
                let looksLikeMedia = mediaWords.contains { source.lowercased().contains($0) || target.lowercased().contains($0) }
                let why: String
                if ["true", "1", "yes"].contains(label ?? "") {
                    why = "is labelled felhom.bulk"
                } else if looksLikeMedia && !["false", "0", "no"].contains(label ?? "") {
                    why = "looks like media"
                } else {
                    continue
                }
                out.append(
                    "service \(name): named volume '\(source)' (\(target)) \(why), but a named volume lives in the guest's root disk and rides in every backup: bind-mount a folder of a bulk storage path instead (felhom-controller storage list), or label it felhom.bulk: \"false\" if it is small"
                )
            }
        }
        return out
    }

    /// `docker compose ls --all --format json`: one JSON array of `{Name, Status, ConfigFiles}`.
    public static func projectStatuses(_ output: String) throws(ControllerError) -> [String: String] {
        let doc: JSONValue
        do { doc = try JSONValue.parse(Data(output.utf8)) } catch {
            throw ControllerError(.runtime, "cannot read `docker compose ls --format json` output: \(error)")
        }
        var out: [String: String] = [:]
        for entry in doc.arrayValue ?? [] {
            if let name = entry["Name"]?.stringValue { out[name] = entry["Status"]?.stringValue ?? "" }
        }
        return out
    }

    /// `docker compose ps --format json`: one JSON object per line since Compose 2.21, a JSON array
    /// before; empty output (no containers) is an empty list. Both forms are accepted.
    public static func containers(_ output: [UInt8]) throws(ControllerError) -> [ComposeContainer] {
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return [] }
        let decoder = JSONDecoder()
        do {
            if text.hasPrefix("[") { return try decoder.decode([ComposeContainer].self, from: Data(text.utf8)) }
            return try text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map {
                try decoder.decode(ComposeContainer.self, from: Data($0.utf8))
            }
        } catch {
            throw ControllerError(.runtime, "cannot read `docker compose ps --format json` output: \(error)")
        }
    }
}
