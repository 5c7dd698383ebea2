import Crypto
import FelhomAPI
import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

/// The disaster-recovery drill in-process: box A (simulated) sets up its escrow, backs up to a PBS
/// datastore it shares with box B, and is lost; box B enrolls as the same host, takes the
/// customer's recovery code, and restores the desired guests from A's backups.
@Suite struct DisasterRecoveryTests {
    let fast = EscrowEnvelope.KDFParams(n: 1 << 14, r: 8, p: 1)

    static func namespace(_ ns: String, keep: Set<Int>) -> (inout SimState) -> Void {
        { state in
            if let i = state.storages.firstIndex(where: { $0.id == "pbs-felhom" }) {
                state.storages[i].namespace = ns
                state.storages[i].encryptionKeyFingerprint = nil
            }
            state.volumes.removeAll { $0.storage == "pbs-felhom" }
            for vmid in [100, 101] where !keep.contains(vmid) {
                state.containers[vmid] = nil
                state.volumes.removeAll { $0.vmid == vmid && $0.content == "rootdir" }
            }
        }
    }

    @Test func aLostBoxIsRestoredOnANewOneWithTheRecoveryCode() async throws {
        let store = SimPBSDatastore(name: "felhom")
        let dir = NSTemporaryDirectory() + "felhom-dr-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        try await withRunningHub { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let (hostID, keyA) = try await op.createHost(customerID: customer, name: "nappali")
            let web = DesiredState.Guest(
                vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running,
                mountPoints: [.init(key: "mp0", path: "/srv/media", sizeGB: 32, backup: false, bulk: true)])
            let db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)
            let extra = DesiredState.Guest(vmid: 102, name: "extra", cpu: 1, memoryMB: 512, diskGB: 4, runState: .running)
            var desired = DesiredState(guests: [web, db, extra])
            desired.storagePolicy.backupStorage = "pbs-felhom"
            _ = try await op.putDesired(hostID: hostID, desired)
            _ = try await op.publishDesired(hostID: hostID)

            // Box A: escrow, data, backups; then it is gone.
            let code: RecoveryCode = try await withSim(sharedPBS: store, Self.namespace("customers/nappali", keep: [100, 101])) { a in
                let hubA = try HubClient(url: hub.url, key: keyA)
                let keeper = EscrowKeeper(
                    stateDir: dir + "/a", keyFile: dir + "/a/pbs.enc", storage: "pbs-felhom", pve: try a.client(),
                    backend: PrivilegedBackend(runner: SimCommandRunner(engine: a.engine)), hub: hubA, hostID: hostID, params: fast)
                let code = try #require(try await keeper.initialize().code)
                let rootfs = try #require(await a.engine.snapshot().containers[100]?.config["rootfs"]?.split(separator: ",").first)
                await a.engine.writeVolumeData(volid: String(rootfs), data: "Anna's photos and passwords")
                let c = try a.client()
                for vmid in [100, 101] {
                    let up = try #require(try await c.vzdump(node: "pve1", VzdumpOptions(vmids: [vmid], storage: "pbs-felhom")).upid)
                    _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
                }
                return code
            }
            #expect(store.snapshots(namespace: "customers/nappali").count == 2)

            // Box B: a fresh host on the same customer namespace; 101 exists there already.
            try await withSim(sharedPBS: store, Self.namespace("customers/nappali", keep: [101])) { b in
                let token = try await op.enrollmentToken(hostID: hostID)
                let (enrolledAs, keyB) = try await HubClient.enroll(url: hub.url, token: Secret(token.token))
                #expect(enrolledAs == hostID)
                let hubB = try HubClient(url: hub.url, key: keyB)
                let journal = try Journal(path: dir + "/b/journal.jsonl")
                let dr = DisasterRecovery(
                    pve: try b.client(), node: "pve1", journal: journal, backend: PrivilegedBackend(runner: SimCommandRunner(engine: b.engine)),
                    hub: hubB, hostID: hostID, keyFile: dir + "/b/pbs.enc", storage: "pbs-felhom", targetStorage: "local-lvm", stateDir: dir + "/b",
                    taskTimeout: .seconds(30))

                // A wrong code: a clear error, nothing changed on box B.
                await #expect(throws: EscrowError.self) { _ = try await dr.run(code: RecoveryCode.generate()) }
                #expect(!FileManager.default.fileExists(atPath: dir + "/b/pbs.enc"))
                #expect(await b.engine.snapshot().containers[100] == nil)
                #expect(await b.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint == nil)

                let report = try await dr.run(code: code)
                let byVMID = Dictionary(uniqueKeysWithValues: report.guests.map { ($0.vmid, $0) })
                #expect(byVMID[100]?.status == .restored && byVMID[100]?.volid?.hasPrefix("pbs-felhom:backup/ct/100/") == true)
                #expect(byVMID[100]?.notRestored.map(\.key) == ["mp0"], "the bulk volume is named, never silently empty")
                #expect(byVMID[101]?.status == .notRestored && byVMID[101]?.reason?.contains("signed guest.restore") == true)
                #expect(byVMID[102]?.status == .notRestored && byVMID[102]?.reason?.contains("no backup") == true)
                #expect(!report.complete)
                let snap = await b.engine.snapshot()
                let root = snap.containers[100]?.config["rootfs"]?.split(separator: ",").first.map(String.init)
                #expect(snap.volumes.first { $0.volid == root }?.data == "Anna's photos and passwords", "A's data, on B")
                #expect(snap.containers[100]?.running == true, "started: it should run")
                #expect(snap.storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint == report.keyFingerprint)
                var events: [HubEvent] = []
                for _ in 0..<100 where events.isEmpty {
                    events = try await op.events(hostID: hostID, type: "dr_incomplete")
                    if events.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(events.first?.data["complete"] == false && events.first?.severity == .critical)

                // Run again (a crash, an impatient operator): nothing is restored twice.
                let restoresBefore = snap.tasks.filter { $0.type == "vzrestore" }.count
                let again = try await dr.run(code: code)
                #expect(again.guests.first { $0.vmid == 100 }?.status == .alreadyRestored)
                #expect(await b.engine.snapshot().tasks.filter { $0.type == "vzrestore" }.count == restoresBefore)

                // The escrow drill works on the new box.
                let keeperB = EscrowKeeper(
                    stateDir: dir + "/b", keyFile: dir + "/b/pbs.enc", storage: "pbs-felhom", pve: try b.client(),
                    backend: PrivilegedBackend(runner: SimCommandRunner(engine: b.engine)), hub: hubB, hostID: hostID, params: fast)
                #expect(await keeperB.drill(boxKey: report.keyFingerprint).type == "escrow_verified")
            }
        }
    }
}

