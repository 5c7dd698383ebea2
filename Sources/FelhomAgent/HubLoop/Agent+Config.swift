import Crypto
import FelhomCore
import FelhomHTTP
import FelhomHubClient
import FelhomSigning
import Foundation
import Logging
import ObjectStore
import Proxmox
import Synchronization

extension Agent {
    /// The host's identity on the hub, kept in `state_dir/host.json` (mode 0600) after enrollment.
    struct Identity: Codable {
        var hostID: String
        var key: String
        enum CodingKeys: String, CodingKey {
            case key
            case hostID = "host_id"
        }
    }

    /// Builds the agent a config file describes: enrolls on first start when given a token, loads
    /// the pinned signers, opens the journal and nonce log. Errors name the setting at fault.
    /// State directories this process holds (one lock each, kept until exit).
    static let heldLocks = Mutex<[String: StateDirLock]>([:])

    static func lockStateDir(_ stateDir: String) throws(AgentLockError) {
        let path = (stateDir as NSString).standardizingPath
        if heldLocks.withLock({ $0[path] != nil }) { return }
        let lock = try StateDirLock(stateDir: stateDir)
        heldLocks.withLock { $0[path] = lock }
    }

    /// The identity enrollment left in `state_dir/host.json`, if any (never enrolls).
    static func storedIdentity(stateDir: String) -> Identity? {
        FileManager.default.contents(atPath: stateDir + "/host.json").flatMap { try? JSONDecoder().decode(Identity.self, from: $0) }
    }

    /// The host's identity: `state_dir/host.json`, or `hub.host_key` + `hub.host_id`, or — on the
    /// first start — traded for `hub.enrollment_token` and written durably before it is used.
    static func enrolledIdentity(config cfg: AgentConfig, logger: Logger) async throws -> Identity {
        guard let hubCfg = cfg.hub else { throw ConfigError(code: .invalid, message: "the hub section (hub.url) is missing") }
        let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if let id = storedIdentity(stateDir: stateDir) {
            return id
        } else if let key = hubCfg.hostKey, let hostID = hubCfg.hostID {
            return Identity(hostID: hostID, key: key.reveal())
        } else if let token = hubCfg.enrollmentToken {
            return try await enroll(url: hubCfg.url, token: token, trust: try cfg.hubTrust(), stateDir: stateDir, logger: logger)
        }
        throw ConfigError(code: .invalid, message: "give hub.enrollment_token (first start) or hub.host_key and hub.host_id")
    }

    /// Trades a one-time enrollment token for the host's identity, written to `state_dir/host.json`
    /// (0600, durably) before it is used; a recovery token also leaves `recovery-pending`; the
    /// host's tunnel connector token, when the hub hands one, goes to `state_dir/tunnel.env` (0600).
    static func enroll(url: String, token: Secret, trust: TLSTrust, stateDir: String, logger: Logger) async throws -> Identity {
        let idPath = stateDir + "/host.json"
        do {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            logger.info("enrolling with the hub at \(url)")
            let enrolled = try await HubClient.enrollment(url: url, token: token, trust: trust)
            let hostID = enrolled.hostID
            let identity = Identity(hostID: hostID, key: enrolled.apiKey)
            let data = try JSONEncoder().encode(identity)
            if enrolled.recovery == true {
                // A replacement for a lost box: no guest is provisioned (empty) until `recover` ran.
                do {
                    try DurableFile.write(Array("recovery enrollment \(Date())\n".utf8), to: stateDir + "/" + Agent.recoveryPendingFile, mode: 0o600)
                } catch {
                    throw ConfigError(code: .unreadable, message: "cannot write '\(stateDir)/\(Agent.recoveryPendingFile)': \(error.message)")
                }
                logger.warning("enrolled with a recovery token: run `felhom-agent recover` before anything is provisioned")
            }
            // Durable before it is used: the enrollment token is one-time, losing host.json loses the box.
            do { try DurableFile.write([UInt8](data), to: idPath, mode: 0o600) } catch {
                throw ConfigError(code: .unreadable, message: "cannot write '\(idPath)': \(error.message)")
            }
            logger.info("enrolled as host \(hostID)")
            if let token = enrolled.tunnelToken {
                // Not fatal: the running agent fetches it again (TunnelSupervisor.syncToken).
                do { try TunnelTokenFile.store(token, stateDir: stateDir) } catch { logger.warning("tunnel token not stored: \(error.message)") }
            }
            return identity
        }
    }

