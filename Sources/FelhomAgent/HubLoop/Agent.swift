import FelhomAPI
import FelhomCore
import FelhomHTTP
import FelhomHubClient
import FelhomSigning
import Foundation
import Logging
import Proxmox
import ServiceLifecycle
import Synchronization

/// The host agent: talks only outbound to the hub, reconciles guests through the Proxmox API, runs
/// verified signed ops, and journals every multi-step operation.
///
/// One cycle: report (or poll) → adopt the hub's interval (clamped to [60, 3600] s) → if not
/// blocked: run delivered signed ops, then reconcile towards the published desired state. Between
/// cycles it long-polls the hub so a publish or a signed op is acted on within seconds.
public final class Agent: Service, Sendable {
    /// The running release's version: its A/B slot's signed manifest, else the compiled-in one.
    public static let version = InstalledRelease.runningVersion()

    public let hostID: String
    let hub: HubClient
    let pve: any PVEAPI
    let node: String
    public let journal: Journal
    let queue: GuestQueue
    /// The backup coordinator (also the local API's backend); nil when `backup` is not configured.
    public let backups: AgentBackups?
    let backupTimeZone: TimeZone
    /// The controllers' local API tokens (one store shared by the server and provisioning).
    public let localTokens: LocalTokens?
    /// Restore tests (after backups, weekly per guest); nil without `backup` or without a runner.
    public let restoreTests: RestoreTests?
    /// Backup outcomes the hub has taken (the rest are said again: ``resendOutcomes()``).
    public let backupOutcomes = OutcomeLedger()
    let provisioner: Provisioner
    let engine: Engine
    let runner: SignedOpRunner
    let logger: Logger
    let longPollSeconds: Int
    /// The longest wait between two tries while the hub cannot be reached (`hub.max_backoff_seconds`).
    let maxBackoffSeconds: Int
    let clock: WallClock
    /// Controller tokens of this host's guests (`state_dir/guest-tokens/<vmid>.token`).
    let tokensDir: String
    /// Where the pinned operator keys are read from (reread when it changes); nil in tests that pass keys in.
    let signersFile: String?
    /// The storage manifest (disks by filesystem UUID); nil without a command runner for the fenced backend.
    public let storage: StorageKeeper?
    /// The agent's state directory.
    let stateDir: String
    /// The public routes' proxies (nil: routes are off in this agent).
    public let routes: RouteManager?
    /// Volume snapshots to object storage (nil: not configured).
    public let snapshots: VolumeSnapshots?
    /// OOM kills per guest (nil: not watched).
    let memoryWatch: MemoryWatch?
    /// SMART and temperatures for the report (nil when `hardware.enabled` is false).
    let hardware: HardwareMonitor?
    /// The supervised Cloudflare tunnel (nil unless `tunnel.enabled`).
    let tunnel: TunnelSupervisor?
    /// Rollbacks handed in by controllers through the local API (`POST /rollback`).
    public let localRollbacks: LocalRollbacks
    /// The box's escrow (drill in the cycle); nil without `backup.key_file` or with `escrow.enabled: false`.
    public let escrow: EscrowKeeper?
    let escrowDrillDays: Int
    /// Heals silent controllers; nil without `local_api` or with `heal.enabled: false`.
    public let healer: ControllerHealer?
    /// Operator requests already acted on (`state_dir/requests-done.json`).
    let requestsFile: String
    /// Backup requests due now but not yet journaled (each said in the log once).
    let pendingRequests = Mutex<Set<String>>([])
    let state = Mutex(Status())
    /// A/B self-update (nil: not configured).
    let updater: AgentUpdater?
    /// Controller updates (nil: self-update not configured).
    let controllerUpdater: ControllerUpdater?
    /// The desired state's backup storage, for pre-update backups.
    let backupTarget: BackupTarget
    /// The version this agent reports (its slot's release).
    let runningVersion: String

    /// What the agent last saw and did (for `--once`, the demo and tests).
    public struct Status: Sendable {
        public var appliedGeneration: Int64 = -1
        public var lastEnvelope: ControlEnvelope?
        public var lastOutcome: Engine.Outcome?
        public var refusedDestroys: Set<Int> = []
        /// Ops held because their key is not pinned (said once each).
        public var heldOps: Set<String> = []
        /// Ops held in the last round of signed ops.
        public var holdingNow: Set<String> = []
        /// The `signers_file` text in use, and the last problem reading a newer one.
        var signersText: String?
        var signersProblem: String?
        public var cycles = 0
        /// The desired state of the last cycle (housekeeping between cycles reads it).
        var lastSpec: DesiredState?
        /// The generation `lastSpec` was published as.
        var lastGeneration: Int64?
        /// What `desired-last.json` holds now (written only when it changes).
        var savedDesired: [UInt8]?
        /// Reconciles done while the hub was unreachable, since the last good cycle.
        public var offlineReconciles = 0
        /// Bulk mount points in backups already reported (said once each).
        var bulkReported: Set<BulkRule.Violation> = []
        /// `recovery_pending` said (once per process).
        var saidRecoveryPending = false
        /// Leftover snapshot LVs and uploads were cleaned after this start.
        var snapshotsRecovered = false
        /// A new agent binary was switched in: the service loop ends so systemd starts it.
        public var restartForUpdate = false
        /// A pass of controller updates is running.
        var controllerUpdating = false
    }

