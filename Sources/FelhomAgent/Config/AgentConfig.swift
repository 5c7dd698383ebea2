import FelhomCore
import Foundation
import Proxmox

/// The agent's configuration: a JSON file plus `FELHOM_AGENT_*` environment overrides.
///
/// ```json
/// {"pve": {"host": "127.0.0.1", "port": 8006, "node": "pve1",
///          "token_id": "felhom@pve!agent", "token_secret": "…",
///          "fingerprint": "AB:CD:…"},
///  "selftest": {"vmid": 199}}
/// ```
/// Trust is the pinned `fingerprint`, else `ca_file`, else the system store; `insecure_skip_verify`
/// must be set explicitly. The token secret prints as `<redacted>`.
public struct AgentConfig: Decodable, Sendable {
    public struct PVE: Decodable, Sendable {
        public var host: String
        public var port: Int?
        public var node: String
        public var tokenID: String
        public var tokenSecret: Secret
        public var fingerprint: String?
        public var caFile: String?
        public var insecureSkipVerify: Bool?
        public var plainHTTP: Bool?
        public var timeoutSeconds: Int?

        enum CodingKeys: String, CodingKey {
            case host, port, node, fingerprint
            case tokenID = "token_id"
            case tokenSecret = "token_secret"
            case caFile = "ca_file"
            case insecureSkipVerify = "insecure_skip_verify"
            case plainHTTP = "plain_http"
            case timeoutSeconds = "timeout_seconds"
        }
    }

    public struct Selftest: Decodable, Sendable {
        /// The scratch guest `selftest task` may snapshot, roll back and edit.
        public var vmid: Int?
    }

    public var pve: PVE
    public var selftest: Selftest?

    /// Every overridable setting; the variable is `FELHOM_AGENT_` + the path in upper case.
    public static let loader = ConfigLoader(
        environmentPrefix: "FELHOM_AGENT",
        keys: [
            .init("pve.host"), .init("pve.port", .integer), .init("pve.node"), .init("pve.token_id"),
            .init("pve.token_secret"), .init("pve.fingerprint"), .init("pve.ca_file"),
            .init("pve.insecure_skip_verify", .boolean), .init("pve.plain_http", .boolean),
            .init("pve.timeout_seconds", .integer), .init("selftest.vmid", .integer),
        ])

    /// Loads `file` and the environment.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> AgentConfig
    {
        try loader.load(AgentConfig.self, file: file, environment: environment)
    }

    /// The Proxmox connection this config describes; throws naming the bad setting.
    public func pveConnection() throws -> PVEConnection {
        let trust: TLSTrust
        if let fp = pve.fingerprint, !fp.isEmpty {
            trust = .pinnedLeafSHA256(try CertificateFingerprint(parsing: fp))
        } else if let ca = pve.caFile, !ca.isEmpty {
            trust = .caFile(ca)
        } else if pve.insecureSkipVerify == true {
            trust = .insecureSkipVerification
        } else {
            trust = .systemDefault
        }
        return try PVEConnection(
            host: pve.host, port: pve.port ?? 8006, tokenID: pve.tokenID, tokenSecret: pve.tokenSecret, trust: trust,
            useTLS: pve.plainHTTP != true, requestTimeout: .seconds(pve.timeoutSeconds ?? 60))
    }
}