    /// Disaster recovery on this box (`felhom-agent recover`): enrolls first when given a token
    /// (the operator's enrollment token for the lost host), then restores from its bundle.
    public static func disasterRecovery(config cfg: AgentConfig, logger: Logger, commandRunner: (any CommandRunner)? = nil) async throws
        -> DisasterRecovery
    {
        guard let hubCfg = cfg.hub else { throw ConfigError(code: .invalid, message: "the hub section (hub.url) is missing") }
        guard let keyFile = cfg.backup?.keyFile, !keyFile.isEmpty else {
            throw ConfigError(
                code: .invalid, message: "backup.key_file is missing (where the recovered PBS key goes: /etc/pve/priv/storage/<storage>.enc)")
        }
        let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
        let identity = try await enrolledIdentity(config: cfg, logger: logger)
        do { try Self.lockStateDir(stateDir) } catch { throw ConfigError(code: .invalid, message: error.message) }
        let hub = try HubClient(url: hubCfg.url, key: Secret(identity.key), trust: try cfg.hubTrust())
        let log: @Sendable (String) -> Void = { [logger] in logger.info("\($0)") }
        return DisasterRecovery(
            pve: PVEClient(connection: try cfg.pveConnection()), node: cfg.pve.node, journal: try Journal(path: stateDir + "/journal.jsonl"),
            backend: PrivilegedBackend(runner: commandRunner ?? SubprocessCommandRunner()), hub: hub, hostID: identity.hostID, keyFile: keyFile,
            storage: cfg.escrow?.storage ?? "pbs-felhom", targetStorage: cfg.provision?.storage ?? "local-lvm", stateDir: stateDir, log: log)
    }

    /// The escrow of the box, for `felhom-agent escrow init|drill` (no agent running needed): its
    /// hub identity (enrolling first with `hub.enrollment_token` on a new box, as the box set-up
    /// does), the PBS key file from `backup.key_file`, the storage from `escrow.storage`.
    public static func escrowKeeper(config cfg: AgentConfig, logger: Logger, commandRunner: (any CommandRunner)? = nil) async throws
        -> EscrowKeeper
    {
        guard let hubCfg = cfg.hub else { throw ConfigError(code: .invalid, message: "the hub section (hub.url) is missing") }
        guard let keyFile = cfg.backup?.keyFile, !keyFile.isEmpty else {
            throw ConfigError(code: .invalid, message: "backup.key_file is missing (where the PBS key lives: /etc/pve/priv/storage/<storage>.enc)")
        }
        let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
        let identity = try await enrolledIdentity(config: cfg, logger: logger)
        let hub = try HubClient(url: hubCfg.url, key: Secret(identity.key), trust: try cfg.hubTrust())
        return EscrowKeeper(
            stateDir: stateDir, keyFile: keyFile, storage: cfg.escrow?.storage ?? "pbs-felhom", pve: PVEClient(connection: try cfg.pveConnection()),
            backend: PrivilegedBackend(runner: commandRunner ?? SubprocessCommandRunner()), hub: hub, hostID: identity.hostID,
            operatorKey: try cfg.escrowOperatorKey())
    }