    public var status: Status { state.withLock { $0 } }

    /// Builds an agent from its parts (the demo and tests pass them in-process).
    public init(
        hostID: String, hub: HubClient, pve: any PVEAPI, node: String, stateDir: String, signers: [PinnedSigner],
        provision: Provisioner.Settings, longPollSeconds: Int = 25, maxBackoffSeconds: Int = 300, clock: WallClock = SystemWallClock(),
        logger: Logger, signersFile: String? = nil, backup: BackupSettings? = nil, credentials: GuestCredentials? = nil,
        localTokens: LocalTokens? = nil,
        restoreTests restoreSettings: RestoreTestSettings? = nil, heal: HealSettings? = nil, escrow escrowSettings: EscrowSettings? = nil,
        storageRunner: (any CommandRunner)? = nil, routes routeSettings: RouteManager.Settings? = nil,
        snapshots snapshotSettings: VolumeSnapshotSettings? = nil, memoryRunner: (any CommandRunner)? = nil,
        selfUpdate: SelfUpdateSettings? = nil, runningVersion: String = Agent.version,
        hardware hardwareRunner: (any CommandRunner)? = nil, hardwareSettings: HardwareMonitor.Settings = .init(),
        tunnel tunnelSettings: TunnelSupervisor.Settings? = nil, tunnelRunner: (any CommandRunner)? = nil
    ) throws {
        tunnel = tunnelSettings.map { TunnelSupervisor(settings: $0, backend: PrivilegedBackend(runner: tunnelRunner ?? SubprocessCommandRunner())) }
        self.routes = routeSettings.map { RouteManager(settings: $0) }
        hardware = hardwareRunner.map { HardwareMonitor(backend: PrivilegedBackend(runner: $0), stateDir: stateDir, settings: hardwareSettings) }
        memoryWatch = memoryRunner.map { MemoryWatch(backend: PrivilegedBackend(runner: $0), stateDir: stateDir) }
        self.localTokens = localTokens ?? credentials?.tokens
        let queue = GuestQueue()
        self.queue = queue
        self.signersFile = signersFile
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.hostID = hostID
        self.hub = hub
        self.pve = pve
        self.node = node
        self.logger = logger
        self.clock = clock
        self.longPollSeconds = max(1, min(longPollSeconds, 60))
        self.maxBackoffSeconds = max(1, min(maxBackoffSeconds, 3600))
        self.stateDir = stateDir
        self.tokensDir = stateDir + "/guest-tokens"
        self.requestsFile = stateDir + "/requests-done.json"
        journal = try Journal(path: stateDir + "/journal.jsonl", clock: clock)
        let nonces = try FileNonceStore(path: stateDir + "/nonces.log", clock: clock)
        let log: @Sendable (String) -> Void = { [logger] in logger.info("\($0)") }
        let hubClient = hub
        let tokensDir = self.tokensDir
        provisioner = Provisioner(
            pve: pve, journal: journal, settings: provision,
            issueToken: { vmid, name in
                // The controller's own key from the hub, kept for the local API to hand to the guest.
                // Asked again after a crash, the hub re-keys the same guest and revokes the first key.
                let (guestID, key) = try await hubClient.createGuest(hostID: hostID, name: name, idempotencyKey: "vmid-\(vmid)")
                try FileManager.default.createDirectory(atPath: tokensDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                let path = tokensDir + "/\(vmid).token"
                do throws(AppendLogError) { try DurableFile.write(Array(key.reveal().utf8), to: path, mode: 0o600) } catch {
                    throw SignedOpError(message: "cannot store the guest token for \(vmid): \(error.message)")
                }
                // The controller's credentials go straight into the guest (never through the hub).
                if let credentials {
                    do { try await credentials.install(vmid: vmid, guestID: guestID, hubKey: key) } catch {
                        throw SignedOpError(message: "cannot write the controller config into \(vmid): \(error)")
                    }
                }
            }, log: log)
        engine = Engine(pve: pve, node: node, queue: queue, provisioner: provisioner, taskTimeout: provision.taskTimeout, log: log)
        backupTimeZone = backup?.timeZone ?? .current
        if let backup, let restoreSettings {
            let tester = RestoreTester(
                pve: pve, node: node, queue: queue, journal: journal, backend: PrivilegedBackend(runner: restoreSettings.runner),
                scratchStorage: restoreSettings.scratchStorage, healthTimeout: restoreSettings.healthTimeout, taskTimeout: backup.taskTimeout,
                log: log)
            restoreTests = RestoreTests(
                tester: tester, everyDays: restoreSettings.everyDays, hub: hub, logger: logger, queueFile: stateDir + "/restore-tests-queued.json")
        } else {
            restoreTests = nil
        }
        let snapshotJournal = journal
        let zone = backup?.timeZone ?? .current
        let volumeSnapshots = snapshotSettings.map {
            VolumeSnapshots(
                snapshotter: VolumeSnapshotter(
                    backend: PrivilegedBackend(runner: $0.runner), s3: $0.s3, journal: snapshotJournal, masterKey: $0.masterKey, prefix: $0.prefix,
                    devicePath: $0.devicePath, now: { clock.now() }),
                stateDir: stateDir, timeZone: zone)
        }
        snapshots = volumeSnapshots
        if let backup {
            let runner = BackupRunner(
                pve: pve, node: node, queue: queue, journal: journal, storage: "", boxKey: backup.boxKey, taskTimeout: backup.taskTimeout, log: log)
            var whileQuiesced: (@Sendable (Int) async -> Void)?
            if let volumeSnapshots {
                whileQuiesced = { [logger, clock] vmid in
                    for line in await volumeSnapshots.quiesced(vmid: vmid, now: clock.now()) { logger.notice("volume snapshots: \(line)") }
                }
            }
            backups = AgentBackups(
                runner: runner, appBound: backup.appBound,
                onFinished: { [hub, logger, restoreTests, backupOutcomes] result in
                    restoreTests?.afterBackup(result)  // queued (durably) before the report's round trip
                    await Self.report(result, hub: hub, logger: logger, ledger: backupOutcomes)
                }, whileQuiesced: whileQuiesced)
        } else {
            backups = nil
        }
        if let heal, localTokens ?? credentials?.tokens != nil {
            healer = ControllerHealer(
                settings: heal.settings,
                remedies: Self.healRemedies(
                    backend: PrivilegedBackend(runner: heal.runner), pve: pve, node: node, queue: queue, taskTimeout: provision.taskTimeout),
                log: log)
        } else {
            healer = nil
        }
        let storage = storageRunner.map { StorageKeeper(backend: PrivilegedBackend(runner: $0), stateDir: stateDir, pve: pve, node: node, log: log) }
        self.storage = storage
        let volumeRestore = snapshotSettings.map { [hub, hostID] settings in
            VolumeRestoreOver(
                restorer: SnapshotRestorer(s3: settings.s3, masterKey: settings.masterKey, prefix: settings.prefix),
                records: { try await hub.volumeSnapshots(hostID: hostID, volumeID: $0) }, devicePath: settings.devicePath,
                workDir: settings.restoreDir ?? stateDir + "/volume-restore")
        }
        let updateJournal = journal
        updater = selfUpdate.map { [hub] settings in
            AgentUpdater(
                settings: settings, journal: updateJournal,
                source: .init(
                    release: { try await hub.release(component: "agent", version: $0) },
                    download: { try await hub.releaseAsset(component: "agent", version: $0, into: $1) }),
                stateDir: stateDir, runningVersion: runningVersion, clock: clock, log: log)
        }
        self.runningVersion = runningVersion
        let healerForUpdates = healer
        let backupsForUpdates = backups
        let controllerBackend = PrivilegedBackend(runner: heal?.runner ?? storageRunner ?? memoryRunner ?? SubprocessCommandRunner())
        let backupTarget = BackupTarget()
        self.backupTarget = backupTarget
        controllerUpdater = selfUpdate.map { [hub] settings in
            ControllerUpdater(
                settings: .init(releaseSigners: settings.releaseSigners, windowSeconds: settings.windowSeconds), journal: updateJournal,
                source: .init(
                    release: { try await hub.release(component: "controller", version: $0) },
                    download: { try await hub.releaseAsset(component: "controller", version: $0, into: $1) }),
                operations: Self.controllerOperations(
                    backend: controllerBackend, pve: pve, node: node, queue: queue, backups: backupsForUpdates, healer: healerForUpdates,
                    backupStorage: { backupTarget.storage.withLock { $0 } }, taskTimeout: provision.taskTimeout),
                stateDir: stateDir, clock: clock, log: log)
        }
        runner = SignedOpRunner(
            verifier: OpVerifier(signers: signers, hostID: hostID, nonces: nonces, clock: clock), journal: journal, queue: queue, pve: pve,
            node: node, taskTimeout: provision.taskTimeout, storage: storage, volumeRestore: volumeRestore,
            rollbacks: RollbackAuthorizations(stateDir: stateDir), log: log)
        localRollbacks = LocalRollbacks(runner: runner, hub: hub, logger: logger)
        escrow = escrowSettings.map {
            EscrowKeeper(
                stateDir: stateDir, keyFile: $0.keyFile, storage: $0.storage, pve: pve, backend: PrivilegedBackend(runner: $0.runner), hub: hub,
                hostID: hostID, params: $0.params, operatorKey: $0.operatorKey)
        }
        escrowDrillDays = escrowSettings?.drillDays ?? 7
    }

    /// Finishes or compensates operations a crash left in flight. Runs before the first cycle.
    public func resumeInFlight() async {
        updater?.resume()
        for e in await controllerUpdater?.resume() ?? [] { await post(e) }
        for e in updater?.collectVerdict() ?? [] { await post(e) }
        if let restoreTests {
            for (op, entries) in journal.inFlight() where entries.first?.kind == RestoreTester.kind {
                if let result = await restoreTests.tester.resume(op: op, entries: entries) {
                    await RestoreTests.report(result, hub: hub, logger: logger, ledger: restoreTests.outcomes)
                    // Its orphan is gone; the test itself is run again (from the same backup storage).
                    if let storage = result.volid?.split(separator: ":").first {
                        logger.notice("restore test of \(result.vmid) interrupted by a restart: run again")
                        restoreTests.request(vmid: result.vmid, storage: String(storage))
                    }
                }
            }
        }
        if let backups {
            for (op, entries) in journal.inFlight() where entries.first?.kind == BackupRunner.kind {
                if let result = await backups.runner.resume(op: op, entries: entries) {
                    restoreTests?.afterBackup(result)
                    await Self.report(result, hub: hub, logger: logger, ledger: backupOutcomes)
                }
            }
        }
        restoreTests?.afterRestart()
        restoreTests?.resumeQueued()
        for (op, entries) in journal.inFlight() where entries.first?.kind == SignedOpRunner.kind && op.hasPrefix("lr-") {
            // A rollback handed in through the local API: no hub delivers it again, so finish it here.
            let outcome = await runner.handle(id: op, blob: [], signature: "")
            logger.info("resumed local rollback \(op): \(outcome.applied ? "done" : outcome.reason ?? "failed")")
            if let blob = entries.first.flatMap({ $0.data["blob"] }).flatMap({ try? OpBlob(parsing: Array($0.utf8)) }),
                let vmid = blob.guestID.flatMap(Int.init)
            {
                await localRollbacks.report(outcome, id: op, vmid: vmid, op: blob)
            }
        }
        for (op, entries) in journal.inFlight() where entries.first?.kind == Provisioner.kind {
            guard let vmid = entries.first?.data["vmid"].flatMap(Int.init) else { continue }
            do {
                try await queue.run(vmid: vmid) { try await self.provisioner.resume(op: op, entries: entries) }
                logger.info("resumed \(op): done")
            } catch {
                logger.warning("resumed \(op): \(error)")
            }
        }
    }

    /// One cycle. Returns the envelope the hub answered with.
    @discardableResult
    public func cycle() async throws -> ControlEnvelope {
        let report = try await hostReport()
        let env: ControlEnvelope
        if let report {
            env = try await hub.postHostReport(report)
        } else {
            logger.warning("node status unreadable: no report this round")
            env = try await hub.control(after: nil, wait: 0)  // no generation to wait past: answer now
        }
        state.withLock {
            $0.lastEnvelope = env
            $0.cycles += 1
        }
        // Reported to the hub after reading PVE: healthy, for the self-update gate.
        if report != nil { updater?.writeHealth() }
        guard !env.blocked else {
            logger.warning("the operator blocked this host: reporting only")
            forgetLastDesired()  // a blocked box changes nothing, not even while the hub is away
            return env
        }
        let (generation, spec) = try await hub.desired(hostID: hostID)
        if let updater, let wanted = spec?.versions["agent"] {
            let (outcome, events) = await updater.consider(version: wanted)
            for e in events { await post(e) }
            if case .flipped = outcome {
                state.withLock { $0.restartForUpdate = true }
                return env
            }
        }
        let appliedOps = env.hasSignedOps ? await runSignedOps(desired: spec) : 0
        var reportNow = appliedOps > 0  // the hub's views show an applied op now, not a poll later
        if spec != nil, await holdForRecovery() {
            // A replacement box enrolled for recovery: reporting only, until `recover` restored the guests.
        } else if let spec {
            let outcome = try await engine.reconcile(desired: spec)
            state.withLock {
                $0.lastSpec = spec
                $0.lastGeneration = generation
            }
            saveLastDesired(spec, generation: generation)
            backupTick(spec)
            await actOnRequests(spec)
            await resendOutcomes()
            await housekeeping()
            await routeTick(spec)
            await snapshotTick(spec, report: report)
            await memoryTick(spec)
            controllerUpdateTick(spec)
            await escrowTick()
            for vmid in outcome.provisioned.sorted() {
                // A new (empty) guest is never silent: the operator sees every provision.
                let name = spec.guests.first { $0.vmid == vmid }?.name ?? ""
                do {
                    try await hub.postEvent(
                        type: "guest_provisioned", severity: .info,
                        data: .object([
                            "vmid": .int(Int64(vmid)), "name": .string(name), "generation": .int(generation),
                            "source": .string("golden template"),
                        ]))
                } catch { logger.warning("cannot report the provisioning of \(vmid): \(error)") }
            }
            try await reportRefusedDestroys(spec: spec)
            if let report { await reportBulkVolumes(report: report, spec: spec) }
            state.withLock {
                $0.lastOutcome = outcome
                if outcome.failed == 0 { $0.appliedGeneration = generation }
            }
            if !outcome.planned.isEmpty {
                logger.info("reconciled generation \(generation): \(outcome.succeeded) done, \(outcome.failed) failed")
                reportNow = true
            } else if let report, outcome.observedDiffers(from: report) {
                logger.info("the box changed since this cycle's report (a task from before ended): reporting it")
                reportNow = true
            } else if let report, report.appliedGeneration != appliedGenerationForReport {
                // Nothing to change, but a generation the hub does not know is applied yet.
                logger.info("generation \(generation) applied (nothing to change): reporting it")
                reportNow = true
            }
        }
        if reportNow {
            // Tell the hub what the box looks like now, not at the next interval. The cycle's work
            // is done: a refused or failed follow-up (say a 429 after a burst of publishes) is
            // logged, and the next report says it.
            do {
                if let fresh = try await hostReport() { _ = try await hub.postHostReport(fresh) }
            } catch {
                logger.warning("cannot report the box after this cycle (the next report says it): \(error)")
            }
        }
        return env
    }

    /// The host report: what PVE shows, the generation applied, and the data-protection records
    /// (backups, restore tests, what the backup storage holds, the audit tail). Nil when the node
    /// status cannot be read.
    public func hostReport() async throws -> HostReport? {
        guard var report = try await HostObserver(pve: pve, node: node).report(agentVersion: runningVersion, journal: journal, now: clock.now())
        else { return nil }
        report.appliedGeneration = appliedGenerationForReport
        report.auditTail = auditTail()
        if let storage { report.storageTargets = storage.targets }
        if let routes {
            let list = await routes.report
            report.routes = list.isEmpty ? nil : list
        }
        if let snapshots {
            let list = await snapshots.report
            report.volumeSnapshots = list.isEmpty ? nil : list
        }
        if let tunnel {
            if tunnel.tokenCheckDue(now: clock.now()) {
                let line = await tunnel.syncToken(stateDir: stateDir) { [hub, hostID] in
                    let view = try await hub.send("GET", "/api/v1/hosts/\(hostID)/tunnel-token", as: TunnelTokenView.self)
                    return view.connectorToken
                }
                if let line { logger.notice("\(line)") }
            }
            let (probe, events) = await tunnel.check(now: clock.now())
            report.cloudflared = probe.status
            report.cloudflaredReason = probe.reason
            for e in events {
                logger.warning("tunnel: \(e.type) \(e.data["reason"]?.stringValue ?? "")")
                await post(e)
            }
        }
        if let hardware {
            let (health, events) = await hardware.observe(now: clock.now())
            report.hardware = health
            for e in events {
                logger.warning("hardware: \(e.type) \(e.data["device"]?.stringValue ?? e.data["sensor"]?.stringValue ?? "")")
                await post(e)
            }
        }
        if backups != nil {
            let (b, r) = protectionRecords()
            report.backups = b
            report.restoreTests = r
            report.pbsSnapshots = await storedBackups()
        }
        return report
    }

    /// How often the running agent logs a status line.
    static let statusEvery: Duration = .seconds(15 * 60)

    /// One line for the log: cycles, the generation applied, the last outcome.
    func statusLine() -> String {
        let (cycles, applied, outcome) = state.withLock { ($0.cycles, $0.appliedGeneration, $0.lastOutcome) }
        var line = "status: \(cycles) cycles, applied generation \(applied >= 0 ? String(applied) : "none")"
        if let outcome { line += ", last reconcile \(outcome.succeeded) done / \(outcome.failed) failed" }
        return line
    }

    /// The generation last applied without a failed action (nil before the first).
    var appliedGenerationForReport: Int64? {
        let g = state.withLock { $0.appliedGeneration }
        return g >= 0 ? g : nil
    }

    /// Fetches and runs every signed op the hub holds for this host, reporting each outcome. A
    /// failure to fetch or report is logged and does not stop the cycle: desired state is still
    /// applied (an unreported outcome is reported again next time, from the journal). Returns how
    /// many were applied (the cycle then reports the box at once).
    @discardableResult
    func runSignedOps(desired: DesiredState?) async -> Int {
        reloadSigners()
        var handled = Set<String>()
        var held = Set<String>()
        var applied = 0
        while true {
            let next: HubClient.DeliveredOp?
            do { next = try await hub.nextSignedOp(excluding: held) } catch {
                logger.warning("cannot fetch signed ops: \(error)")
                return applied
            }
            guard let op = next, handled.insert(op.id).inserted else {
                state.withLock { $0.holdingNow = held }
                return applied
            }
            let outcome = await runner.handle(id: op.id, blob: op.blob, signature: op.signature, desired: desired)
            if outcome.held {
                // Not consumed: it stays on the hub, and is run once the key is in signers_file.
                held.insert(op.id)
                await sayHeld(opID: op.id, key: outcome.unpinnedKey ?? "?")
                continue
            }
            if outcome.applied {
                applied += 1
                // A destroyed guest's controller token goes with it (the hub revokes its keys).
                if let blob = try? OpBlob(parsing: op.blob), blob.op == .guestDestroy, let vmid = blob.guestID.flatMap(Int.init) {
                    try? FileManager.default.removeItem(atPath: tokensDir + "/\(vmid).token")
                }
            }
            do {
                try await hub.reportSignedOpResult(id: op.id, applied: outcome.applied, reason: outcome.reason.map(Self.reportable))
            } catch {
                logger.warning("cannot report the outcome of signed op \(Self.reportable(op.id)): \(error)")
                return applied
            }
        }
    }

    /// Says once per op (log line and `op_held` event) that an op waits for its key to be pinned.
    func sayHeld(opID: String, key: String) async {
        let first = state.withLock { $0.heldOps.insert(opID).inserted }
        guard first else { return }
        let id = Self.reportable(opID)
        logger.warning(
            "signed op \(id) is signed by key \(key), which is not in signers_file: holding it (not consumed). Add the key's line (felhom op signers-line KEY.pub --role operational) to \(signersFile ?? "signers_file"); the agent rereads the file before each op, or at once on SIGHUP"
        )
        do {
            try await hub.postEvent(
                type: "op_held", severity: .warning,
                data: .object([
                    "op_id": .string(id), "key": .string(key),
                    "reason": .string("signed by a key not in this box's signers_file; waiting until it is added or the op expires"),
                ]))
        } catch {
            logger.warning("cannot post op_held: \(error)")
        }
    }

    /// Rereads `signers_file` when its text changed since the last read. A file that cannot be
    /// read or parsed, or lists no key, is refused with an error line and the keys in use stay:
    /// a broken edit never opens or closes the box by accident.
    public func reloadSigners() {
        guard let path = signersFile else { return }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            reportSignersProblem("cannot read signers_file '\(path)'")
            return
        }
        guard state.withLock({ $0.signersText != text }) else { return }
        do {
            let signers = try AllowedSigners.parse(text)
            guard !signers.isEmpty else {
                reportSignersProblem("signers_file '\(path)' lists no keys")
                return
            }
            runner.replaceSigners(signers)
            let first = state.withLock { st -> Bool in
                let first = st.signersText == nil
                st.signersText = text
                st.signersProblem = nil
                return first
            }
            if !first {
                logger.notice(
                    "signers_file '\(path)' reloaded: \(signers.map { "\($0.key.fingerprint) (\($0.role.rawValue))" }.joined(separator: ", "))")
            }
        } catch {
            reportSignersProblem("signers_file '\(path)': \(error.message)")
        }
    }