extension DisasterRecoveryTests {
    /// The operator-managed tier: box A wraps its key to the operator escrow key; the replacement
    /// box, enrolled with a recovery token, cannot be recovered with a recovery code (wrong tier,
    /// nothing changed) and is recovered with the operator's private key.
    @Test func anOperatorManagedBoxIsRecoveredWithTheOperatorEscrowKey() async throws {
        let store = SimPBSDatastore(name: "felhom")
        let dir = NSTemporaryDirectory() + "felhom-dr-op-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        let escrowKey = Curve25519.KeyAgreement.PrivateKey()
        try await withRunningHub { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "B", email: "b@example.hu", domain: "b.example.hu"))
            let (hostID, _) = try await op.createHost(customerID: customer, name: "iroda")
            var desired = DesiredState(guests: [.init(vmid: 100, name: "web", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .running)])
            desired.storagePolicy.backupStorage = "pbs-felhom"
            _ = try await op.putDesired(hostID: hostID, desired)
            _ = try await op.publishDesired(hostID: hostID)
            // A recovery token needs a host that was enrolled before.
            await #expect(throws: HubClientError.self) { try await op.enrollmentToken(hostID: hostID, recovery: true) }
            let first = try await op.enrollmentToken(hostID: hostID)
            let boxA = try await HubClient.enrollment(url: hub.url, token: Secret(first.token))
            #expect(boxA.recovery == nil)

            try await withSim(sharedPBS: store, Self.namespace("customers/iroda", keep: [100])) { a in
                let hubA = try HubClient(url: hub.url, key: Secret(boxA.apiKey))
                let keeper = EscrowKeeper(
                    stateDir: dir + "/a", keyFile: dir + "/a/pbs.enc", storage: "pbs-felhom", pve: try a.client(),
                    backend: PrivilegedBackend(runner: SimCommandRunner(engine: a.engine)), hub: hubA, hostID: hostID, params: fast,
                    operatorKey: escrowKey.publicKey)
                let outcome = try await keeper.initialize()
                #expect(outcome.code == nil && outcome.operatorKey != nil)
                let c = try a.client()
                let up = try #require(try await c.vzdump(node: "pve1", VzdumpOptions(vmids: [100], storage: "pbs-felhom")).upid)
                _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
            }

            try await withSim(sharedPBS: store, Self.namespace("customers/iroda", keep: [])) { b in
                let token = try await op.enrollmentToken(hostID: hostID, recovery: true)
                #expect(token.recovery == true)
                let enrolled = try await HubClient.enrollment(url: hub.url, token: Secret(token.token))
                #expect(enrolled.recovery == true && enrolled.hostID == hostID)
                let dr = DisasterRecovery(
                    pve: try b.client(), node: "pve1", journal: try Journal(path: dir + "/b/journal.jsonl"),
                    backend: PrivilegedBackend(runner: SimCommandRunner(engine: b.engine)),
                    hub: try HubClient(url: hub.url, key: Secret(enrolled.apiKey)),
                    hostID: hostID, keyFile: dir + "/b/pbs.enc", storage: "pbs-felhom", targetStorage: "local-lvm", stateDir: dir + "/b",
                    taskTimeout: .seconds(30))
                let wrongTier = await #expect(throws: EscrowError.self) { _ = try await dr.run(code: RecoveryCode.generate()) }
                #expect(wrongTier?.code == .wrongTier)
                let stranger = await #expect(throws: EscrowError.self) {
                    _ = try await dr.run(opening: .operatorKey(Curve25519.KeyAgreement.PrivateKey()))
                }
                #expect(stranger?.code == .unwrapFailed)
                #expect(await b.engine.snapshot().containers[100] == nil && !FileManager.default.fileExists(atPath: dir + "/b/pbs.enc"))
                let report = try await dr.run(opening: .operatorKey(escrowKey))
                #expect(report.complete && report.guests.map(\.status) == [.restored])
                #expect(await b.engine.snapshot().containers[100]?.running == true)
            }
        }
    }
}