    /// `commandRunner` runs the fenced root commands (default: the real `pct`; the demo passes the
    /// simulator's).
    public static func make(config cfg: AgentConfig, logger: Logger, commandRunner: (any CommandRunner)? = nil) async throws -> Agent {
        guard let hubCfg = cfg.hub else { throw ConfigError(code: .invalid, message: "the hub section (hub.url) is missing") }
        guard let signersFile = cfg.signersFile else {
            throw ConfigError(code: .invalid, message: "signers_file is missing (the operator keys allowed to sign destructive ops)")
        }
        let signersText: String
        do { signersText = try String(contentsOfFile: signersFile, encoding: .utf8) } catch {
            throw ConfigError(code: .unreadable, message: "cannot read signers_file '\(signersFile)'")
        }
        let signers: [PinnedSigner]
        do { signers = try AllowedSigners.parse(signersText) } catch {
            throw ConfigError(code: .invalid, message: "signers_file '\(signersFile)': \(error.message)")
        }
        guard !signers.isEmpty else { throw ConfigError(code: .invalid, message: "signers_file '\(signersFile)' lists no keys") }
        guard let prov = cfg.provision else { throw ConfigError(code: .invalid, message: "provision.golden_template is missing") }
        let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let trust = try cfg.hubTrust()
        let identity = try await enrolledIdentity(config: cfg, logger: logger)
        // One agent per state directory: held for the life of this process (released at exit).
        do { try Self.lockStateDir(stateDir) } catch { throw ConfigError(code: .invalid, message: error.message) }
        let hub = try HubClient(url: hubCfg.url, key: Secret(identity.key), trust: trust)
        let pve = PVEClient(connection: try cfg.pveConnection())
        // The local API's tokens, and the controller config pushed into new guests.
        var localTokens: LocalTokens?
        var credentials: GuestCredentials?
        if let api = cfg.localAPI {
            let listen = api.listen ?? "127.0.0.1"
            do {
                let tokens = try LocalAPIFiles.tokens(stateDir: stateDir)
                localTokens = tokens
                if cfg.provision?.controllerConfig ?? true {
                    let cert = try LocalAPIFiles.certificate(stateDir: stateDir, names: [listen])
                    credentials = GuestCredentials(
                        hubURL: hubCfg.url, hubFingerprint: hubCfg.fingerprint, agentURL: "https://\(listen):\(api.port ?? 8787)",
                        agentFingerprint: cert.fingerprint, tokens: tokens,
                        backend: PrivilegedBackend(runner: commandRunner ?? SubprocessCommandRunner()),
                        stagingDir: stateDir + "/push")
                }
            } catch {
                throw ConfigError(code: .invalid, message: "local_api: \(error)")
            }
        }
        var restoreSettings: RestoreTestSettings?
        if cfg.backup != nil, cfg.restoreTest?.enabled ?? true {
            restoreSettings = RestoreTestSettings(
                runner: commandRunner ?? SubprocessCommandRunner(), everyDays: cfg.restoreTest?.everyDays ?? 7,
                scratchStorage: cfg.restoreTest?.scratchStorage ?? prov.storage ?? "local-lvm",
                healthTimeout: .seconds(max(10, cfg.restoreTest?.healthTimeoutSeconds ?? 600)))
        }
        var healSettings: HealSettings?
        if cfg.localAPI != nil, cfg.heal?.enabled ?? true {
            healSettings = HealSettings(
                runner: commandRunner ?? SubprocessCommandRunner(),
                settings: .init(
                    silentAfter: TimeInterval(max(60, cfg.heal?.silentSeconds ?? 900)),
                    recheck: TimeInterval(max(30, cfg.heal?.recheckSeconds ?? 180))))
        }
        var escrowSettings: EscrowSettings?
        if let keyFile = cfg.backup?.keyFile, !keyFile.isEmpty, cfg.escrow?.enabled ?? true {
            escrowSettings = EscrowSettings(
                keyFile: keyFile, storage: cfg.escrow?.storage ?? "pbs-felhom", drillDays: cfg.escrow?.drillDays ?? 7,
                runner: commandRunner ?? SubprocessCommandRunner(), operatorKey: try cfg.escrowOperatorKey())
        }
        let maxBackoff = hubCfg.maxBackoffSeconds ?? 300
        guard (1...3600).contains(maxBackoff) else {
            throw ConfigError(code: .invalid, message: "hub.max_backoff_seconds must be 1…3600 seconds, got \(maxBackoff)")
        }
        return try Agent(
            hostID: identity.hostID, hub: hub, pve: pve, node: cfg.pve.node, stateDir: stateDir, signers: signers,
            provision: .init(node: cfg.pve.node, goldenTemplate: prov.goldenTemplate, storage: prov.storage ?? "local-lvm"),
            longPollSeconds: hubCfg.longPollSeconds ?? 25, maxBackoffSeconds: maxBackoff, logger: logger, signersFile: signersFile,
            backup: try cfg.backupSettings(),
            credentials: credentials, localTokens: localTokens, restoreTests: restoreSettings, heal: healSettings, escrow: escrowSettings,
            storageRunner: cfg.storageManifest ?? true ? (commandRunner ?? SubprocessCommandRunner()) : nil,
            routes: cfg.routes?.enabled ?? true
                ? RouteManager.Settings(
                    listenHost: cfg.routes?.listen ?? "::", probeInterval: TimeInterval(max(5, cfg.routes?.probeSeconds ?? 30)),
                    allowedPorts: try cfg.routesAllowedPorts())
                : nil,
            snapshots: try snapshotSettings(cfg, hostID: identity.hostID, runner: commandRunner),
            memoryRunner: cfg.memoryEvents ?? true ? (commandRunner ?? SubprocessCommandRunner()) : nil, selfUpdate: try selfUpdateSettings(cfg),
            hardware: cfg.hardware?.enabled ?? true ? (commandRunner ?? SubprocessCommandRunner()) : nil,
            hardwareSettings: {
                var h = HardwareMonitor.Settings()
                h.intervalSeconds = Double(max(60, cfg.hardware?.intervalSeconds ?? 600))
                return h
            }(),
            tunnel: cfg.tunnel?.enabled ?? false
                ? {
                    var t = TunnelSupervisor.Settings()
                    if let m = cfg.tunnel?.metrics { t.metrics = m }
                    if let u = cfg.tunnel?.unit { t.unit = u }
                    return t
                }() : nil, tunnelRunner: commandRunner)
    }