    private func reportSignersProblem(_ message: String) {
        let new = state.withLock { st -> Bool in
            defer { st.signersProblem = message }
            return st.signersProblem != message
        }
        if new { logger.error("\(message); keeping the keys loaded before") }
    }

    /// A reason as the hub accepts it: control and non-ASCII characters escaped, at most 900 characters.
    static func reportable(_ text: String) -> String {
        var out = ""
        for u in text.unicodeScalars {
            if u.value >= 0x20 && u.value < 0x7F {
                out.unicodeScalars.append(u)
            } else if u == "\n" {
                out += "\\n"
            } else {
                out += String(format: "\\u{%X}", u.value)
            }
            if out.count >= 900 { return String(out.prefix(897)) + "..." }
        }
        return out
    }

    /// The marker a recovery enrollment leaves in the state directory: while it is there the
    /// agent reconciles nothing (a desired guest would be provisioned empty over its backups);
    /// `felhom-agent recover` removes it once every guest came back.
    public static let recoveryPendingFile = "recovery-pending"

    /// True while the recovery marker is there; says so to the hub once per process
    /// (`recovery_pending`).
    func holdForRecovery() async -> Bool {
        guard FileManager.default.fileExists(atPath: stateDir + "/" + Self.recoveryPendingFile) else { return false }
        let first = state.withLock { st -> Bool in
            defer { st.saidRecoveryPending = true }
            return !st.saidRecoveryPending
        }
        if first {
            logger.warning("this box was enrolled to replace a lost one: nothing is provisioned until `felhom-agent recover` restored its guests")
            await post(
                AgentEvent(
                    type: "recovery_pending", severity: .warning,
                    data: ["reason": "enrolled with a recovery token; run felhom-agent recover on the box"]))
        }
        return true
    }

