import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Synchronization
import Testing

@testable import FelhomAgent

/// The real client to a simulated host, with chosen reads failing (a PVE that answers 500 for one
/// guest's config, or for node status).
/// Records the mutations that reach Proxmox.
final class WriteLog: Sendable {
    let m = Mutex<[String]>([])
    func append(_ s: String) { m.withLock { $0.append(s) } }
    var all: [String] { m.withLock { $0 } }
}

/// A number of faults still to inject.
final class Countdown: Sendable {
    let m = Mutex(0)
    func set(_ n: Int) { m.withLock { $0 = n } }
    /// True (and one fewer left) while faults remain.
    func take() -> Bool {
        m.withLock { n in
            guard n > 0 else { return false }
            n -= 1
            return true
        }
    }
}

struct FailingReads: PVEAPI {
    let real: PVEClient
    let failConfigOf: Set<Int>
    let failNodeStatus: Bool
    /// The next this-many guest status reads answer 500.
    let statusFailures = Countdown()
    let writes = WriteLog()
    var boom: PVEError { PVEError(code: .server, message: "simulated read failure", httpStatus: 500) }

    func version() async throws -> PVEVersion { try await real.version() }
    func nodes() async throws -> [PVENode] { try await real.nodes() }
    func ownTasks(node: String, vmid: Int?, type: String?) async throws -> [UPID] { try await real.ownTasks(node: node, vmid: vmid, type: type) }
    func nodeStatus(node: String) async throws -> PVENodeStatus {
        if failNodeStatus { throw boom }
        return try await real.nodeStatus(node: node)
    }
    func containers(node: String) async throws -> [PVEGuestStatus] { try await real.containers(node: node) }
    func containerStatus(node: String, vmid: Int) async throws -> PVEGuestStatus {
        if statusFailures.take() { throw boom }
        return try await real.containerStatus(node: node, vmid: vmid)
    }
    func containerConfig(node: String, vmid: Int, current: Bool) async throws -> PVEGuestConfig {
        if failConfigOf.contains(vmid) { throw boom }
        return try await real.containerConfig(node: node, vmid: vmid, current: current)
    }
    func storages() async throws -> [PVEStorageConfig] { try await real.storages() }
    func createStorage(_ spec: StorageCreateSpec) async throws { try await real.createStorage(spec) }
    func containerInterfaces(node: String, vmid: Int) async throws -> [PVEInterface]? {
        try await real.containerInterfaces(node: node, vmid: vmid)
    }
    func updateStorage(_ storage: String, content: [String]) async throws { try await real.updateStorage(storage, content: content) }
    func deleteStorage(_ storage: String) async throws { try await real.deleteStorage(storage) }
    func nodeStorages(node: String) async throws -> [PVENodeStorage] { try await real.nodeStorages(node: node) }
    func storageContent(node: String, storage: String, content: String?, vmid: Int?) async throws -> [PVEStorageContent] {
        try await real.storageContent(node: node, storage: storage, content: content, vmid: vmid)
    }
    func snapshots(node: String, vmid: Int) async throws -> [PVESnapshot] { try await real.snapshots(node: node, vmid: vmid) }
    func taskStatus(_ upid: UPID) async throws -> PVETaskStatus { try await real.taskStatus(upid) }
    func taskLog(_ upid: UPID, start: Int, limit: Int) async throws -> [PVETaskLogLine] { try await real.taskLog(upid, start: start, limit: limit) }
    func createContainer(node: String, _ spec: ContainerCreateSpec) async throws -> UPID {
        writes.append("create \(spec.vmid)")
        return try await real.createContainer(node: node, spec)
    }
    func destroyContainer(node: String, vmid: Int, purge: Bool, force: Bool) async throws -> UPID {
        writes.append("destroy \(vmid)")
        return try await real.destroyContainer(node: node, vmid: vmid, purge: purge, force: force)
    }
    func startContainer(node: String, vmid: Int) async throws -> UPID {
        writes.append("start \(vmid)")
        return try await real.startContainer(node: node, vmid: vmid)
    }
    func stopContainer(node: String, vmid: Int) async throws -> UPID {
        writes.append("stop \(vmid)")
        return try await real.stopContainer(node: node, vmid: vmid)
    }
    func shutdownContainer(node: String, vmid: Int, timeout: Int?, forceStop: Bool) async throws -> UPID {
        writes.append("shutdown \(vmid)")
        return try await real.shutdownContainer(node: node, vmid: vmid, timeout: timeout, forceStop: forceStop)
    }
    func updateContainerConfig(node: String, vmid: Int, _ update: ContainerConfigUpdate) async throws {
        writes.append("config \(vmid)")
        try await real.updateContainerConfig(node: node, vmid: vmid, update)
    }
    func createSnapshot(node: String, vmid: Int, name: String, description: String?) async throws -> UPID {
        try await real.createSnapshot(node: node, vmid: vmid, name: name, description: description)
    }
    func rollbackSnapshot(node: String, vmid: Int, name: String, start: Bool) async throws -> UPID {
        try await real.rollbackSnapshot(node: node, vmid: vmid, name: name, start: start)
    }
    func deleteSnapshot(node: String, vmid: Int, name: String, force: Bool) async throws -> UPID {
        try await real.deleteSnapshot(node: node, vmid: vmid, name: name, force: force)
    }
    func vzdump(node: String, _ options: VzdumpOptions) async throws -> PVEVzdumpResult { try await real.vzdump(node: node, options) }
}

