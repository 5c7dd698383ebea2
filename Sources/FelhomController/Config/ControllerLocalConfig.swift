import FelhomCore
import FelhomHTTP
import FelhomHubClient
import Foundation

/// The controller's own configuration: `/etc/felhom/controller.json` (written into the guest by
/// the agent) overlaid by `FELHOM_CONTROLLER_<PATH>` variables. Every key naming a path, an
/// endpoint, a credential or a fingerprint, and `quiesce.enabled`, comes only from here — never
/// from the hub's generated config, so a compromised hub cannot redirect the controller, harvest
/// its tokens or switch quiescing off.
public struct ControllerLocalConfig: Decodable, Sendable {
    public struct StacksConfig: Decodable, Sendable {
        public var dir: String?
        public var `protected`: [String]?
    }
    public struct SecretsConfig: Decodable, Sendable {
        public var dir: String?
        public var pollSeconds: Int?
        public var healthTimeoutSeconds: Int?
        enum CodingKeys: String, CodingKey {
            case dir
            case pollSeconds = "poll_seconds"
            case healthTimeoutSeconds = "health_timeout_seconds"
        }
    }
    public struct AgentEndpoint: Decodable, Sendable {
        public var url: String?
        public var fingerprint: String?
        public var token: Secret?
        public var tokenFile: String?
        enum CodingKeys: String, CodingKey {
            case url, fingerprint, token
            case tokenFile = "token_file"
        }
    }
    public struct HubEndpoint: Decodable, Sendable {
        public var url: String?
        public var key: Secret?
        public var fingerprint: String?
        /// This guest's id on the hub (to read its generated config).
        public var guestID: String?
        enum CodingKeys: String, CodingKey {
            case url, key, fingerprint
            case guestID = "guest_id"
        }
    }
    public struct Quiesce: Decodable, Sendable {
        public init() {}
        public var enabled: Bool?
        public var pollSeconds: Int?
        public var maxSeconds: Int?
        enum CodingKeys: String, CodingKey {
            case enabled
            case pollSeconds = "poll_seconds"
            case maxSeconds = "max_seconds"
        }
    }
    public struct Watchdog: Decodable, Sendable {
        public init(intervalSeconds: Int? = nil) { self.intervalSeconds = intervalSeconds }
        public var intervalSeconds: Int?
        enum CodingKeys: String, CodingKey { case intervalSeconds = "interval_seconds" }
    }

    public var stacks: StacksConfig?
    public var stateDir: String?
    public var secrets: SecretsConfig?
    public var agent: AgentEndpoint?
    public var hub: HubEndpoint?
    public var quiesce: Quiesce?
    public var watchdog: Watchdog?

    enum CodingKeys: String, CodingKey {
        case stacks, secrets, agent, hub, quiesce, watchdog
        case stateDir = "state_dir"
    }

    /// The default config file.
    public static let defaultFile = "/etc/felhom/controller.json"

    /// Every key; the variable is `FELHOM_CONTROLLER_` + the path in upper case, dots as underscores.
    public static let loader = ConfigLoader(
        environmentPrefix: "FELHOM_CONTROLLER",
        keys: [
            .init("stacks.dir"), .init("stacks.protected", .stringList), .init("state_dir"), .init("secrets.dir"),
            .init("secrets.poll_seconds", .integer), .init("secrets.health_timeout_seconds", .integer),
            .init("agent.url"), .init("agent.fingerprint"), .init("agent.token"), .init("agent.token_file"),
            .init("hub.url"), .init("hub.key"), .init("hub.fingerprint"), .init("hub.guest_id"),
            .init("quiesce.enabled", .boolean), .init("quiesce.poll_seconds", .integer), .init("quiesce.max_seconds", .integer),
            .init("watchdog.interval_seconds", .integer),
        ])

    /// Loads `file` — or the default file when it exists — and the environment.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ControllerError)
        -> ControllerLocalConfig
    {
        let path = file ?? (FileManager.default.fileExists(atPath: defaultFile) ? defaultFile : nil)
        do { return try loader.load(ControllerLocalConfig.self, file: path, environment: environment) } catch {
            throw ControllerError(.config, "\(error)")
        }
    }