    /// The routes' round: resolve the addresses of the guests that routes point at (from PVE's
    /// view inside each running guest), bring the proxies to the published routes, probe their
    /// backends when due, and post what changed.
    func routeTick(_ spec: DesiredState) async {
        guard let routes else { return }
        var addresses: [Int: String] = [:]
        for vmid in Set(spec.routes.map(\.guestVMID)) {
            do {
                let interfaces = try await pve.containerInterfaces(node: node, vmid: vmid) ?? []
                let eth = interfaces.first { $0.name == "eth0" && $0.ipv4 != nil } ?? interfaces.first { $0.name != "lo" && $0.ipv4 != nil }
                if let address = eth?.ipv4 { addresses[vmid] = address }
            } catch {
                logger.warning("cannot read the addresses of guest \(vmid) for its routes: \(error)")
            }
        }
        var events = await routes.apply(spec.routes, addresses: addresses, now: clock.now())
        events += await routes.probe(now: clock.now())
        for e in events {
            logger.notice("route: \(e.type) \(e.data["route"]?.stringValue ?? "") \(e.data["reason"]?.stringValue ?? "")")
            await post(e)
        }
    }

    /// OOM kills of the desired running guests (``MemoryWatch``): `memory_limit_exceeded` once per increase.
    func memoryTick(_ spec: DesiredState) async {
        guard let memoryWatch else { return }
        let guests = Dictionary(spec.guests.filter { $0.runState == .running }.map { ($0.vmid, $0.memoryMB) }, uniquingKeysWith: { a, _ in a })
        for event in await memoryWatch.check(guests) {
            logger.warning(
                "guest \(event.data["vmid"]?.lenientInt ?? 0) hit its memory cap: \(event.data["count"]?.lenientInt ?? 0) process(es) killed")
            await post(event)
        }
    }

