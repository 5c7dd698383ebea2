import Crypto
import FelhomCore
import FelhomHTTP
import Foundation
import ObjectStore
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

    /// How to reach the hub. The host key is kept in `state_dir/host.json` after enrollment.
    public struct Hub: Decodable, Sendable {
        public var url: String
        /// Used once, when `state_dir` holds no host key yet.
        public var enrollmentToken: Secret?
        /// A host key given directly (instead of enrollment), with its host id.
        public var hostKey: Secret?
        public var hostID: String?
        public var fingerprint: String?
        public var caFile: String?
        /// Longest long-poll wait in seconds (default 25).
        public var longPollSeconds: Int?
        /// Longest wait between two tries while the hub is unreachable, in seconds (default 300,
        /// 1…3600). Each failed try doubles the wait (with jitter) and reconciles the last desired
        /// state the box was given.
        public var maxBackoffSeconds: Int?

        enum CodingKeys: String, CodingKey {
            case url, fingerprint
            case enrollmentToken = "enrollment_token"
            case hostKey = "host_key"
            case hostID = "host_id"
            case caFile = "ca_file"
            case longPollSeconds = "long_poll_seconds"
            case maxBackoffSeconds = "max_backoff_seconds"
        }
    }

    /// Provisioning by restore.
    public struct Provision: Decodable, Sendable {
        /// The golden template backup volid.
        public var goldenTemplate: String
        /// Storage for new root disks (default `local-lvm`).
        public var storage: String?
        /// With `local_api`: push `/etc/felhom/controller.json` into each new guest (`pct push`,
        /// default true).
        public var controllerConfig: Bool?
        enum CodingKeys: String, CodingKey {
            case storage
            case goldenTemplate = "golden_template"
            case controllerConfig = "controller_config"
        }
    }

    /// Backups (`backup.*`): the box's PBS key (its fingerprint is all the agent needs) and the
    /// bound for the controllers' app-consistent backups.
    public struct Backup: Decodable, Sendable {
        /// The PBS key file (`/etc/pve/priv/storage/<ID>.enc`); its fingerprint is computed.
        public var keyFile: String?
        /// The key's fingerprint, when the agent may not read the key file.
        public var keyFingerprint: String?
        public var appBoundSeconds: Int?
        enum CodingKeys: String, CodingKey {
            case keyFile = "key_file"
            case keyFingerprint = "key_fingerprint"
            case appBoundSeconds = "app_bound_seconds"
        }
    }

    /// The controllers' local API (`local_api.*`).
    public struct LocalAPI: Decodable, Sendable {
        /// The address guests reach the host on (the guests' bridge address; default 127.0.0.1).
        public var listen: String?
        public var port: Int?
        /// Requests a minute per guest token before 429 (default 600; 0 turns the limit off).
        public var rateLimitPerMinute: Int?
        enum CodingKeys: String, CodingKey {
            case listen, port
            case rateLimitPerMinute = "rate_limit_per_minute"
        }
    }

    /// Restore tests (`restore_test.*`), run when `backup` is configured.
    public struct RestoreTest: Decodable, Sendable {
        public var enabled: Bool?
        public var everyDays: Int?
        public var scratchStorage: String?
        public var healthTimeoutSeconds: Int?
        enum CodingKeys: String, CodingKey {
            case enabled
            case everyDays = "every_days"
            case scratchStorage = "scratch_storage"
            case healthTimeoutSeconds = "health_timeout_seconds"
        }
    }

    /// Healing silent controllers (`heal.*`), active when `local_api` is configured.
    public struct Heal: Decodable, Sendable {
        public var enabled: Bool?
        /// No local API call for this long: restart the controller (default 900).
        public var silentSeconds: Int?
        /// Wait after each step before the next (default 180).
        public var recheckSeconds: Int?
        enum CodingKeys: String, CodingKey {
            case enabled
            case silentSeconds = "silent_seconds"
            case recheckSeconds = "recheck_seconds"
        }
    }

    /// Zero-knowledge escrow of the PBS key (`escrow.*`), with `backup.key_file`.
    public struct Escrow: Decodable, Sendable {
        public var enabled: Bool?
        /// The PBS storage the key belongs to (default `pbs-felhom`).
        public var storage: String?
        /// Days between escrow drills (default 7).
        public var drillDays: Int?
        /// The operator-managed tier: wrap the key to this operator escrow public key
        /// (`felhom-escrow-x25519 BASE64`) instead of a customer recovery code.
        public var operatorPublicKey: String?
        enum CodingKeys: String, CodingKey {
            case enabled, storage
            case drillDays = "drill_days"
            case operatorPublicKey = "operator_public_key"
        }
    }

    /// The public routes' proxies (`routes.*`).
    public struct Routes: Decodable, Sendable {
        /// Default true: the agent runs the published routes.
        public var enabled: Bool?
        /// Where the listeners bind (default `::`, IPv4 and IPv6).
        public var listen: String?
        /// Seconds between backend probes (default 30).
        public var probeSeconds: Int?
        /// The public ports routes may open, e.g. `"80,443,8000-8099"` (default: any). The box's
        /// own limit: a route outside it is reported `listen_port_not_allowed`, not opened.
        public var allowedPorts: String?
        enum CodingKeys: String, CodingKey {
            case enabled, listen
            case probeSeconds = "probe_seconds"
            case allowedPorts = "allowed_ports"
        }
    }

    /// Volume snapshots to object storage (`snapshots.*`; docs/object-storage.md).
    public struct Snapshots: Decodable, Sendable {
        /// Default true once `s3.bucket` is set.
        public var enabled: Bool?
        /// Object keys start with this (default `boxes/<host id>/`).
        public var prefix: String?
        /// Where LVM puts a logical volume's device: `<device_dir>/<VG>/<LV>` (default `/dev`).
        public var deviceDir: String?
        /// Where the `volume.restore` op keeps the verified volume before writing it over the
        /// old one (default `state_dir/volume-restore`).
        public var restoreDir: String?
        public var s3: S3?
        public struct S3: Decodable, Sendable {
            public var endpoint: String?
            public var region: String?
            public var bucket: String?
            public var accessKeyID: String?
            /// Never logged; better given as FELHOM_AGENT_SNAPSHOTS_S3_SECRET_ACCESS_KEY.
            public var secretAccessKey: String?
            /// `path` (default) or `virtual`.
            public var addressing: String?
            enum CodingKeys: String, CodingKey {
                case endpoint, region, bucket, addressing
                case accessKeyID = "access_key_id"
                case secretAccessKey = "secret_access_key"
            }
        }
        enum CodingKeys: String, CodingKey {
            case enabled, prefix, s3
            case deviceDir = "device_dir"
            case restoreDir = "restore_dir"
        }
    }

    /// A/B self-update (`update.*`; docs/updates.md). Absent: the agent never updates itself.
    public struct Update: Decodable, Sendable {
        /// The A/B install root (default `/opt/felhom/agent`).
        public var root: String?
        /// Release keys in allowed_signers syntax (required: without it no release is trusted).
        public var releaseSignersFile: String?
        /// Seconds the new agent has to report healthy (default 300, 30 … 3600).
        public var windowSeconds: Int?
        /// Seconds it must stay up before the gate commits it (default 60).
        public var settleSeconds: Int?
        enum CodingKeys: String, CodingKey {
            case root
            case releaseSignersFile = "release_signers_file"
            case windowSeconds = "window_seconds"
            case settleSeconds = "settle_seconds"
        }
    }

    public var pve: PVE
    public var update: Update?
    public var snapshots: Snapshots?
    /// Whether the agent keeps the storage manifest (`lsblk` and `mount` through the fenced backend; default true).
    public var storageManifest: Bool?
    /// Whether the agent watches the guests' OOM kills (`memory.events` through the fenced backend; default true).
    public var memoryEvents: Bool?
    public var heal: Heal?
    public var escrow: Escrow?
    public var routes: Routes?
    public var selftest: Selftest?
    public var hardware: Hardware?
    public var tunnel: Tunnel?

    /// `tunnel.*`: the supervised Cloudflare tunnel (``TunnelSupervisor``).
    public struct Tunnel: Decodable, Sendable {
        /// Default false: a box without a tunnel reports `cloudflared: unknown`.
        public var enabled: Bool?
        /// cloudflared's `--metrics` address (default 127.0.0.1:20241).
        public var metrics: String?
        /// The systemd unit (default felhom-cloudflared.service).
        public var unit: String?
    }

    /// `hardware.*`: SMART and temperatures in the host report (``HardwareMonitor``).
    public struct Hardware: Decodable, Sendable {
        /// Default true.
        public var enabled: Bool?
        /// Seconds between readings (default 600, at least 60).
        public var intervalSeconds: Int?
        enum CodingKeys: String, CodingKey {
            case enabled
            case intervalSeconds = "interval_seconds"
        }
    }
    public var backup: Backup?
    public var restoreTest: RestoreTest?
    public var localAPI: LocalAPI?
    public var hub: Hub?
    public var provision: Provision?
    /// Journal, nonce log and host identity live here (default `/var/lib/felhom-agent`).
    public var stateDir: String?
    /// Operator keys allowed to sign ops, in allowed_signers syntax (`role=recovery` in the comment).
    public var signersFile: String?

    enum CodingKeys: String, CodingKey {
        case pve, selftest, hub, provision, backup, heal, escrow, routes, snapshots, update, hardware, tunnel
        case storageManifest = "storage_manifest"
        case memoryEvents = "memory_events"
        case localAPI = "local_api"
        case restoreTest = "restore_test"
        case stateDir = "state_dir"
        case signersFile = "signers_file"
    }

    /// Every overridable setting; the variable is `FELHOM_AGENT_` + the path in upper case.
    public static let loader = ConfigLoader(
        environmentPrefix: "FELHOM_AGENT",
        keys: [
            .init("pve.host"), .init("pve.port", .integer), .init("pve.node"), .init("pve.token_id"),
            .init("pve.token_secret"), .init("pve.fingerprint"), .init("pve.ca_file"),
            .init("pve.insecure_skip_verify", .boolean), .init("pve.plain_http", .boolean),
            .init("pve.timeout_seconds", .integer), .init("selftest.vmid", .integer),
            .init("hub.url"), .init("hub.enrollment_token"), .init("hub.host_key"), .init("hub.host_id"), .init("hub.fingerprint"),
            .init("hub.ca_file"), .init("hub.long_poll_seconds", .integer), .init("hub.max_backoff_seconds", .integer),
            .init("provision.golden_template"),
            .init("provision.controller_config", .boolean),
            .init("provision.storage"), .init("state_dir"), .init("signers_file"),
            .init("backup.key_file"), .init("backup.key_fingerprint"), .init("backup.app_bound_seconds", .integer),
            .init("local_api.listen"), .init("local_api.port", .integer), .init("local_api.rate_limit_per_minute", .integer),
            .init("restore_test.enabled", .boolean), .init("restore_test.every_days", .integer), .init("restore_test.scratch_storage"),
            .init("restore_test.health_timeout_seconds", .integer),
            .init("heal.enabled", .boolean), .init("heal.silent_seconds", .integer), .init("heal.recheck_seconds", .integer),
            .init("storage_manifest", .boolean), .init("memory_events", .boolean), .init("hardware.enabled", .boolean),
            .init("hardware.interval_seconds", .integer), .init("tunnel.enabled", .boolean), .init("tunnel.metrics"), .init("tunnel.unit"),
            .init("escrow.enabled", .boolean), .init("escrow.storage"),
            .init("escrow.drill_days", .integer),
            .init("escrow.operator_public_key"), .init("routes.enabled", .boolean), .init("routes.listen"),
            .init("routes.probe_seconds", .integer), .init("routes.allowed_ports"),
            .init("snapshots.enabled", .boolean), .init("snapshots.prefix"), .init("snapshots.s3.endpoint"), .init("snapshots.s3.region"),
            .init("snapshots.s3.bucket"), .init("snapshots.s3.access_key_id"), .init("snapshots.s3.secret_access_key"),
            .init("snapshots.s3.addressing"), .init("snapshots.device_dir"), .init("snapshots.restore_dir"),
            .init("update.root"), .init("update.release_signers_file"), .init("update.window_seconds", .integer),
            .init("update.settle_seconds", .integer),
        ])

    /// The object-storage target of volume snapshots; nil when not configured (or switched off).
    /// Incomplete settings are a config error naming the missing key (never printing the secret).
    public func snapshotS3(hostID: String) throws -> (settings: S3Client.Settings, prefix: String)? {
        guard let s = snapshots, s.enabled ?? (s.s3?.bucket != nil), let s3 = s.s3 else { return nil }
        for (key, value) in [
            ("endpoint", s3.endpoint), ("region", s3.region), ("bucket", s3.bucket), ("access_key_id", s3.accessKeyID),
            ("secret_access_key", s3.secretAccessKey),
        ] where (value ?? "").isEmpty {
            throw ConfigError(code: .invalid, message: "snapshots.s3.\(key) is required for volume snapshots")
        }
        guard let addressing = S3Client.Addressing(rawValue: s3.addressing ?? "path") else {
            throw ConfigError(code: .invalid, message: "snapshots.s3.addressing must be path or virtual")
        }
        guard backup?.keyFile?.isEmpty == false else {
            throw ConfigError(code: .invalid, message: "volume snapshots need backup.key_file: their master key is derived from the PBS key")
        }
        let settings = S3Client.Settings(
            endpoint: s3.endpoint!, region: s3.region!, bucket: s3.bucket!,
            credentials: .init(accessKeyID: s3.accessKeyID!, secretAccessKey: s3.secretAccessKey!), addressing: addressing)
        return (settings, s.prefix ?? "boxes/\(hostID)/")
    }

    /// The routes' port allow-list (`routes.allowed_ports`); nil when unset. A malformed list is a
    /// config error naming the key.
    public func routesAllowedPorts() throws -> PortRanges? {
        guard let text = routes?.allowedPorts, !text.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
        do { return try PortRanges(parsing: text) } catch {
            throw ConfigError(code: .invalid, message: "routes.allowed_ports: \(error.message)")
        }
    }

    /// The operator escrow public key of the operator-managed tier (`escrow.operator_public_key`),
    /// nil on the customer tier; a malformed one is a config error naming the key.
    public func escrowOperatorKey() throws -> Curve25519.KeyAgreement.PublicKey? {
        guard let line = escrow?.operatorPublicKey, !line.isEmpty else { return nil }
        do { return try OperatorEscrowKey.parsePublic(line) } catch {
            throw ConfigError(code: .invalid, message: "escrow.operator_public_key: \(error.message)")
        }
    }

    /// The backup settings this config describes; nil without a `backup` section. The key's
    /// fingerprint comes from `backup.key_fingerprint` or the key file; a bad one is an error.
    public func backupSettings() throws -> BackupSettings? {
        guard let backup else { return nil }
        let fingerprint: String
        if let given = backup.keyFingerprint, !given.isEmpty {
            let normalized = PBSKey.normalized(given)
            guard normalized.count == 95 else {
                throw ConfigError(code: .invalid, message: "backup.key_fingerprint must be 32 bytes of hex (xx:xx:…), got '\(given)'")
            }
            fingerprint = normalized
        } else if let file = backup.keyFile, !file.isEmpty {
            do { fingerprint = try PBSKey(file: file).fingerprint } catch {
                throw ConfigError(code: .invalid, message: "backup.key_file: \(error.message)")
            }
        } else {
            throw ConfigError(code: .invalid, message: "backup needs key_file (the PBS key) or key_fingerprint: backups never run unencrypted")
        }
        return BackupSettings(boxKey: fingerprint, appBound: TimeInterval(max(0, backup.appBoundSeconds ?? 900)))
    }

    /// The hub TLS trust this config describes.
    public func hubTrust() throws -> TLSTrust {
        if let fp = hub?.fingerprint, !fp.isEmpty { return .pinnedLeafSHA256(try CertificateFingerprint(parsing: fp)) }
        if let ca = hub?.caFile, !ca.isEmpty { return .caFile(ca) }
        return .systemDefault
    }

    /// Loads `file` and the environment.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> AgentConfig
    {
        try loader.load(AgentConfig.self, file: file, environment: environment)
    }

    /// The Proxmox connection this config describes; throws naming the bad setting.
    public func pveConnection() throws -> PVEConnection {
        if pve.plainHTTP == true, !HTTPEndpoint.isLoopback(pve.host) {
            throw ConfigError(
                code: .invalid,
                message:
                    "pve.plain_http is allowed only on loopback (got pve.host '\(pve.host)'): the API token would cross the network in clear text")
        }
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