/// The disaster-recovery drill's own cost for N guests (docs/performance.md): box A makes N guests
/// and backs them up; box B, whose every PVE task lasts exactly 0.5 s, recovers them. Overhead =
/// wall time − PVE tasks × 0.5 s. Runs only with `FELHOM_BENCH_DR=N[,N…]` (`scripts/bench-dr`).
@Suite(.enabled(if: ProcessInfo.processInfo.environment["FELHOM_BENCH_DR"] != nil))
struct DisasterRecoveryBench {
    @Test func recoveryTimeAndOverheadForNGuests() async throws {
        let sizes = (ProcessInfo.processInfo.environment["FELHOM_BENCH_DR"] ?? "2").split(separator: ",").compactMap { Int($0) }
        for n in sizes { try await run(n) }
    }

    func run(_ n: Int) async throws {
        let store = SimPBSDatastore(name: "felhom")
        let dir = NSTemporaryDirectory() + "felhom-drbench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fast = EscrowEnvelope.KDFParams.standard
        let vmids = (0..<n).map { 200 + $0 }
        try await withRunningHub { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let (hostID, keyA) = try await op.createHost(customerID: customer, name: "box")
            let guests = vmids.map { DesiredState.Guest(vmid: $0, name: "g\($0)", cpu: 1, memoryMB: 512, diskGB: 4, runState: .running) }
            _ = try await op.putDesired(hostID: hostID, DesiredState(guests: guests))
            _ = try await op.publishDesired(hostID: hostID)
            let code: RecoveryCode = try await withSim(
                taskSeconds: 0.01, sharedPBS: store, DisasterRecoveryTests.namespace("customers/box", keep: [100, 101])
            ) { a in
                let root = try a.rootClient()
                for vmid in vmids {
                    var spec = ContainerCreateSpec(vmid: vmid, ostemplate: SimSeed.goldenTemplateVolid, restore: true)
                    spec.storage = "local-lvm"
                    _ = try await root.waitTask(try await root.createContainer(node: "pve1", spec), initialInterval: .milliseconds(5))
                }
                let keeper = EscrowKeeper(
                    stateDir: dir + "/a", keyFile: dir + "/a.enc", storage: "pbs-felhom", pve: try a.client(),
                    backend: PrivilegedBackend(runner: SimCommandRunner(engine: a.engine)), hub: try HubClient(url: hub.url, key: keyA),
                    hostID: hostID, params: fast)
                let code = try #require(try await keeper.initialize().code)
                let up = try #require(try await root.vzdump(node: "pve1", VzdumpOptions(vmids: vmids, storage: "pbs-felhom")).upid)
                _ = try await root.waitTask(up, initialInterval: .milliseconds(5))
                return code
            }
            try await withSim(taskSeconds: 0.5, sharedPBS: store, DisasterRecoveryTests.namespace("customers/box", keep: [])) { b in
                let token = try await op.enrollmentToken(hostID: hostID)
                let (_, keyB) = try await HubClient.enroll(url: hub.url, token: Secret(token.token))
                let dr = DisasterRecovery(
                    pve: try b.client(), node: "pve1", journal: try Journal(path: dir + "/b.jsonl"),
                    backend: PrivilegedBackend(runner: SimCommandRunner(engine: b.engine)), hub: try HubClient(url: hub.url, key: keyB),
                    hostID: hostID, keyFile: dir + "/b.enc", storage: "pbs-felhom", targetStorage: "local-lvm", stateDir: dir + "/b",
                    taskTimeout: .seconds(120))
                let before = await b.engine.snapshot().tasks.count
                let t0 = ContinuousClock.now
                let report = try await dr.run(code: code)
                let wall = ContinuousClock.now - t0
                let tasks = await b.engine.snapshot().tasks.count - before
                #expect(report.complete && report.guests.count == n)
                let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
                print(
                    String(
                        format:
                            "DR of %d guests: total %.2f s, %d PVE tasks × 0.5 s = %.1f s, agent overhead %.2f s (%.3f s per guest; includes one scrypt unwrap)",
                        n, seconds, tasks, Double(tasks) * 0.5, seconds - Double(tasks) * 0.5, (seconds - Double(tasks) * 0.5) / Double(n)))
            }
        }
    }
}