    /// The volume snapshots' round (docs/object-storage.md): after a start, clean what a crash
    /// left; then plan which volumes are protected (from the guests' mount points as PVE reports
    /// them and the storage configuration) and start today's run in the background when due.
    func snapshotTick(_ spec: DesiredState, report: HostReport?) async {
        guard let snapshots else { return }
        if !state.withLock({ $0.snapshotsRecovered }) {
            for line in await snapshots.recover() { logger.notice("volume snapshots: \(line)") }
            state.withLock { $0.snapshotsRecovered = true }
        }
        guard let report else { return }
        var mounts: [Int: [String: String]] = [:]
        for g in report.guests {
            mounts[g.vmid] = Dictionary((g.spec?.mountPoints ?? []).map { ($0.key, $0.volume) }, uniquingKeysWith: { a, _ in a })
        }
        let storages: [PVEStorageConfig]
        do { storages = try await pve.storages() } catch {
            logger.warning("volume snapshots: cannot read the storage configuration: \(error)")
            return
        }
        let plan = SnapshotTargets.plan(desired: spec, mounts: mounts, storages: storages)
        let hub = self.hub
        let backups = self.backups
        let started = await snapshots.tick(
            plan: plan, now: clock.now(), hour: spec.storagePolicy.backupHour,
            awaitingBackup: { backups?.awaitingBackup(vmid: $0) ?? false }, record: { try await hub.recordVolumeSnapshot($0) },
            post: { [self] event in
                logger.notice(
                    "volume snapshots: \(event.type) \(event.data["volume_id"]?.stringValue ?? "") \(event.data["reason"]?.stringValue ?? "")")
                await post(event)
            })
        if started { logger.notice("volume snapshots: today's run started (\(plan.targets.count) protected volumes)") }
    }

