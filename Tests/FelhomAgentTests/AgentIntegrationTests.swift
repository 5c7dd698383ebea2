import FelhomAPI
import FelhomCore
import FelhomHub
import FelhomHubClient
import FelhomSigning
import FelhomTestSupport
import Foundation
import Hummingbird
import Logging
import PVESimulator
import Proxmox
import SQLKit
import ServiceLifecycle
import Synchronization
import Testing

@testable import FelhomAgent

/// A real hub (SQLite, HTTP on loopback), a simulated Proxmox host (HTTPS, pinned) and the agent,
/// all in this process. Made by ``withAgentWorld(_:_:)``, which stops everything however a test ends.
struct AgentWorld: Sendable {
    let sim: SimHarness
    let hub: RunningHub
    let op: HubClient
    let hostID: String
    let hostKey: Secret
    let pinned: SSHPrivateKey
    let stateDir = NSTemporaryDirectory() + "felhom-agent-\(UUID().uuidString)"

    var store: HubStore { hub.hub.store }
    var hubURL: String { hub.url }

    func agent(
        logger given: Logger? = nil, signersFile: String? = nil, backup: BackupSettings? = nil, credentials: GuestCredentials? = nil,
        restoreTests: RestoreTestSettings? = nil, routes: RouteManager.Settings? = nil, snapshots: VolumeSnapshotSettings? = nil,
        memoryRunner: (any CommandRunner)? = nil, hubURL otherHub: String? = nil, maxBackoffSeconds: Int = 300
    ) async throws -> Agent {
        var logger = given ?? Logger(label: "agent")
        if given == nil { logger.logLevel = .critical }
        return try Agent(
            hostID: hostID, hub: try HubClient(url: otherHub ?? hubURL, key: hostKey, timeout: .seconds(5)), pve: try sim.client(), node: "pve1",
            stateDir: stateDir,
            signers: [PinnedSigner(name: "operator", key: pinned.publicKey)],
            provision: .init(node: "pve1", goldenTemplate: SimSeed.goldenTemplateVolid, storage: "local-lvm", taskTimeout: .seconds(30)),
            longPollSeconds: 1, maxBackoffSeconds: maxBackoffSeconds, logger: logger, signersFile: signersFile, backup: backup,
            credentials: credentials,
            restoreTests: restoreTests, routes: routes, snapshots: snapshots, memoryRunner: memoryRunner)
    }

    func publish(_ guests: [DesiredState.Guest]) async throws {
        _ = try await op.putDesired(hostID: hostID, DesiredState(guests: guests))
        _ = try await op.publishDesired(hostID: hostID)
    }

    /// Queues an op and signs it with `key`; returns the op id.
    func queueSigned(_ opName: String, vmid: Int?, params: [String: JSONValue] = [:], key: SSHPrivateKey) async throws -> String {
        // The hub only accepts registered keys; register this one if it is not yet.
        _ = try? await op.registerOperatorKey(NewOperatorKey(publicKey: key.publicKey.openSSHLine))
        let queued = try await op.createSignedOp(
            NewSignedOp(hostID: hostID, guestID: vmid.map { "\($0)" }, op: opName, params: params, keyID: key.publicKey.fingerprint))
        let signature = try key.sign(message: Array(queued.blob.utf8), namespace: OpVerifier.namespace).armored
        _ = try await op.uploadSignature(opID: queued.id, armored: signature)
        return queued.id
    }

    /// A client with all privileges, for setting the scene (snapshots, data) behind the agent's back.
    func rootPVE() throws -> PVEClient { try sim.rootClient() }
}