@Suite struct PartialFailureTests {
    func withSim(_ body: (PVEClient) async throws -> Void) async throws {
        var state = SimSeed.defaultState()
        state.settings.taskDurations = ["default": 0.05]
        var options = PVESimulator.Options()
        options.port = 0
        options.seed = state
        let sim = try await PVESimulator.start(options)
        let client = PVEClient(
            connection: try PVEConnection(
                host: "127.0.0.1", port: sim.port, tokenID: SimSeed.agentTokenID, tokenSecret: Secret(sim.secret(for: SimSeed.agentTokenID) ?? ""),
                trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: sim.fingerprint ?? ""))))
        do { try await body(client) } catch {
            await sim.shutdown()
            throw error
        }
        await sim.shutdown()
    }

    @Test func aGuestWhoseConfigCannotBeReadKeepsItsStatusAndIsNotWritten() async throws {
        try await withSim { client in
            let pve = FailingReads(real: client, failConfigOf: [101], failNodeStatus: false)
            let report = try #require(try await HostObserver(pve: pve, node: "pve1").report(agentVersion: "t", journal: nil, now: Date()))
            let db = try #require(report.guests.first { $0.vmid == 101 })
            #expect(db.status == .stopped && db.spec == nil)
            #expect(report.guests.first { $0.vmid == 100 }?.spec?.memory == 2048)
            #expect(report.cloudflared == .unknown)
            // Desired wants 101 running with other memory: it is started, but its config is not touched.
            let desired = DesiredState(guests: [.init(vmid: 101, name: "db", cpu: 1, memoryMB: 4096, diskGB: 8, runState: .running)])
            let queue = GuestQueue()
            let journal = try Journal(path: NSTemporaryDirectory() + "felhom-pf-\(UUID().uuidString).jsonl")
            let engine = Engine(
                pve: pve, node: "pve1", queue: queue,
                provisioner: Provisioner(
                    pve: pve, journal: journal, settings: .init(node: "pve1", goldenTemplate: SimSeed.goldenTemplateVolid, storage: "local-lvm")))
            let outcome = try await engine.reconcile(desired: desired)
            #expect(outcome.planned == [.start(vmid: 101)])
            #expect(pve.writes.all == ["start 101"])
        }
    }

    @Test func noNodeStatusMeansNoReportThisRound() async throws {
        try await withSim { client in
            let pve = FailingReads(real: client, failConfigOf: [], failNodeStatus: true)
            let report = try await HostObserver(pve: pve, node: "pve1").report(agentVersion: "t", journal: nil, now: Date())
            #expect(report == nil)
        }
    }

    /// Issue 10 item 3: a transient 500 on the status read is not "the vmid is free", and a guest
    /// this operation did not create is never stopped, destroyed, adopted or rewritten.
    @Test func aTransientStatusFailureNeverLeadsToDestroyingSomeoneElsesGuest() async throws {
        try await withSim { client in
            let pve = FailingReads(real: client, failConfigOf: [], failNodeStatus: false)
            let journal = try Journal(path: NSTemporaryDirectory() + "felhom-pf-\(UUID().uuidString).jsonl")
            let prov = Provisioner(
                pve: pve, journal: journal, settings: .init(node: "pve1", goldenTemplate: SimSeed.goldenTemplateVolid, storage: "local-lvm"))
            // Guest 100 exists and runs (the default seed). Its status read fails twice, then answers.
            #expect(try await client.containerStatus(node: "pve1", vmid: 100).isRunning)
            pve.statusFailures.set(2)
            let guest = DesiredState.Guest(vmid: 100, name: "web", cpu: 1, memoryMB: 512, diskGB: 8, runState: .running)
            await #expect(throws: Provisioner.Failure.self) { try await prov.provision(guest) }
            #expect(pve.writes.all == [])
            // Resumed from a `begin` record (a crash right after it): the status read fails once,
            // then shows the running guest; create would answer "already exists".
            pve.statusFailures.set(1)
            try journal.append(op: "provision-100-x", kind: Provisioner.kind, step: "begin", data: Provisioner.data(guest))
            await #expect(throws: Provisioner.Failure.self) {
                try await prov.resume(op: "provision-100-x", entries: journal.entries(of: "provision-100-x"))
            }
            #expect(journal.entries(of: "provision-100-x").last?.step == "failed")
            // Resumed again with reads working: the guest is there and this op never recorded creating it.
            try journal.append(op: "provision-100-z", kind: Provisioner.kind, step: "begin", data: Provisioner.data(guest))
            await #expect(throws: Provisioner.Failure.self) {
                try await prov.resume(op: "provision-100-z", entries: journal.entries(of: "provision-100-z"))
            }
            #expect(journal.entries(of: "provision-100-z").last?.data["reason"]?.contains("left untouched") == true)
            #expect(pve.writes.all.allSatisfy { !$0.hasPrefix("destroy") && !$0.hasPrefix("stop") && !$0.hasPrefix("config") })
            #expect(journal.isFinished("provision-100-x"))
            #expect(try await client.containerStatus(node: "pve1", vmid: 100).isRunning)
        }
    }

    /// Even when the create itself answers "already exists" (the status read lied "free"), the
    /// compensation finds no restore UPID of its own and leaves the guest alone.
    @Test func createAnsweringAlreadyExistsIsNotCompensatedByDestroy() async throws {
        try await withSim { client in
            let pve = FailingReads(real: client, failConfigOf: [], failNodeStatus: false)
            let journal = try Journal(path: NSTemporaryDirectory() + "felhom-pf-\(UUID().uuidString).jsonl")
            let prov = Provisioner(
                pve: pve, journal: journal, settings: .init(node: "pve1", goldenTemplate: SimSeed.goldenTemplateVolid, storage: "local-lvm"))
            let guest = DesiredState.Guest(vmid: 100, name: "web", cpu: 1, memoryMB: 512, diskGB: 8, runState: .running)
            let proven = await prov.createdByThisOperation(op: "none", vmid: 100)
            #expect(!proven.proven)
            // A `restore_started` of another vmid's task is no evidence either.
            try journal.append(op: "p", kind: Provisioner.kind, step: "begin", data: Provisioner.data(guest))
            try journal.append(
                op: "p", kind: Provisioner.kind, step: "restore_started",
                data: ["upid": "UPID:pve1:00001234:00005678:6740A000:vzrestore:101:felhom@pve!agent:", "vmid": "100"])
            #expect(await !prov.createdByThisOperation(op: "p", vmid: 100).proven)
            #expect(pve.writes.all == [])
        }
    }

    /// Killed between asking PVE for the golden-template restore and recording its UPID: the
    /// restart finds this token's vzrestore of the vmid after `begin` in PVE's task list and
    /// finishes the provision (tagged, configured, started) instead of leaving an untagged guest
    /// it calls not its own. A guest another token restored there is still left alone.
    @Test func aKillBeforeTheRestoreIsRecordedStillFinishesTheProvision() async throws {
        try await FelhomTestSupport.withSim { (h: SimHarness) in
            let client = try h.client()
            let journal = try Journal(path: NSTemporaryDirectory() + "felhom-pf-\(UUID().uuidString).jsonl")
            let prov = Provisioner(
                pve: client, journal: journal, settings: .init(node: "pve1", goldenTemplate: SimSeed.goldenTemplateVolid, storage: "local-lvm"))
            func restore(_ c: PVEClient, _ vmid: Int) async throws {
                var spec = ContainerCreateSpec(vmid: vmid, ostemplate: SimSeed.goldenTemplateVolid, restore: true)
                spec.storage = "local-lvm"
                _ = try await c.waitTask(try await c.createContainer(node: "pve1", spec), initialInterval: .milliseconds(10))
            }
            let guest = DesiredState.Guest(vmid: 150, name: "photos", cpu: 1, memoryMB: 768, diskGB: 4, runState: .running)
            try journal.append(op: "provision-150-k", kind: Provisioner.kind, step: "begin", data: Provisioner.data(guest))
            try await restore(client, 150)  // asked for; the kill came before the journal line
            try await prov.resume(op: "provision-150-k", entries: journal.entries(of: "provision-150-k"))
            let steps = journal.entries(of: "provision-150-k")
            #expect(steps.last?.step == "done" && steps[1].data["found"] == "task list", "\(steps.map(\.step))")
            let cfg = try await client.containerConfig(node: "pve1", vmid: 150, current: true)
            #expect(cfg.raw["tags"]?.stringValue == "felhom" && cfg.memory == 768)
            #expect(try await client.containerStatus(node: "pve1", vmid: 150).isRunning)

            // The root token restored into 151 after this operation began: not this operation's.
            let other = DesiredState.Guest(vmid: 151, name: "x", cpu: 1, memoryMB: 512, diskGB: 4, runState: .running)
            try journal.append(op: "provision-151-k", kind: Provisioner.kind, step: "begin", data: Provisioner.data(other))
            try await restore(try h.rootClient(), 151)
            await #expect(throws: Provisioner.Failure.self) {
                try await prov.resume(op: "provision-151-k", entries: journal.entries(of: "provision-151-k"))
            }
            #expect(journal.entries(of: "provision-151-k").last?.data["reason"]?.contains("left untouched") == true)
        }
    }
}
