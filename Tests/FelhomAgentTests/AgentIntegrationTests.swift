import FelhomCore
import FelhomHub
import FelhomHubClient
import FelhomSigning
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
/// all in this process.
final class AgentWorld: Sendable {
    let sim: PVESimulator.Running
    let store: HubStore
    let group: ServiceGroup
    let hubURL: String
    let op: HubClient
    let hostID: String
    let hostKey: String
    let pinned = SSHPrivateKey.generateEd25519(comment: "pinned")
    let stateDir = NSTemporaryDirectory() + "felhom-agent-\(UUID().uuidString)"
    static let operatorKey = "agent-test-operator-key-0123456789"

    init(adjust: (inout SimState) -> Void = { _ in }) async throws {
        var state = SimSeed.defaultState()
        state.settings.taskDurations = ["default": 0.05]
        adjust(&state)
        var options = PVESimulator.Options()
        options.port = 0
        options.seed = state
        sim = try await PVESimulator.start(options)
        store = try await HubStore.open(url: "sqlite:" + NSTemporaryDirectory() + "felhom-agent-hub-\(UUID().uuidString).sqlite")
        let hub = Hub(store: store, operatorKey: Self.operatorKey)
        let port = Mutex<Int?>(nil)
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let app = Application(router: HubAPI.router(hub: hub), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { ch in port.withLock { $0 = ch.localAddress?.port } }, logger: quiet)
        group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: quiet)
        let g = group
        Task { try await g.run() }
        var p: Int?
        for _ in 0..<200 where p == nil {
            try await Task.sleep(for: .milliseconds(20))
            p = port.withLock { $0 }
        }
        hubURL = "http://127.0.0.1:\(p ?? 0)"
        op = try HubClient(url: hubURL, key: Secret(Self.operatorKey))
        let c = try await op.json("POST", "/api/v1/customers", body: ["name": "A", "email": "a@example.hu", "domain": "a.example.hu"])
        let h = try await op.json("POST", "/api/v1/hosts", body: ["customer_id": c["id"] ?? .null, "name": "box"])
        hostID = h["id"]?.stringValue ?? ""
        hostKey = h["api_key"]?.stringValue ?? ""
        _ = try await op.json("POST", "/api/v1/operator-keys", body: ["public_key": .string(pinned.publicKey.openSSHLine)])
    }

    func agent() async throws -> Agent {
        var logger = Logger(label: "agent")
        logger.logLevel = .critical
        let pve = PVEClient(connection: try PVEConnection(
            host: "127.0.0.1", port: sim.port, tokenID: SimSeed.agentTokenID, tokenSecret: Secret(sim.secret(for: SimSeed.agentTokenID) ?? ""),
            trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: sim.fingerprint ?? ""))))
        return try Agent(
            hostID: hostID, hub: try HubClient(url: hubURL, key: Secret(hostKey)), pve: pve, node: "pve1", stateDir: stateDir,
            signers: [PinnedSigner(name: "operator", key: pinned.publicKey)],
            provision: .init(node: "pve1", goldenTemplate: SimSeed.goldenTemplateVolid, storage: "local-lvm", taskTimeout: .seconds(30)),
            longPollSeconds: 1, logger: logger)
    }

    func publish(_ guests: [DesiredState.Guest]) async throws {
        _ = try await op.call("PUT", "/api/v1/hosts/\(hostID)/desired", body: DesiredState(guests: guests).encoded())
        _ = try await op.json("POST", "/api/v1/hosts/\(hostID)/desired/publish")
    }

    /// Queues an op and signs it with `key`; returns the op id.
    func queueSigned(_ opName: String, vmid: Int, params: [String: JSONValue] = [:], key: SSHPrivateKey) async throws -> String {
        // The hub only accepts registered keys; register this one if it is not yet.
        _ = try? await op.json("POST", "/api/v1/operator-keys", body: ["public_key": .string(key.publicKey.openSSHLine)])
        let q = try await op.json("POST", "/api/v1/signed-ops", body: [
            "host_id": .string(hostID), "guest_id": .string("\(vmid)"), "op": .string(opName), "key_id": .string(key.publicKey.fingerprint),
            "params": .object(params),
        ])
        let id = q["id"]?.stringValue ?? ""
        let sig = try key.sign(message: Array((q["blob"]?.stringValue ?? "").utf8), namespace: OpVerifier.namespace).armored
        _ = try await op.uploadSignature(opID: id, armored: sig)
        return id
    }

    /// A client with all privileges, for setting the scene (snapshots, data) behind the agent's back.
    func rootPVE() throws -> PVEClient {
        PVEClient(connection: try PVEConnection(
            host: "127.0.0.1", port: sim.port, tokenID: SimSeed.rootTokenID, tokenSecret: Secret(sim.secret(for: SimSeed.rootTokenID) ?? ""),
            trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: sim.fingerprint ?? ""))))
    }

    func close() async {
        await group.triggerGracefulShutdown()
        await store.close()
        await sim.shutdown()
    }
}