/// Runs `body` with a fresh world: simulator (seed adjusted by `adjust`), hub, a customer, a host
/// and a pinned operator key registered on the hub.
func withAgentWorld(
    _ adjust: (inout SimState) -> Void = { _ in }, hub adjustHub: (inout HubConfig) -> Void = { _ in }, _ body: (AgentWorld) async throws -> Void
) async throws {
    try await withSim(adjust) { sim in
        // These tests run cycles back to back, which no agent does (one report per interval, one
        // more after a change): the report limit is raised; a test of the limit sets its own.
        let adjust: (inout HubConfig) -> Void = { c in
            c.rateLimitReportsPerMinute = 600
            c.rateLimitReportsBurst = 600
            adjustHub(&c)
        }
        try await withRunningHub(adjust: adjust) { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let (hostID, hostKey) = try await op.createHost(customerID: customer, name: "box")
            let pinned = SSHPrivateKey.generateEd25519(comment: "pinned")
            _ = try await op.registerOperatorKey(NewOperatorKey(publicKey: pinned.publicKey.openSSHLine))
            try await body(AgentWorld(sim: sim, hub: hub, op: op, hostID: hostID, hostKey: hostKey, pinned: pinned))
        }
    }
}

@Suite struct AgentIntegrationTests {
    let web = DesiredState.Guest(
        vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running, description: "customer apps: photos, passwords")
    let db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)

    @Test func aFailedProvisionIsRolledBackThenRetried() async throws {
        let failingStart: (inout SimState) -> Void = {
            $0.faults.taskFailures["/nodes/pve1/lxc/140/status/start"] = "startup for container '140' failed"
        }
        try await withAgentWorld(failingStart) { w in
            let agent = try await w.agent()
            let new = DesiredState.Guest(vmid: 140, name: "photos", cpu: 1, memoryMB: 512, diskGB: 4, runState: .running)
            try await w.publish([web, db, new])
            try await agent.cycle()
            #expect(agent.status.lastOutcome?.failed == 1)
            #expect(await w.sim.engine.snapshot().containers[140] == nil, "the half-made guest was removed")
            #expect(await !w.sim.engine.snapshot().volumes.contains { $0.vmid == 140 && $0.storage == "local-lvm" }, "no orphan disk")
            let steps = agent.journal.allOperations().filter { $0.entries.first?.data["vmid"] == "140" }.map { $0.entries.map(\.step) }
            #expect(steps == [["begin", "restore_started", "restored", "configured", "compensated"]])
            // Once the fault is gone the next cycle provisions it.
            await w.sim.engine.setFaults(SimFaults())
            try await agent.cycle()
            #expect(await w.sim.engine.snapshot().containers[140]?.running == true)
            #expect(try await w.op.drift(hostID: w.hostID).inSync)
            // The agent reports the generation it applied; the hub shows it.
            let view = try await w.op.host(w.hostID)
            #expect(view.appliedGeneration == view.desiredGeneration && view.appliedGeneration != nil, "\(view)")
        }
    }

    @Test func signedOpsAreVerifiedByTheAgentNotTheHub() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent()
            // db leaves the desired state first: the hub refuses to queue the destroy of a desired guest
            // (the reconciler would rightly provision a fresh, empty one right after).
            try await w.publish([web])
            // Registered on the hub (so the hub accepts the upload) but not pinned on the agent:
            // held, not run and not consumed.
            let stranger = SSHPrivateKey.generateEd25519(comment: "stranger")
            let bad = try await w.queueSigned("guest.destroy", vmid: 101, key: stranger)
            try await agent.cycle()
            let badView = try await w.op.signedOp(bad)
            #expect(badView.status == .delivered, "\(badView)")
            #expect(await w.sim.engine.snapshot().containers[101] != nil)
            // Signed by the pinned key: applied, though the held op is older.
            let good = try await w.queueSigned("guest.destroy", vmid: 101, key: w.pinned)
            try await agent.cycle()
            #expect(try await w.op.signedOp(good).status == .applied)
            #expect(await w.sim.engine.snapshot().containers[101] == nil)
            // The agent reported right after applying it: the hub's view no longer shows 101.
            let shown = try await w.op.drift(hostID: w.hostID).guests.map(\.vmid)
            #expect(!shown.contains(101) && shown.contains(100), "the box as it is after the op, not a poll later: \(shown)")
            // A new agent process on the same state directory refuses a replay of the same bytes.
            let restarted = try await w.agent()
            try await w.store.replaySignedOp(good, as: "sop_replay")
            try await restarted.cycle()
            let replay = try await w.op.signedOp("sop_replay")
            #expect(replay.status == .rejected && replay.reason?.hasPrefix("replay") == true, "\(replay)")
        }
    }

    /// Found by scripts/soak (agent killed -9 at random moments): a kill after the nonce was
    /// recorded but before the journal's `begin` left the op rejected as a replay of itself on
    /// restart, and the guest was never destroyed. The nonce log now remembers which op spent a
    /// nonce: the same op resumes; the same bytes under another id are still a replay.
    @Test func aKillBetweenTheNonceAndTheJournalStillAppliesTheOpOnce() async throws {
        try await withAgentWorld { w in
            let first = try await w.agent()
            try await w.publish([web])
            try await first.cycle()
            let good = try await w.queueSigned("guest.destroy", vmid: 101, key: w.pinned)
            // What the killed process did before dying: verify, which records the nonce for this op.
            let view = try await w.op.signedOp(good)
            let signature = try #require(view.signature)
            let nonces = try FileNonceStore(path: w.stateDir + "/nonces.log")
            let verifier = OpVerifier(signers: [PinnedSigner(name: "operator", key: w.pinned.publicKey)], hostID: w.hostID, nonces: nonces)
            _ = try verifier.verify(blob: Array(view.blob.utf8), signature: signature, owner: good)
            // The restarted agent finishes the op.
            let restarted = try await w.agent()
            try await restarted.cycle()
            let applied = try await w.op.signedOp(good)
            #expect(applied.status == .applied, "\(applied)")
            #expect(await w.sim.engine.snapshot().containers[101] == nil)
            // The same bytes under another id are refused: the nonce is spent by the first op.
            try await w.store.replaySignedOp(good, as: "sop_replay_after_kill")
            try await restarted.cycle()
            let replay = try await w.op.signedOp("sop_replay_after_kill")
            #expect(replay.status == .rejected && replay.reason?.hasPrefix("replay") == true, "\(replay)")
        }
    }

    /// Issue 10 item 8: a compromised hub skips its own check and delivers a validly signed destroy
    /// of a guest that is still desired: the agent refuses it, and the guest and its data stay.
    @Test func theAgentRefusesToDestroyAGuestThatIsStillDesired() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent()
            try await w.publish([web, db])
            try await agent.cycle()
            let blob = try OpBlob.new(
                op: .guestDestroy, hostID: w.hostID, guestID: "101", params: [:], ttl: 600,
                keyID: w.pinned.publicKey.fingerprint
            ).canonicalBytes()
            let sig = try w.pinned.sign(message: blob, namespace: OpVerifier.namespace).armored
            try await w.store.forgeSignedOp(
                id: "sop_forced", hostID: w.hostID, guestID: "101", op: "guest.destroy", blob: String(decoding: blob, as: UTF8.self), signature: sig,
                expiresAt: Int64(Date().timeIntervalSince1970) + 600)
            try await agent.cycle()
            let view = try await w.op.signedOp("sop_forced")
            #expect(view.status == .rejected, "\(view)")
            #expect(view.reason?.contains("still in this host's desired state") == true, "\(view)")
            #expect(await w.sim.engine.snapshot().containers[101] != nil)
            // The cycle went on: desired state is still applied after the refused op.
            #expect(agent.status.lastOutcome != nil)
        }
    }

    /// Issue 12: an op signed by a key the box does not pin yet is held (not consumed); once the
    /// key's line is in signers_file, the agent rereads the file and runs the op. A broken edit of
    /// the file keeps the keys in use.
    @Test func anOpByAKeyNotYetPinnedIsHeldUntilSignersFileListsIt() async throws {
        try await withAgentWorld { w in
            let file = w.stateDir + "-allowed_signers"
            func line(_ k: SSHPrivateKey) -> String { "operator@felhom namespaces=\"felhom-op-v1\" \(k.publicKey.openSSHLine) role=operational\n" }
            try line(w.pinned).write(toFile: file, atomically: true, encoding: .utf8)
            let agent = try await w.agent(signersFile: file)
            try await w.publish([web])
            let newKey = SSHPrivateKey.generateEd25519(comment: "new laptop")
            let id = try await w.queueSigned("guest.destroy", vmid: 101, key: newKey)
            try await agent.cycle()
            try await agent.cycle()
            #expect(try await w.op.signedOp(id).status == .delivered)
            #expect(await w.sim.engine.snapshot().containers[101] != nil)
            let held = try await w.op.events(type: "op_held")
            #expect(held.count == 1, "said once, not once per cycle: \(held)")
            #expect(held.first?.data["key"]?.stringValue == newKey.publicKey.fingerprint)
            // A broken edit is refused; the op stays held and nothing else changes.
            try "this is not an allowed_signers line\n".write(toFile: file, atomically: true, encoding: .utf8)
            try await agent.cycle()
            #expect(try await w.op.signedOp(id).status == .delivered)
            // The operator adds the new key's line: the next cycle runs the op.
            try (line(w.pinned) + line(newKey)).write(toFile: file, atomically: true, encoding: .utf8)
            try await agent.cycle()
            let done = try await w.op.signedOp(id)
            #expect(done.status == .applied, "\(done)")
            #expect(await w.sim.engine.snapshot().containers[101] == nil)
        }
    }

    @Test func droppingAGuestFromDesiredStateNeverDestroysIt() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent()
            try await w.publish([web])  // db (101, tagged felhom) is no longer desired
            try await agent.cycle()
            try await agent.cycle()
            #expect(await w.sim.engine.snapshot().containers[101] != nil)
            let events = try await w.op.events(type: "op_refused")
            #expect(events.count == 1, "one event, not one per cycle")
            #expect(events.first?.data["vmid"]?.lenientInt == 101)
        }
    }

    /// A generation that changes nothing on the box (the guests are already as published) is
    /// shown applied on the hub after the cycle that applied it, not at the next report five
    /// minutes later (found by `scripts/bench-agent-idle 0`, whose wait never ended).
    @Test func aGenerationWithNothingToDoIsReportedAppliedAtOnce() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent()
            try await w.publish([web, db])
            try await agent.cycle()
            try await w.publish([web, db])  // generation 2: the same guests
            try await agent.cycle()
            #expect(agent.status.lastOutcome?.planned.isEmpty == true, "nothing to do")
            let view = try await w.op.host(w.hostID)
            #expect(view.desiredGeneration == 2 && view.appliedGeneration == 2, "\(view)")
        }
    }

    /// The hub refuses an `op_refused` (rate limited): the cycle still ends, the generation counts as
    /// applied, and the event is tried again next cycle (a 429 used to abort the cycle and the
    /// event was never posted again; found by the random kill soak).
    @Test func aRefusedEventDoesNotAbortTheCycleAndIsSaidAgain() async throws {
        let oneEvent: (inout HubConfig) -> Void = { c in
            c.rateLimitEventsPerMinute = 0.001
            c.rateLimitEventsBurst = 1
        }
        try await withAgentWorld(hub: oneEvent) { w in
            let agent = try await w.agent()
            try await w.publish([])  // 100 and 101 (tagged felhom) not desired: two op_refused, room for one
            try await agent.cycle()
            #expect(agent.status.appliedGeneration == 1, "the cycle ended: \(agent.status)")
            #expect(try await w.op.events(type: "op_refused").count == 1)
            try await agent.cycle()  // the other is tried again (and refused again: the bucket is empty)
            #expect(agent.status.appliedGeneration == 1)
            let kept = await w.sim.engine.snapshot().containers
            #expect(kept[100] != nil && kept[101] != nil)
        }
    }

    /// Issue 10 item 4: a signed restore over a running guest stops it first (PVE refuses to
    /// overwrite a running CT), journals each task by UPID, and restores the backup's data.
    @Test func signedRestoreOverARunningGuestStopsItFirst() async throws {
        let runningDBWithABackup: (inout SimState) -> Void = { s in
            s.containers[101]?.running = true
            // A backup of 101 (made from the seed's backup of 100).
            guard var b = s.volumes.first(where: { $0.volid.hasPrefix("pbs-felhom:backup/ct/100/") }) else { return }
            b.volid = "pbs-felhom:backup/ct/101/2026-01-01T02:00:00Z"
            b.vmid = 101
            b.backupConfig = s.containers[101]?.config
            b.capturedData = ["rootfs": "db-rootfs-backup", "mp0": "db-data-backup"]
            s.volumes.append(b)
        }
        try await withAgentWorld(runningDBWithABackup) { w in
            let agent = try await w.agent()
            var running = db
            running.runState = .running
            try await w.publish([web, running])
            try await agent.cycle()
            let id = try await w.queueSigned(
                "guest.restore", vmid: 101, params: ["backup": "pbs-felhom:backup/ct/101/2026-01-01T02:00:00Z"], key: w.pinned)
            try await agent.cycle()
            let view = try await w.op.signedOp(id)
            #expect(view.status == .applied, "\(view)")
            let steps = agent.journal.entries(of: id)
            #expect(steps.map(\.step) == ["begin", "stop_started", "restore_started", "done"])
            let upids: [String] = steps.filter { $0.step.hasSuffix("_started") }.map { $0.data["upid"] ?? "" }
            #expect(upids.count == 2 && upids.allSatisfy { $0.hasPrefix("UPID:pve1:") })
            let snap = await w.sim.engine.snapshot()
            let disks: [SimVolume] = snap.volumes.filter { $0.vmid == 101 && $0.content == "rootdir" }
            let data = Set(disks.compactMap { $0.data })
            #expect(data == ["db-rootfs-backup", "db-data-backup"])
            // The reconciler started it again (desired: running).
            #expect(snap.containers[101]?.running == true)
        }
    }

    /// A restore over a guest whose bulk volume (`backup=0`) is not in any backup would destroy that
    /// volume (PVE removes all old volumes): refused, naming it; nothing is touched.
    @Test func signedRestoreOverAGuestWithABulkVolumeIsRefused() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent()
            try await w.publish([web, db])
            try await agent.cycle()
            let id = try await w.queueSigned(
                "guest.restore", vmid: 100, params: ["backup": "pbs-felhom:backup/ct/100/2026-01-01T02:00:00Z"], key: w.pinned)
            let pending = try await w.op.signedOp(id)
            #expect(pending.volumesNotInBackups?.first?.key == "mp0", "\(pending)")
            try await agent.cycle()
            let view = try await w.op.signedOp(id)
            #expect(view.status == .rejected, "\(view)")
            #expect(view.reason?.contains("mp0 (local-lvm:vm-100-disk-1)") == true, "\(view)")
            let snap = await w.sim.engine.snapshot()
            #expect(snap.containers[100]?.running == true)
            #expect(snap.volumes.contains { $0.volid == "local-lvm:vm-100-disk-1" && $0.data == "web-media" })
        }
    }

    /// An OOM kill in a guest (injected by the simulator into its cgroup's `memory.events`) is said
    /// exactly once, with the guest's cap and the count; a restart of the agent does not repeat it.
    @Test func anOOMKillProducesExactlyOneMemoryLimitExceededEvent() async throws {
        try await withAgentWorld { w in
            let runner = SimCommandRunner(engine: w.sim.engine)
            let agent = try await w.agent(memoryRunner: runner)
            try await w.publish([web, db])
            try await agent.cycle()  // the baseline
            func events() async throws -> [HubEvent] { try await w.op.events(hostID: w.hostID, type: "memory_limit_exceeded") }
            #expect(try await events().isEmpty)
            await w.sim.engine.injectOOMKill(vmid: 100, count: 2)
            try await agent.cycle()
            try await agent.cycle()
            let said = try await events()
            #expect(said.count == 1, "\(said)")
            #expect(said.first?.data["vmid"]?.lenientInt == 100 && said.first?.data["cap_mb"]?.lenientInt == 2048)
            #expect(said.first?.data["count"]?.lenientInt == 2 && said.first?.severity == .warning)
            // Another agent process on the same state: the kill is not said again; a new one is.
            let again = try await w.agent(memoryRunner: runner)
            try await again.cycle()
            #expect(try await events().count == 1)
            await w.sim.engine.injectOOMKill(vmid: 100)
            try await again.cycle()
            #expect(try await events().count == 2)
            // The stopped guest (db) is not read at all: no event, no error.
            #expect(try await events().allSatisfy { $0.data["vmid"]?.lenientInt == 100 })
        }
    }

    /// A signed rollback: the task is journaled by UPID and the snapshot's data is back.
    @Test func signedRollbackIsAppliedAndJournaled() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent()
            try await w.publish([web, db])
            try await agent.cycle()
            let root = try w.rootPVE()
            _ = try await root.waitTask(try await root.createSnapshot(node: "pve1", vmid: 101, name: "pre", description: nil), timeout: .seconds(30))
            await w.sim.engine.writeVolumeData(volid: "local-lvm:vm-101-disk-1", data: "db-data-after-bad-update")
            let id = try await w.queueSigned("guest.rollback", vmid: 101, params: ["snapshot": "pre"], key: w.pinned)
            try await agent.cycle()
            #expect(try await w.op.signedOp(id).status == .applied)
            #expect(agent.journal.entries(of: id).map(\.step) == ["begin", "rollback_started", "done"])
            #expect(await w.sim.engine.snapshot().volumes.first { $0.volid == "local-lvm:vm-101-disk-1" }?.data == "db-data")
        }
    }

    /// A destroyed guest's controller key is revoked on the hub and its token file deleted on the box.
    @Test func destroyingAGuestRevokesItsKeyAndDeletesItsToken() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent()
            let photos = DesiredState.Guest(vmid: 140, name: "photos", cpu: 1, memoryMB: 512, diskGB: 4, runState: .running)
            try await w.publish([web, db, photos])
            try await agent.cycle()
            let tokenPath = w.stateDir + "/guest-tokens/140.token"
            let token = try String(contentsOfFile: tokenPath, encoding: .utf8)
            let guest = try HubClient(url: w.hubURL, key: Secret(token))
            try await guest.postEvent(type: "app_started", severity: .info)  // the key works
            try await w.publish([web, db])
            let id = try await w.queueSigned("guest.destroy", vmid: 140, key: w.pinned)
            try await agent.cycle()
            #expect(try await w.op.signedOp(id).status == .applied)
            #expect(!FileManager.default.fileExists(atPath: tokenPath), "the token file went with the guest")
            let refused = await #expect(throws: HubClientError.self) { try await guest.postEvent(type: "app_started", severity: .info) }
            #expect(refused?.status == 401)
            #expect(try await w.op.events(type: "keys_revoked").contains { $0.data["reason"]?.stringValue == "guest destroyed" })
        }
    }

    /// A host key the hub refuses (revoked, or the box re-enrolled elsewhere) is logged as such,
    /// with what to do — not retried in silence.
    /// Issue 21 (partition): with the hub out of reach the box keeps enforcing the last published
    /// state, also after a restart (it is kept in state_dir), and retries the hub with a growing wait.
    @Test func theBoxKeepsItsLastPublishedStateWhileTheHubIsUnreachable() async throws {
        try await withAgentWorld { w in
            try await w.publish([web])
            try await w.agent().cycle()
            #expect(await w.sim.engine.snapshot().containers[100]?.running == true)
            #expect(FileManager.default.fileExists(atPath: w.stateDir + "/desired-last.json"))
            // The hub is gone (nothing listens on port 1) and the agent restarted; the guest stops.
            let root = try w.rootPVE()
            _ = try await root.waitTask(try await root.stopContainer(node: "pve1", vmid: 100))
            #expect(await w.sim.engine.snapshot().containers[100]?.running == false)
            let lines = LogLines()
            var logger = Logger(label: "agent") { _ in CapturingLogHandler(lines: lines) }
            logger.logLevel = .info
            let offline = try await w.agent(logger: logger, hubURL: "http://127.0.0.1:1", maxBackoffSeconds: 2)
            let running = Task { try await offline.run() }
            for _ in 0..<200 where offline.status.offlineReconciles < 3 { try await Task.sleep(for: .milliseconds(50)) }
            running.cancel()
            _ = try? await running.value
            #expect(await w.sim.engine.snapshot().containers[100]?.running == true, "started again without the hub")
            #expect(offline.status.offlineReconciles >= 3, "\(lines.all)")
            #expect(
                lines.all.contains { $0.contains("the hub is unreachable: reconciled the last published state (generation 1): 1 done, 0 failed") },
                "\(lines.all)"
            )
            let waits = lines.all.compactMap { line in line.firstMatch(of: /retrying in (\d+) s/).map { Int($0.1) ?? -1 } }
            #expect(waits.count >= 3 && waits.allSatisfy { (0...3).contains($0) }, "jittered and capped by max_backoff_seconds: \(waits)")
            // A blocked host forgets it: nothing changes on the box, with or without the hub.
            _ = try await w.op.send("POST", "/api/v1/hosts/\(w.hostID)/block", as: JSONValue.self)
            try await w.agent().cycle()
            #expect(!FileManager.default.fileExists(atPath: w.stateDir + "/desired-last.json"))
        }
    }

    /// A kept state that does not decode (torn by a bad disk, edited by hand, or hostile) is ignored
    /// with a warning naming the file: the offline agent changes nothing on the box.
    @Test func aCorruptKeptDesiredStateIsIgnoredWithAWarning() async throws {
        try await withAgentWorld { w in
            try await w.publish([web])
            try await w.agent().cycle()
            let root = try w.rootPVE()
            _ = try await root.waitTask(try await root.stopContainer(node: "pve1", vmid: 100))
            let path = w.stateDir + "/desired-last.json"
            let bad: [String] = [
                "{\"generation\": 3, \"spec\": {\"guests\": [{\"vmid\": 100",  // torn write
                "{\"generation\": 3}",  // no spec
                "{\"generation\": 3, \"spec\": {\"guests\": [{\"vmid\": -1, \"name\": \"../x\"}]}}",  // invalid guest
                "\u{00}\u{FF}not json",
            ]
            for contents in bad {
                try contents.write(toFile: path, atomically: true, encoding: .utf8)
                let lines = LogLines()
                var logger = Logger(label: "agent") { _ in CapturingLogHandler(lines: lines) }
                logger.logLevel = .info
                let offline = try await w.agent(logger: logger, hubURL: "http://127.0.0.1:1", maxBackoffSeconds: 1)
                let running = Task { try await offline.run() }
                for _ in 0..<200 where lines.all.filter({ $0.contains("ignoring \(path)") }).count < 2 {
                    try await Task.sleep(for: .milliseconds(50))
                }
                running.cancel()
                _ = try? await running.value
                #expect(lines.all.filter { $0.contains("warning: ignoring \(path)") }.count >= 2, "\(contents): \(lines.all)")
                #expect(offline.status.offlineReconciles == 0, "\(contents)")
                #expect(await w.sim.engine.snapshot().containers[100]?.running == false, "nothing changed on the box: \(contents)")
                #expect(try String(contentsOfFile: path, encoding: .utf8) == contents, "the file is left for the operator to see")
            }
        }
    }

    @Test func aRefusedHostKeyIsLoggedWithWhatToDo() async throws {
        try await withAgentWorld { w in
            let lines = LogLines()
            var logger = Logger(label: "agent") { _ in CapturingLogHandler(lines: lines) }
            logger.logLevel = .info
            let agent = try await w.agent(logger: logger)
            _ = try await w.op.send("DELETE", "/api/v1/keys/\(w.hostID)", as: Revoked.self)
            let running = Task { try await agent.run() }
            for _ in 0..<100 where !lines.all.contains(where: { $0.contains("re-enroll") || $0.contains("Re-enroll") }) {
                try await Task.sleep(for: .milliseconds(50))
            }
            running.cancel()
            _ = try? await running.value
            let refused = lines.all.first { $0.contains("refused this host's key (401)") }
            #expect(refused?.contains("POST /api/v1/hosts/\(w.hostID)/enrollment") == true, "\(lines.all)")
        }
    }
}

/// Log lines captured by a test.
final class LogLines: Sendable {
    private let store = Mutex<[String]>([])
    func append(_ line: String) { store.withLock { $0.append(line) } }
    var all: [String] { store.withLock { $0 } }
}

struct CapturingLogHandler: LogHandler {
    let lines: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { lines.append("\(event.level): \(event.message)") }
}