    /// What the operator sees of the manifest (not its free space or last-seen times).
    func storageShape() -> [String] {
        (storage?.targets ?? []).map {
            [$0.uuid, $0.state.rawValue, $0.role?.rawValue ?? "", $0.label ?? "", $0.mountPoint ?? "", $0.pveStorage ?? "", "\($0.isDefault)"]
                .joined(separator: "|")
        }
    }

    /// The storage manifest's round: scan the disks, apply the published disk policies, tell the hub
    /// what changed (`storage_detected`, `storage_disconnected`, `storage_reconnected`, …).
    func storageTick(_ spec: DesiredState) async {
        guard let storage else { return }
        let before = storageShape()
        let events = await storage.tick(policies: spec.storage, now: clock.now())
        if storageShape() != before {
            // A disk found, mounted, unplugged or retired shows in the host report first, then
            // the events say so: an operator who reacts to `storage_detected` finds the disk.
            do { if let fresh = try await hostReport() { _ = try await hub.postHostReport(fresh) } } catch {
                logger.warning("cannot report the storage manifest now (next report carries it): \(error)")
            }
        }
        for e in events {
            logger.notice("storage: \(e.type) \(e.data["uuid"]?.stringValue ?? "")")
            await post(e)
        }
    }

    /// A bulk mount point that vzdump would include (`backup=1`): `bulk_volume_in_backup`, once per
    /// guest and mount point while it stays so. The agent does not change the guest's config.
    func reportBulkVolumes(report: HostReport, spec: DesiredState) async {
        let found = Set(BulkRule.violations(report: report, desired: spec))
        let new = state.withLock { st -> [BulkRule.Violation] in
            defer { st.bulkReported = found }
            return found.subtracting(st.bulkReported).sorted { ($0.vmid, $0.key) < ($1.vmid, $1.key) }
        }
        for v in new {
            logger.warning(
                "guest \(v.vmid): mount point \(v.key) (\(v.path ?? "?")) is bulk (\(v.why == "marked" ? "marked bulk" : "\(v.sizeGB ?? 0) GiB")) but included in backups (backup=1): every backup carries it; set backup=0 on it"
            )
            var data: [String: JSONValue] = [
                "vmid": .int(Int64(v.vmid)), "mount_point": .string(v.key), "why": .string(v.why),
                "rule": .string("a bulk volume must be its own mount point with backup=0"),
            ]
            if let p = v.path { data["path"] = .string(p) }
            if let size = v.sizeGB { data["size_gb"] = .int(Int64(size)) }
            await post(AgentEvent(type: "bulk_volume_in_backup", severity: .warning, data: data))
        }
    }

