import ArgumentParser
import FelhomAPI
import FelhomAgent
import FelhomCore
import FelhomHTTP
import FelhomHub
import FelhomHubClient
import FelhomSigning
import Foundation
import Hummingbird
import Logging
import NIOCore
import PVESimulator
import Proxmox
import SQLKit
import ServiceLifecycle
import Synchronization

/// `felhom demo`: the whole system on one machine — an embedded hub on SQLite, a simulated Proxmox
/// VE host and a real agent — walking the life cycle a newcomer should see.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run hub + simulated Proxmox host + agent and walk the life cycle (enroll, provision, sign, apply).",
        discussion: """
            Starts an embedded hub (SQLite in --dir), a simulated Proxmox VE host and an agent; enrolls the host; \
            publishes two guests and shows them provisioned by restore; shows an unsigned destroy refused, a signed \
            destroy applied and a replayed signed op rejected. Then keeps running until Ctrl-C (unless --scenario-only).
            """)

    @Option(name: .long, help: "Directory for the demo's state (default: a fresh temporary directory).") var dir: String?
    @Flag(name: .customLong("scenario-only"), help: "Exit after the scenario (for CI).") var scenarioOnly = false
    @Option(name: .long, help: "Write a JSON summary of what was observed to this file.") var report: String?
    @Option(
        name: .customLong("stack-runtime"),
        help: "The controller's stacks: auto (Docker when it runs here with the demo image, else simulated), docker, simulated.")
    var stackRuntime: String = "auto"
    @Option(
        name: .long,
        help: "full (the whole life cycle, the default) or dr (enroll, provision, back up, escrow, storage, then lose the box and recover it).")
    var scenario: String = "full"

    func validate() throws {
        guard ["auto", "docker", "simulated"].contains(stackRuntime) else { throw ValidationError("--stack-runtime is auto, docker or simulated") }
        guard ["full", "dr"].contains(scenario) else { throw ValidationError("--scenario is full or dr") }
    }

    struct Observed: Codable {
        var converged = false
        var provisionedByRestore = false
        var signedOpApplied = false
        var unsignedDestroyRefused = false
        var replayRejected = false
        var controller = false
        var controllerRuntime = ""
        var backupEncrypted = false
        var restoreTestPassed = false
        var unencryptedBackupRefused = false
        var storageManifestReported = false
        var bulkRuleEnforced = false
        var escrowVerified = false
        var drRecovered = false
        var scenario = "full"
        enum CodingKeys: String, CodingKey {
            case converged
            case provisionedByRestore = "provisioned_by_restore"
            case signedOpApplied = "signed_op_applied"
            case unsignedDestroyRefused = "unsigned_destroy_refused"
            case replayRejected = "replay_rejected"
            case controller
            case controllerRuntime = "controller_runtime"
            case backupEncrypted = "backup_encrypted"
            case restoreTestPassed = "restore_test_passed"
            case unencryptedBackupRefused = "unencrypted_backup_refused"
            case storageManifestReported = "storage_manifest_reported"
            case bulkRuleEnforced = "bulk_rule_enforced"
            case escrowVerified = "escrow_verified"
            case drRecovered = "dr_recovered"
            case scenario
        }
        var all: Bool {
            let common =
                converged && provisionedByRestore && backupEncrypted && restoreTestPassed && unencryptedBackupRefused && storageManifestReported
                && bulkRuleEnforced && escrowVerified && drRecovered
            return scenario == "dr" ? common : common && signedOpApplied && unsignedDestroyRefused && replayRejected && controller
        }
    }

    func run() async throws {
        let root = dir ?? NSTemporaryDirectory() + "felhom-demo-\(ProcessInfo.processInfo.processIdentifier)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var seen = Observed()
        seen.scenario = scenario
        let started = ContinuousClock.now
        func step(_ text: String) { say("\n▶ \(text)") }
        let info: @Sendable (String) -> Void = { say("  \($0)") }

        say("felhom demo — state in \(root)")

        // 1. A simulated Proxmox VE host.
        step("Starting a simulated Proxmox VE host")
        var simOptions = PVESimulator.Options()
        simOptions.port = 0
        simOptions.stateDirectory = URL(fileURLWithPath: root + "/pve-sim")
        // Its PBS datastore is shared with the replacement box of the disaster-recovery step.
        let datastore = SimPBSDatastore(name: "felhom", path: URL(fileURLWithPath: root + "/pbs-datastore.json"))
        simOptions.sharedPBS = datastore
        let sim = try await PVESimulator.start(simOptions)
        // A fresh box: its PBS storage has no encryption key until escrow init gives it one.
        if var pbs = await sim.engine.snapshot().storages.first(where: { $0.id == "pbs-felhom" }), pbs.encryptionKeyFingerprint != nil,
            !FileManager.default.fileExists(atPath: root + "/agent/pbs-felhom.enc")
        {
            pbs.encryptionKeyFingerprint = nil
            await sim.engine.setStorage(pbs)
        }
        guard let fp = sim.fingerprint, let agentSecret = sim.secret(for: SimSeed.agentTokenID) else {
            throw SimpleError("the simulator started without TLS or without the agent token")
        }
        info("https://127.0.0.1:\(sim.port)/api2/json (certificate pinned by SHA-256)")

        // 2. The hub, embedded, on SQLite.
        step("Starting the hub (SQLite)")
        let operatorKey = "demo-operator-" + UUID().uuidString.lowercased()
        var hubConfig = HubConfig()
        hubConfig.listen = "127.0.0.1:0"
        hubConfig.database = "sqlite:\(root)/hub.sqlite"
        hubConfig.operatorKey = Secret(operatorKey)
        hubConfig.secretsKey = Secret(Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())
        hubConfig.checkIntervalSeconds = 5  // liveness shows within seconds in the demo (production: 60 s)
        hubConfig.logLevel = "critical"  // the demo prints its own progress; server internals stay out of it
        let portBox = Mutex<Int?>(nil)
        var quiet = Logger(label: "felhom.demo.hub")
        quiet.logLevel = .critical
        let built = try await buildApplication(
            config: try hubConfig.resolve(),
            dependencies: .init(onServerRunning: { port in portBox.withLock { $0 = port } }, logger: quiet))
        let hub = built.hub
        let hubGroup = ServiceGroup(services: [built.application], gracefulShutdownSignals: scenarioOnly ? [] : [.sigint, .sigterm], logger: quiet)
        let hubTask = Task { try await hubGroup.run() }
        var hubPort: Int?
        for _ in 0..<100 where hubPort == nil {
            try await Task.sleep(for: .milliseconds(50))
            hubPort = portBox.withLock { $0 }
        }
        guard let hubPort else { throw SimpleError("the hub did not start listening") }
        let hubURL = "http://127.0.0.1:\(hubPort)"
        info("\(hubURL)  (API: \(hubURL)/openapi.yaml)")
        let op = try HubClient(url: hubURL, key: Secret(operatorKey))

        // 3. Operator set-up: a customer, a host, an enrollment token, the operator's signing key.
        step("Enrolling a box")
        let customer = try await op.createCustomer(
            NewCustomer(name: "Kiss Anna", email: "anna@example.hu", domain: "kiss.example.hu", language: "hu"))
        let host = try await op.createHost(customerID: customer, name: "nappali").id
        let token = try await op.enrollmentToken(hostID: host).token
        let signingKey = SSHPrivateKey.generateEd25519(comment: "demo-operator")
        if let text = signingKey.openSSHText() {
            _ = FileManager.default.createFile(atPath: root + "/operator_ed25519", contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        }
        _ = try await op.registerOperatorKey(NewOperatorKey(publicKey: signingKey.publicKey.openSSHLine + " demo-operator"))
        let signers = root + "/allowed_signers"
        try "operator@felhom \(signingKey.publicKey.openSSHLine) role=operational\n".write(toFile: signers, atomically: true, encoding: .utf8)
        info("customer Kiss Anna, host \"nappali\" (\(host)); demo operator key registered and pinned on the agent")

        // The box's PBS key, made on the box (escrow init gives it to the storage and wraps it below).
        let keyFile = root + "/agent/pbs-felhom.enc"
        try FileManager.default.createDirectory(atPath: root + "/agent", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if !FileManager.default.fileExists(atPath: keyFile) {
            _ = FileManager.default.createFile(atPath: keyFile, contents: PBSKey.generate().json, attributes: [.posixPermissions: 0o600])
        }
        let boxKey = try PBSKey(file: keyFile).fingerprint
        // 4. The agent, configured like a real one (file-style settings), enrolls with the token.
        var agentLogger = Logger(label: "felhom.agent") { _ in DemoLogHandler(prefix: "  agent: ") }
        agentLogger.logLevel = .info
        let cfg = try AgentConfig.load(
            file: nil,
            environment: [
                "FELHOM_AGENT_PVE_HOST": "127.0.0.1", "FELHOM_AGENT_PVE_PORT": String(sim.port), "FELHOM_AGENT_PVE_NODE": "pve1",
                "FELHOM_AGENT_PVE_TOKEN_ID": SimSeed.agentTokenID, "FELHOM_AGENT_PVE_TOKEN_SECRET": agentSecret,
                "FELHOM_AGENT_PVE_FINGERPRINT": fp, "FELHOM_AGENT_HUB_URL": hubURL, "FELHOM_AGENT_HUB_ENROLLMENT_TOKEN": token,
                "FELHOM_AGENT_HUB_LONG_POLL_SECONDS": "2", "FELHOM_AGENT_STATE_DIR": root + "/agent",
                "FELHOM_AGENT_SIGNERS_FILE": signers, "FELHOM_AGENT_PROVISION_GOLDEN_TEMPLATE": SimSeed.goldenTemplateVolid,
                // The box's PBS key (the simulator's pbs-felhom storage is set up with it); the demo's
                // guests have no controller calling the local API, so backups are crash-consistent.
                "FELHOM_AGENT_BACKUP_KEY_FILE": keyFile, "FELHOM_AGENT_BACKUP_APP_BOUND_SECONDS": "0",
            ])
        // The fenced root commands (pct exec into a scratch guest) as the simulated host answers them.
        let agent = try await Agent.make(config: cfg, logger: agentLogger, commandRunner: SimCommandRunner(engine: sim.engine))
        // Escrow on the box: the key goes to the PBS storage, the hub gets it wrapped under a recovery
        // code shown only here (the customer writes it on the recovery sheet).
        step("Escrow: the PBS key to the storage, a wrapped copy to the hub, the recovery code shown once (here)")
        let escrow = try await Agent.escrowKeeper(config: cfg, logger: agentLogger, commandRunner: SimCommandRunner(engine: sim.engine))
        let escrowOutcome = try await escrow.initialize()
        guard let recoveryCode = escrowOutcome.code else { throw SimpleError("escrow init made no recovery code (was the demo dir reused?)") }
        info(
            "storage pbs-felhom encrypts with key \(String(escrowOutcome.fingerprint.prefix(23)))…; recovery code for the sheet: \(recoveryCode.printed)"
        )
        var agentGroup = ServiceGroup(services: [agent], gracefulShutdownSignals: [], logger: quiet)
        var agentTask = Task { [agentGroup] in try await agentGroup.run() }

        // 5. Desired state: the two guests already on the box, plus two new ones.
        step("Publishing desired state: 2 existing guests + 2 new ones (photos, vault)")
        var desired = DesiredState(
            guests: [
                .init(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running, description: "customer apps: photos, passwords"),
                .init(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped),
                .init(vmid: 120, name: "photos", cpu: 1, memoryMB: 1024, diskGB: 4, runState: .running, description: "Immich"),
                .init(vmid: 121, name: "vault", cpu: 0.5, memoryMB: 512, diskGB: 4, runState: .running, description: "Vaultwarden"),
            ], versions: ["agent": Agent.version])
        // New guests get the golden template's 4 GiB root disk (growing disks is not built yet).
        try await publish(desired, op: op, host: host)
        seen.converged = try await waitUntil(seconds: 60) {
            try await op.drift(hostID: host).inSync
        }
        let state = await sim.engine.snapshot()
        seen.provisionedByRestore = [120, 121].allSatisfy { vmid in
            state.tasks.contains { $0.type == "vzrestore" && $0.id == "\(vmid)" && $0.exitStatus == "OK" }
                && state.containers[vmid]?.config["features"] == "keyctl=1,nesting=1" && state.containers[vmid]?.running == true
        }
        if seen.converged {
            info("hub drift view: every guest in sync")
        } else {
            info("NOT converged within 60 s; the hub's drift view:")
            for guest in try await op.drift(hostID: host).guests where guest.state != .inSync {
                let differences = guest.differences.map { "\($0.field): \($0.desired) → \($0.actual)" }.joined(separator: ", ")
                info("  \(guest.vmid) \(guest.name): \(guest.state.rawValue) \(differences)")
            }
        }
        info(
            seen.provisionedByRestore
                ? "simulator: 120 and 121 were created by vzrestore of the golden template and are running"
                : "simulator does NOT show 120/121 restored and running")

        var demoController: DemoController?
        if scenario == "full" {
            // 6. Removing a guest from desired state does not destroy it: that needs a signature.
            step("Removing vault (121) from desired state — without a signature")
            desired.guests.removeAll { $0.vmid == 121 }
            try await publish(desired, op: op, host: host)
            let refusedEvent = try await waitUntil(seconds: 30) {
                let events = try await op.events(hostID: host, type: "op_refused")
                return events.contains { $0.data["vmid"]?.lenientInt == 121 }
            }
            let stillThere = await sim.engine.snapshot().containers[121] != nil
            seen.unsignedDestroyRefused = refusedEvent && stillThere
            info(
                seen.unsignedDestroyRefused ? "refused: guest 121 still exists; the agent reported op_refused to the hub" : "NOT refused as expected")

            // 7. The operator queues a destroy and signs it.
            step("Queueing guest.destroy for 121 and signing it with the operator key")
            let queued = try await op.createSignedOp(NewSignedOp(hostID: host, guestID: "121", op: "guest.destroy"))
            let opID = queued.id
            info(queued.summary)
            let blob = Array(queued.blob.utf8)
            let signature = try signingKey.sign(message: blob, namespace: OpVerifier.namespace).armored
            _ = try await op.uploadSignature(opID: opID, armored: signature)
            let applied = try await waitUntil(seconds: 30) {
                try await op.signedOp(opID).status == .applied
            }
            let gone = await sim.engine.snapshot().containers[121] == nil
            seen.signedOpApplied = applied && gone
            info(seen.signedOpApplied ? "applied: the agent verified the signature and destroyed 121" : "NOT applied as expected")

            // 8. A compromised hub replays the signed op: the agent's nonce store refuses it.
            step("Replaying the same signed op (as a compromised hub would)")
            let replayID = "sop_replay_demo"
            try await hub.store.replaySignedOp(opID, as: replayID)
            let rejected = try await waitUntil(seconds: 30) {
                let replayed = try await op.signedOp(replayID)
                return replayed.status == .rejected && (replayed.reason ?? "").hasPrefix("replay")
            }
            seen.replayRejected = rejected
            info(rejected ? "rejected by the agent: replay (nonce already used)" : "NOT rejected as expected")

            // 9. A controller in the guest: stacks, watchdog, secrets rotation, report.
            step("A controller in guest photos: app stacks, watchdog, secret bundle rotation, guest report")
            let controllerDemo = DemoController(root: root, op: op, hubURL: hubURL, hostID: host, mode: stackRuntime, info: info)
            demoController = controllerDemo
            do {
                let outcome = try await controllerDemo.run()
                seen.controller = outcome.all
                seen.controllerRuntime = outcome.runtime
            } catch {
                info("the controller part FAILED: \(error)")
            }
            if seen.controllerRuntime == "docker" && scenarioOnly { await demoController?.cleanUp() }
        }

        // 10. Backups: the storage policy makes the running guests due; they go to the encrypted
        // PBS storage under the box's key; without the key on the storage nothing is backed up.
        step("Backups: storage policy published; encrypted backups to PBS (pbs-felhom), then restore tests")
        // What the guests' controllers would answer `stacks list --json` (inside the simulated guests;
        // a backup captures it and a restore test reads it back from the scratch guest).
        for (vmid, app) in [(100, "passwords"), (101, "postgres"), (120, "photos"), (121, "vault")] {
            await sim.engine.setAppHealth(
                vmid: vmid, json: #"[{"name":"\#(app)","state":"running","protected":false,"services":[{"name":"app","state":"running"}]}]"#)
        }
        desired.storagePolicy.backupStorage = "pbs-felhom"
        desired.storagePolicy.backupHour = 0
        try await publish(desired, op: op, host: host)
        let running = desired.guests.filter { $0.runState == .running }.map(\.vmid)
        var completed: [HubEvent] = []
        _ = try await waitUntil(seconds: 60) {
            completed = try await op.events(hostID: host, type: "backup_completed")
            return Set(completed.compactMap { $0.data["vmid"]?.lenientInt.map { Int($0) } }).isSuperset(of: running)
        }
        seen.backupEncrypted =
            !completed.isEmpty && Set(completed.compactMap { $0.data["vmid"]?.lenientInt.map { Int($0) } }).isSuperset(of: running)
            && completed.allSatisfy { PBSKey.normalized($0.data["encrypted"]?.stringValue ?? "") == PBSKey.normalized(boxKey) }
        for e in completed.sorted(by: { ($0.data["vmid"]?.lenientInt ?? 0) < ($1.data["vmid"]?.lenientInt ?? 0) }) {
            info(
                "backup_completed: guest \(e.data["vmid"]?.lenientInt ?? 0) → \(e.data["volid"]?.stringValue ?? "?") (encrypted, key \(String(boxKey.prefix(23))))"
            )
        }
        if !seen.backupEncrypted { info("backups did NOT all complete encrypted under the box's key") }
        var passedTests: [HubEvent] = []
        _ = try await waitUntil(seconds: 90) {
            passedTests = try await op.events(hostID: host, type: "restore_test_passed")
            return Set(passedTests.compactMap { $0.data["vmid"]?.lenientInt.map { Int($0) } }).isSuperset(of: running)
        }
        seen.restoreTestPassed = Set(passedTests.compactMap { $0.data["vmid"]?.lenientInt.map { Int($0) } }).isSuperset(of: running)
        for e in passedTests {
            let restore = e.data["restore_seconds"]?.lenientDouble ?? 0
            let healthy = e.data["healthy_seconds"]?.lenientDouble ?? 0
            info(
                "restore_test_passed: guest \(e.data["vmid"]?.lenientInt ?? 0) restored into an isolated scratch guest in \(restore) s, apps healthy \(healthy) s later; scratch guest destroyed"
            )
        }
        if !seen.restoreTestPassed { info("restore tests did NOT all pass") }
        // The stopped guest is not backed up on the schedule: the operator asks for it now.
        let asked = try await op.requestNow(hostID: host, kind: .backup, vmid: 101)
        info("operator request \(asked.id): back up db (101) now")
        let dbBackedUp = try await waitUntil(seconds: 60) {
            try await op.events(hostID: host, type: "backup_completed").contains { $0.data["vmid"]?.lenientInt == 101 }
        }
        info(dbBackedUp ? "backup_completed: guest 101 (asked for by the operator)" : "guest 101 was NOT backed up")
        step("Removing the encryption key from the PBS storage (as a careless admin might): the next backup is refused")
        if var pbs = await sim.engine.snapshot().storages.first(where: { $0.id == "pbs-felhom" }), let backups = agent.backups {
            pbs.encryptionKeyFingerprint = nil
            await sim.engine.setStorage(pbs)
            backups.markDue([100], window: "demo-without-key", storage: "pbs-felhom")
            backups.runOverdue()
            await backups.drain()
            let refused = backups.lastResults[100]?.failure?.code == .encryptionKeyMissing
            let failedEvent = try await waitUntil(seconds: 30) {
                try await op.events(hostID: host, type: "backup_failed").contains { $0.data["reason"] == "encryption_key_missing" }
            }
            seen.unencryptedBackupRefused = refused && failedEvent
            info(
                seen.unencryptedBackupRefused
                    ? "refused: backup_failed (encryption_key_missing) reported to the hub; nothing stored unencrypted"
                    : "NOT refused as expected")
            pbs.encryptionKeyFingerprint = boxKey
            await sim.engine.setStorage(pbs)
        }

        // 11. The storage manifest and the bulk-volume rule.
        step("A USB disk is plugged in: the box reports it (unassigned); a desired state breaking the bulk rule is refused")
        await sim.engine.attachDisk(SimDisk(device: "/dev/sdb1", uuid: "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809", label: "MEDIA", sizeBytes: 2 << 40))
        seen.storageManifestReported = try await waitUntil(seconds: 60) {
            try await op.events(hostID: host, type: "storage_detected").contains { $0.data["uuid"] == "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809" }
        }
        info(
            seen.storageManifestReported
                ? "storage_detected: disk 1b2c3d4e-… (MEDIA, 2 TiB), unassigned until a policy names it" : "the disk was NOT reported")
        var withDisk = desired
        withDisk.storage = [.init(uuid: "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809", label: "Media", role: .bulk)]
        _ = try await op.putDesired(hostID: host, withDisk)
        _ = try await op.publishDesired(hostID: host)
        let attached = try await waitUntil(seconds: 60) { try await !op.events(hostID: host, type: "storage_attached").isEmpty }
        info(
            attached
                ? "policy published (Media, bulk): mounted by UUID at /mnt/felhom/media-1b2c3d4e; Proxmox storage felhom-1b2c3d4e added"
                : "the assigned disk was NOT attached")
        seen.storageManifestReported = seen.storageManifestReported && attached
        desired = withDisk
        var bulky = desired
        bulky.guests[0].mountPoints = [.init(key: "mp0", path: "/srv/media", sizeGB: 800, backup: true, bulk: false)]
        do {
            _ = try await op.putDesired(hostID: host, bulky)
            info("the hub ACCEPTED an 800 GiB media volume inside every backup")
        } catch {
            seen.bulkRuleEnforced = "\(error)".contains("bulk")
            info("refused by the hub: \(String("\(error)".prefix(160)))")
        }
        seen.escrowVerified = try await waitUntil(seconds: 60) { try await !op.events(hostID: host, type: "escrow_verified").isEmpty }
        info(seen.escrowVerified ? "escrow_verified: the box opened the hub's copy of its key (the drill)" : "the escrow drill did NOT verify")

        // 12. The box is lost; a new one is recovered from the backups with the recovery code.
        step("The box is lost. A replacement box enrolls as the same host and is recovered from its backups with the recovery code")
        await agentGroup.triggerGracefulShutdown()
        _ = try? await agentTask.value
        info("box A's agent stopped (the box is gone)")
        var seedB = SimSeed.defaultState(now: Date())
        for vmid in desired.guests.map(\.vmid) {
            seedB.containers[vmid] = nil
            seedB.volumes.removeAll { $0.vmid == vmid && $0.content == "rootdir" }
        }
        seedB.volumes.removeAll { $0.storage == "pbs-felhom" }
        if let i = seedB.storages.firstIndex(where: { $0.id == "pbs-felhom" }) { seedB.storages[i].encryptionKeyFingerprint = nil }
        var optionsB = PVESimulator.Options()
        optionsB.port = 0
        optionsB.seed = seedB
        optionsB.sharedPBS = datastore
        let simB = try await PVESimulator.start(optionsB)
        guard let fpB = simB.fingerprint, let secretB = simB.secret(for: SimSeed.agentTokenID) else {
            throw SimpleError("the replacement simulator started without TLS or without the agent token")
        }
        // A recovery enrollment token: the new box holds back provisioning until it is recovered.
        let tokenB = try await op.enrollmentToken(hostID: host, recovery: true).token
        let cfgB = try AgentConfig.load(
            file: nil,
            environment: [
                "FELHOM_AGENT_PVE_HOST": "127.0.0.1", "FELHOM_AGENT_PVE_PORT": String(simB.port), "FELHOM_AGENT_PVE_NODE": "pve1",
                "FELHOM_AGENT_PVE_TOKEN_ID": SimSeed.agentTokenID, "FELHOM_AGENT_PVE_TOKEN_SECRET": secretB, "FELHOM_AGENT_PVE_FINGERPRINT": fpB,
                "FELHOM_AGENT_HUB_URL": hubURL, "FELHOM_AGENT_HUB_ENROLLMENT_TOKEN": tokenB, "FELHOM_AGENT_HUB_LONG_POLL_SECONDS": "2",
                "FELHOM_AGENT_STATE_DIR": root + "/agent-b", "FELHOM_AGENT_SIGNERS_FILE": signers,
                "FELHOM_AGENT_PROVISION_GOLDEN_TEMPLATE": SimSeed.goldenTemplateVolid,
                "FELHOM_AGENT_BACKUP_KEY_FILE": root + "/agent-b/pbs-felhom.enc",
                "FELHOM_AGENT_BACKUP_APP_BOUND_SECONDS": "0",
            ])
        info("replacement box: a fresh simulated host on the same PBS datastore; enrolling as \(host)")
        let recovery = try await Agent.disasterRecovery(config: cfgB, logger: agentLogger, commandRunner: SimCommandRunner(engine: simB.engine))
        let drReport = try await recovery.run(code: recoveryCode)
        for g in drReport.guests {
            info("\(g.vmid) \(g.name): \(g.status.rawValue)\(g.volid.map { " from \($0)" } ?? "")\(g.reason.map { " — \($0)" } ?? "")")
        }
        // The new box's agent service starts now (before the recovery it would only report: a recovery
        // enrollment holds back provisioning, so no guest is built empty over its backups).
        let agentB = try await Agent.make(config: cfgB, logger: agentLogger, commandRunner: SimCommandRunner(engine: simB.engine))
        agentGroup = ServiceGroup(services: [agentB], gracefulShutdownSignals: [], logger: quiet)
        agentTask = Task { [agentGroup] in try await agentGroup.run() }
        let recoveredInSync = try await waitUntil(seconds: 60) { try await op.drift(hostID: host).inSync }
        let drEvent = try await !op.events(hostID: host, type: "dr_recovered").isEmpty
        seen.drRecovered = drReport.complete && recoveredInSync && drEvent
        info(
            seen.drRecovered
                ? "recovered: every guest restored on the new box from the encrypted backups; the hub's drift view is in sync"
                : "the recovery was NOT complete")

        // Summary.
        let elapsed = ContinuousClock.now - started
        say("\nScenario finished in \(elapsed.components.seconds) s.")
        if let report {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(seen).write(to: URL(fileURLWithPath: report))
            info("summary written to \(report)")
        }
        say(seen.all ? "demo finished: everything worked." : "demo finished with FAILURES (see above).")
        if !scenarioOnly {
            _ = FileManager.default.createFile(
                atPath: root + "/operator-key.txt", contents: Data(operatorKey.utf8), attributes: [.posixPermissions: 0o600])
            say("\nDashboard: \(hubURL)/  — sign in with the operator key in \(root)/operator-key.txt")
            say("Hub API:   \(hubURL)/api/v1 (see \(hubURL)/openapi.yaml); sign ops with: felhom sign --hub \(hubURL) --key \(root)/operator_ed25519")
            say("Everything keeps running; press Ctrl-C to stop.")
            _ = try? await hubTask.value
            if seen.controllerRuntime == "docker" { await demoController?.cleanUp() }
        }
        // The new box's first backups and restore tests run beside its loop: let them end and report
        // before the agent and then the hub stop, so nothing is cut off or connects to a hub going down.
        let vmids = Set(desired.guests.map(\.vmid)).union([100, 101])
        for _ in 0..<30 {
            await agentB.backups?.drain()
            await agentB.restoreTests?.drain()
            try? await Task.sleep(for: .seconds(2))  // a cycle may make more due
            if !vmids.contains(where: { agentB.backups?.awaitingBackup(vmid: $0) == true }) { break }
        }
        await agentB.restoreTests?.drain()
        await agentGroup.triggerGracefulShutdown()
        _ = try? await agentTask.value
        await hubGroup.triggerGracefulShutdown()
        _ = try? await hubTask.value  // the store closes with the hub's services
        await sim.shutdown()
        await simB.shutdown()
        if !seen.all { throw ExitCode(1) }
    }

    func publish(_ desired: DesiredState, op: HubClient, host: String) async throws {
        _ = try await op.putDesired(hostID: host, desired)
        let generation = try await op.publishDesired(hostID: host)
        say("  published generation \(generation)")
    }

    /// Polls `check` until it holds or `seconds` pass. A connection that breaks under the load of
    /// a 2-core demo (`transport`: the hub or the box closed it) is tried again; it is thrown only
    /// when it is still failing at the deadline.
    func waitUntil(seconds: Int, _ check: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var lastTransportError: (any Error)?
        while ContinuousClock.now < deadline {
            do {
                if try await check() { return true }
                lastTransportError = nil
            } catch let error as HTTPClientError where error.code == .transport {
                lastTransportError = error
            } catch let error as HubClientError where error.code == "transport" {
                lastTransportError = error
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        if let lastTransportError { throw lastTransportError }
        return false
    }
}

/// Prints log messages as short indented lines (no metadata, no stack traces).
struct DemoLogHandler: LogHandler {
    let prefix: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        say(prefix + "\(event.message)")
    }
}

/// Writes a line at once (unbuffered), so progress shows also when the output goes to a pipe.
func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