    /// `stacks.dir`, default `/opt/felhom/stacks`.
    public var stacksDir: String { stacks?.dir ?? "/opt/felhom/stacks" }
    /// `stacks.protected`, default traefik, cloudflared, felhom-controller.
    public var protectedStacks: [String] { stacks?.protected ?? Stacks.defaultProtected }
    /// `state_dir`, default `/var/lib/felhom-controller`.
    public var stateDirectory: String { stateDir ?? "/var/lib/felhom-controller" }
    /// `secrets.dir`, default `/run/secrets`.
    public var secretsDir: String { secrets?.dir ?? "/run/secrets" }
    /// `secrets.poll_seconds`: how often the hub's bundles are read (default 60).
    public var secretsPollSeconds: Int { max(5, secrets?.pollSeconds ?? 60) }
    /// `secrets.health_timeout_seconds`: how long a restarted stack may take to be healthy during
    /// a secrets rollout (default 120).
    public var secretsHealthTimeoutSeconds: Int { max(1, secrets?.healthTimeoutSeconds ?? 120) }
    /// `quiesce.enabled`: default true when `agent.url` is set.
    public var quiesceEnabled: Bool { quiesce?.enabled ?? (agent?.url != nil) }
    public var quiescePollSeconds: Int { max(1, quiesce?.pollSeconds ?? 60) }
    public var quiesceMaxSeconds: Int { max(1, quiesce?.maxSeconds ?? 1800) }
    public var watchdogIntervalSeconds: Int { max(1, watchdog?.intervalSeconds ?? 30) }

    /// The agent local API client this config describes (`agent.url`, `agent.fingerprint`, and the
    /// guest token from `agent.token` or the file `agent.token_file`).
    public func agentClient() throws(ControllerError) -> AgentLocalAPIClient {
        guard let url = agent?.url, !url.isEmpty else { throw ControllerError(.config, "agent.url is not set (needed for quiescing)") }
        var token = agent?.token
        if token == nil, let file = agent?.tokenFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ControllerError(.config, "cannot read agent.token_file '\(file)'")
            }
            token = Secret(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard let token, !token.reveal().isEmpty else {
            throw ControllerError(.config, "agent.token or agent.token_file is needed for the agent's local API")
        }
        return try AgentLocalAPIClient(url: url, fingerprint: agent?.fingerprint, token: token)
    }

    /// Takes the app-level settings from the hub's generated config (`GET /api/v1/guests/{id}/config`)
    /// where the local file and environment leave them unset; returns one warning per key it
    /// ignored. Paths, endpoints, credentials, fingerprints, `quiesce.enabled` and
    /// `stacks.protected` are never taken from the hub (``ControllerHubSettings``).
    public mutating func adopt(hubConfig: JSONValue) -> [String] {
        let (values, findings) = ControllerHubSettings.read(hubConfig)
        if let v = values["quiesce.poll_seconds"], quiesce?.pollSeconds == nil {
            quiesce = quiesce ?? Quiesce()
            quiesce?.pollSeconds = Int(v)
        }
        if let v = values["quiesce.max_seconds"], quiesce?.maxSeconds == nil {
            quiesce = quiesce ?? Quiesce()
            quiesce?.maxSeconds = Int(v)
        }
        if let v = values["watchdog.interval_seconds"], watchdog?.intervalSeconds == nil {
            watchdog = Watchdog(intervalSeconds: Int(v))
        }
        return findings.map { "ignored from the hub's config: \($0)" }
    }

    /// The hub client this config describes (`hub.url`, `hub.key`, `hub.fingerprint`); nil without
    /// `hub.url` (the controller then runs without reporting).
    public func hubClient() throws(ControllerError) -> HubClient? {
        guard let url = hub?.url, !url.isEmpty else { return nil }
        guard let key = hub?.key, !key.reveal().isEmpty else { throw ControllerError(.config, "hub.url is set but hub.key (the guest's key) is not") }
        var trust = TLSTrust.systemDefault
        if let fp = hub?.fingerprint, !fp.isEmpty {
            do { trust = .pinnedLeafSHA256(try CertificateFingerprint(parsing: fp)) } catch {
                throw ControllerError(.config, "hub.fingerprint: \(error)")
            }
        }
        do { return try HubClient(url: url, key: key, trust: trust, timeout: .seconds(30)) } catch {
            throw ControllerError(.config, "hub.url: \(error)")
        }
    }
}