    /// Guests the agent manages (tagged `felhom`) that the desired state no longer lists are not
    /// destroyed: the gate wants a signature. Says so once per guest through an `op_refused` event.
    func reportRefusedDestroys(spec: DesiredState) async throws {
        let wanted = Set(spec.guests.map(\.vmid))
        var refused: [Int] = []
        var names: [Int: String] = [:]
        for s in try await pve.containers(node: node) where !wanted.contains(s.vmid) && (s.tags ?? "").split(separator: ";").contains("felhom") {
            if case .needsSignature = Gate.decide(.destroy, provenance: .desiredState, target: .init(dataBearing: true)) {
                refused.append(s.vmid)
                names[s.vmid] = s.name
            }
        }
        let new = state.withLock { st -> [Int] in
            let n = refused.filter { !st.refusedDestroys.contains($0) }
            st.refusedDestroys = Set(refused)
            return n
        }
        // Worded for both cases: a guest just removed from the desired state, and one the box already
        // ran (tagged felhom) that no desired state has listed yet.
        for vmid in new {
            logger.warning(
                "guest \(vmid) is tagged felhom but not in the published desired state: kept; add it to the desired state to manage it, or queue a signed guest.destroy"
            )
            var data: [String: JSONValue] = [
                "vmid": .int(Int64(vmid)), "op": .string("guest.destroy"),
                "reason": .string(
                    "not in the published desired state; kept (add it to the desired state to manage it; destroying customer data needs a signed guest.destroy)"
                ),
            ]
            if let name = names[vmid] { data["name"] = .string(name) }
            do {
                try await hub.postEvent(type: "op_refused", severity: .warning, data: .object(data))
            } catch {
                // Not said: said again next cycle. The cycle goes on (the generation applied is
                // recorded); a rate-limited event used to abort it and was never posted again.
                logger.warning("cannot post op_refused for \(vmid) to the hub (again next cycle): \(error)")
                _ = state.withLock { $0.refusedDestroys.remove(vmid) }
            }
        }
    }