@Suite struct AgentIntegrationTests {
    let web = DesiredState.Guest(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running, description: "customer apps: photos, passwords")
    let db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)

    @Test func aFailedProvisionIsRolledBackThenRetried() async throws {
        let w = try await AgentWorld { $0.faults.taskFailures["/nodes/pve1/lxc/140/status/start"] = "startup for container '140' failed" }
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
        #expect(try await w.op.json("GET", "/api/v1/hosts/\(w.hostID)/drift")["in_sync"] == .bool(true))
        // The agent reports the generation it applied; the hub shows it.
        let view = try await w.op.json("GET", "/api/v1/hosts/\(w.hostID)")
        #expect(view["applied_generation"] == view["desired_generation"] && view["applied_generation"] != nil, "\(view)")
        await w.close()
    }

    @Test func signedOpsAreVerifiedByTheAgentNotTheHub() async throws {
        let w = try await AgentWorld()
        let agent = try await w.agent()
        // db leaves the desired state first: the hub refuses to queue the destroy of a desired guest
        // (the reconciler would rightly provision a fresh, empty one right after).
        try await w.publish([web])
        // Registered on the hub (so the hub accepts the upload) but not pinned on the agent.
        let stranger = SSHPrivateKey.generateEd25519(comment: "stranger")
        let bad = try await w.queueSigned("guest.destroy", vmid: 101, key: stranger)
        try await agent.cycle()
        let badView = try await w.op.json("GET", "/api/v1/signed-ops/\(bad)")
        #expect(badView["status"] == "rejected")
        #expect(badView["reason"]?.stringValue?.hasPrefix("unknownSigner") == true, "\(badView)")
        #expect(await w.sim.engine.snapshot().containers[101] != nil)
        // Signed by the pinned key: applied.
        let good = try await w.queueSigned("guest.destroy", vmid: 101, key: w.pinned)
        try await agent.cycle()
        #expect(try await w.op.json("GET", "/api/v1/signed-ops/\(good)")["status"] == "applied")
        #expect(await w.sim.engine.snapshot().containers[101] == nil)
        // A new agent process on the same state directory refuses a replay of the same bytes.
        let restarted = try await w.agent()
        try await w.store.withDB { db in
            try await db.raw("""
                INSERT INTO signed_ops (id, host_id, guest_id, customer_id, op, blob, nonce, expires_at, status, signature, created_at, signed_at)
                SELECT 'sop_replay', host_id, guest_id, customer_id, op, blob, 'copy', expires_at, 'signed', signature, created_at, signed_at
                FROM signed_ops WHERE id = \(bind: good)
                """).run()
        }
        try await restarted.cycle()
        let replay = try await w.op.json("GET", "/api/v1/signed-ops/sop_replay")
        #expect(replay["status"] == "rejected" && replay["reason"]?.stringValue?.hasPrefix("replay") == true, "\(replay)")
        await w.close()
    }

    /// Issue 10 item 8: a compromised hub skips its own check and delivers a validly signed destroy
    /// of a guest that is still desired: the agent refuses it, and the guest and its data stay.
    @Test func theAgentRefusesToDestroyAGuestThatIsStillDesired() async throws {
        let w = try await AgentWorld()
        let agent = try await w.agent()
        try await w.publish([web, db])
        try await agent.cycle()
        let blob = try OpBlob.new(op: .guestDestroy, hostID: w.hostID, guestID: "101", params: [:], ttl: 600,
                                  keyID: w.pinned.publicKey.fingerprint).canonicalBytes()
        let sig = try w.pinned.sign(message: blob, namespace: OpVerifier.namespace).armored
        try await w.store.withDB { db in
            try await db.raw("""
                INSERT INTO signed_ops (id, host_id, guest_id, customer_id, op, blob, nonce, expires_at, status, signature, created_at, signed_at)
                SELECT 'sop_forced', id, '101', customer_id, 'guest.destroy', \(bind: String(decoding: blob, as: UTF8.self)), 'forced',
                       \(bind: Int64(Date().timeIntervalSince1970) + 600), 'signed', \(bind: sig), 0, 0
                FROM hosts WHERE id = \(bind: w.hostID)
                """).run()
        }
        try await agent.cycle()
        let view = try await w.op.json("GET", "/api/v1/signed-ops/sop_forced")
        #expect(view["status"] == "rejected", "\(view)")
        #expect(view["reason"]?.stringValue?.contains("still in this host's desired state") == true, "\(view)")
        #expect(await w.sim.engine.snapshot().containers[101] != nil)
        // The cycle went on: desired state is still applied after the refused op.
        #expect(agent.status.lastOutcome != nil)
        await w.close()
    }

    @Test func droppingAGuestFromDesiredStateNeverDestroysIt() async throws {
        let w = try await AgentWorld()
        let agent = try await w.agent()
        try await w.publish([web])  // db (101, tagged felhom) is no longer desired
        try await agent.cycle()
        try await agent.cycle()
        #expect(await w.sim.engine.snapshot().containers[101] != nil)
        let events = try await w.op.json("GET", "/api/v1/events", query: [("type", "op_refused")])["events"]?.arrayValue ?? []
        #expect(events.count == 1, "one event, not one per cycle")
        #expect(events.first?["data"]?["vmid"]?.lenientInt == 101)
        await w.close()
    }

    /// Issue 10 item 4: a signed restore over a running guest stops it first (PVE refuses to
    /// overwrite a running CT), journals each task by UPID, and restores the backup's data.
    @Test func signedRestoreOverARunningGuestStopsItFirst() async throws {
        let w = try await AgentWorld { s in
            s.containers[101]?.running = true
            // A backup of 101 (made from the seed's backup of 100).
            guard var b = s.volumes.first(where: { $0.volid.hasPrefix("pbs:backup/ct/100/") }) else { return }
            b.volid = "pbs:backup/ct/101/2026-01-01T02:00:00Z"
            b.vmid = 101
            b.backupConfig = s.containers[101]?.config
            b.capturedData = ["rootfs": "db-rootfs-backup", "mp0": "db-data-backup"]
            s.volumes.append(b)
        }
        let agent = try await w.agent()
        var running = db
        running.runState = .running
        try await w.publish([web, running])
        try await agent.cycle()
        let id = try await w.queueSigned("guest.restore", vmid: 101, params: ["backup": "pbs:backup/ct/101/2026-01-01T02:00:00Z"], key: w.pinned)
        try await agent.cycle()
        let view = try await w.op.json("GET", "/api/v1/signed-ops/\(id)")
        #expect(view["status"] == "applied", "\(view)")
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
        await w.close()
    }

    /// A restore over a guest whose bulk volume (`backup=0`) is not in any backup would destroy that
    /// volume (PVE removes all old volumes): refused, naming it; nothing is touched.
    @Test func signedRestoreOverAGuestWithABulkVolumeIsRefused() async throws {
        let w = try await AgentWorld()
        let agent = try await w.agent()
        try await w.publish([web, db])
        try await agent.cycle()
        let id = try await w.queueSigned("guest.restore", vmid: 100, params: ["backup": "pbs:backup/ct/100/2026-01-01T02:00:00Z"], key: w.pinned)
        let pending = try await w.op.json("GET", "/api/v1/signed-ops/\(id)")
        #expect(pending["volumes_not_in_backups"]?.arrayValue?.first?["key"] == "mp0", "\(pending)")
        try await agent.cycle()
        let view = try await w.op.json("GET", "/api/v1/signed-ops/\(id)")
        #expect(view["status"] == "rejected", "\(view)")
        #expect(view["reason"]?.stringValue?.contains("mp0 (local-lvm:vm-100-disk-1)") == true, "\(view)")
        let snap = await w.sim.engine.snapshot()
        #expect(snap.containers[100]?.running == true)
        #expect(snap.volumes.contains { $0.volid == "local-lvm:vm-100-disk-1" && $0.data == "web-media" })
        await w.close()
    }

    /// A signed rollback: the task is journaled by UPID and the snapshot's data is back.
    @Test func signedRollbackIsAppliedAndJournaled() async throws {
        let w = try await AgentWorld()
        let agent = try await w.agent()
        try await w.publish([web, db])
        try await agent.cycle()
        let root = try w.rootPVE()
        _ = try await root.waitTask(try await root.createSnapshot(node: "pve1", vmid: 101, name: "pre", description: nil), timeout: .seconds(30))
        await w.sim.engine.writeVolumeData(volid: "local-lvm:vm-101-disk-1", data: "db-data-after-bad-update")
        let id = try await w.queueSigned("guest.rollback", vmid: 101, params: ["snapshot": "pre"], key: w.pinned)
        try await agent.cycle()
        #expect(try await w.op.json("GET", "/api/v1/signed-ops/\(id)")["status"] == "applied")
        #expect(agent.journal.entries(of: id).map(\.step) == ["begin", "rollback_started", "done"])
        #expect(await w.sim.engine.snapshot().volumes.first { $0.volid == "local-lvm:vm-101-disk-1" }?.data == "db-data")
        await w.close()
    }
}