    /// `update.*`: the A/B root and the pinned release keys (a missing or empty key file is a
    /// config error, never "trust anything").
    static func selfUpdateSettings(_ cfg: AgentConfig) throws -> SelfUpdateSettings? {
        guard let u = cfg.update else { return nil }
        guard let file = u.releaseSignersFile, !file.isEmpty else {
            throw ConfigError(code: .invalid, message: "update.release_signers_file is required (the keys allowed to sign agent releases)")
        }
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw ConfigError(code: .unreadable, message: "cannot read update.release_signers_file '\(file)'")
        }
        let signers: [PinnedSigner]
        do { signers = try AllowedSigners.parse(text) } catch {
            throw ConfigError(code: .invalid, message: "update.release_signers_file '\(file)': \(error.message)")
        }
        guard !signers.isEmpty else { throw ConfigError(code: .invalid, message: "update.release_signers_file '\(file)' lists no keys") }
        let window = u.windowSeconds ?? 300
        guard (30...3600).contains(window) else { throw ConfigError(code: .invalid, message: "update.window_seconds must be 30 … 3600") }
        let settle = u.settleSeconds ?? 60
        guard (0...window).contains(settle) else {
            throw ConfigError(code: .invalid, message: "update.settle_seconds must be 0 … update.window_seconds")
        }
        return SelfUpdateSettings(
            root: u.root ?? "/opt/felhom/agent", releaseSigners: signers, windowSeconds: window, settleSeconds: settle)
    }

    /// What `felhom-agent snapshot list|restore|run` needs (no agent running): the hub with the
    /// box's own key, the box's host id, a restorer and a snapshotter over `snapshots.*` (the
    /// master key from `backup.key_file`), and the PVE API for the storage configuration.
    public struct SnapshotTools: Sendable {
        public var hub: HubClient
        public var hostID: String
        public var restorer: SnapshotRestorer
        public var pve: PVEClient
        /// The snapshotter over the journal in `state_dir`: only with `exclusive` (the state
        /// directory is locked, so no agent runs beside it).
        public var snapshotter: VolumeSnapshotter?
    }

    /// The tools of `felhom-agent snapshot`; `exclusive` locks the state directory (a running
    /// agent is refused, naming the lock) and opens the journal for a snapshot run.
    public static func snapshotTools(config cfg: AgentConfig, logger: Logger, exclusive: Bool = false) async throws -> SnapshotTools {
        guard let hubCfg = cfg.hub else { throw ConfigError(code: .invalid, message: "the hub section (hub.url) is missing") }
        let identity = try await enrolledIdentity(config: cfg, logger: logger)
        guard let settings = try snapshotSettings(cfg, hostID: identity.hostID, runner: nil) else {
            throw ConfigError(code: .invalid, message: "volume snapshots are not configured (snapshots.s3.*)")
        }
        let hub = try HubClient(url: hubCfg.url, key: Secret(identity.key), trust: try cfg.hubTrust())
        var snapshotter: VolumeSnapshotter?
        if exclusive {
            let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
            do { try Self.lockStateDir(stateDir) } catch { throw ConfigError(code: .invalid, message: error.message) }
            snapshotter = VolumeSnapshotter(
                backend: PrivilegedBackend(runner: settings.runner), s3: settings.s3, journal: try Journal(path: stateDir + "/journal.jsonl"),
                masterKey: settings.masterKey, prefix: settings.prefix, devicePath: settings.devicePath)
        }
        return SnapshotTools(
            hub: hub, hostID: identity.hostID, restorer: SnapshotRestorer(s3: settings.s3, masterKey: settings.masterKey, prefix: settings.prefix),
            pve: PVEClient(connection: try cfg.pveConnection()), snapshotter: snapshotter)
    }

    /// Volume snapshots from `snapshots.*` and the PBS key (whose derivative wraps the data keys).
    static func snapshotSettings(_ cfg: AgentConfig, hostID: String, runner: (any CommandRunner)?) throws -> VolumeSnapshotSettings? {
        guard let (s3, prefix) = try cfg.snapshotS3(hostID: hostID), let keyFile = cfg.backup?.keyFile else { return nil }
        let master: SymmetricKey
        do { master = try SnapshotKeys.masterKey(pbsKey: try PBSKey.rawKey(file: keyFile)) } catch let e as BackupError {
            throw ConfigError(code: .invalid, message: "volume snapshots: \(e.message)")
        }
        let deviceDir = cfg.snapshots?.deviceDir.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? "/dev"
        return VolumeSnapshotSettings(
            s3: try S3Client(settings: s3), prefix: prefix, masterKey: master, runner: runner ?? SubprocessCommandRunner(),
            devicePath: { "\(deviceDir)/\($0)/\($1)" }, restoreDir: cfg.snapshots?.restoreDir)
    }
}