    /// The service loop: resume, then cycles separated by long-polls, with jittered backoff on errors.
    public func run() async throws {
        await resumeInFlight()
        var backoff = 1.0
        var interval = 60
        var failing = false
        var lastStatus = ContinuousClock.now
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let env = try await cycle()
                // What the cycle's work freed goes back to the kernel, not kept for the next burst.
                HeapTrim.afterCycle()
                if state.withLock({ $0.restartForUpdate }) {
                    logger.notice("a new agent release was switched in: exiting so systemd starts it")
                    break
                }
                interval = min(3600, max(60, env.pollIntervalSeconds))
                backoff = 1
                if failing {
                    logger.notice("the hub is reachable again; reporting normally")
                    failing = false
                }
                if ContinuousClock.now - lastStatus >= Self.statusEvery {
                    lastStatus = ContinuousClock.now
                    logger.info("\(statusLine())")
                }
                // Long-poll until the next report is due or the hub has something new.
                let due = ContinuousClock.now + .seconds(interval)
                var generation = env.desiredGeneration
                while ContinuousClock.now < due && !Task.isShuttingDownGracefully {
                    let wait = min(longPollSeconds, Int((due - ContinuousClock.now).components.seconds) + 1)
                    let after = generation
                    let asked = ContinuousClock.now
                    let next = try await cancelWhenGracefulShutdown { try await self.hub.control(after: after, wait: wait) }
                    await housekeeping()
                    // Ops this box holds (key not pinned yet) keep has_signed_ops set: then only an
                    // early answer (the hub woke for a new op) is worth a cycle before the next report.
                    let holding = state.withLock { !$0.holdingNow.isEmpty }
                    let early = ContinuousClock.now - asked < .seconds(max(1, wait - 1))
                    if next.desiredGeneration != generation || (next.hasSignedOps && (!holding || early)) {
                        generation = next.desiredGeneration
                        break
                    }
                }
            } catch is CancellationError {
                break
            } catch {
                let delay = min(Double(maxBackoffSeconds), backoff) * Double.random(in: 0.5...1.5)
                failing = true
                if let hubError = error as? HubClientError, hubError.status == 401 {
                    // Retrying will not help: say what will.
                    logger.error(
                        """
                        the hub refused this host's key (401): it was revoked, or the host was enrolled again elsewhere. \
                        Re-enroll: make a token (POST /api/v1/hosts/\(hostID)/enrollment), set hub.enrollment_token, remove \
                        state_dir/host.json and restart. Retrying in \(Int(delay.rounded())) s
                        """)
                } else {
                    logger.warning("cycle failed: \(error); retrying in \(Int(delay.rounded())) s")
                    // The box does not wait for the hub to keep what was published: guests that
                    // stopped or drifted are put back while the hub is unreachable.
                    if error is HubClientError { await reconcileOffline() }
                }
                backoff *= 2
                try? await Task.sleep(for: .seconds(delay))
            }
        }
        // Bounded: a restore test waiting for a scratch guest's apps must not hold a stop for minutes;
        // whatever still runs is journaled and resumed (or compensated) at the next start.
        await routes?.stopAll()
        if await !queue.drain(upTo: .seconds(30)) {
            logger.notice("stopping with guest operations still running: they are resumed at the next start")
        }
        logger.info("agent stopped")
    }
}
