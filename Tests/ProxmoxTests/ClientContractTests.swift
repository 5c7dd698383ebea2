import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Synchronization
import Testing

@testable import Proxmox

/// A manual clock that stands still until `start()`, then moves 1 s every 10 ms: lets a test look at
/// a running task however slow the machine is, then lets every task finish quickly.
final class TickingClock: Sendable {
    let clock = ManualClock(start: Date())
    private let ticker = Mutex<Task<Void, Never>?>(nil)

    private func start() {
        ticker.withLock {
            $0 =
                $0
                ?? Task { [clock] in
                    while !Task.isCancelled {
                        clock.advance(by: 1)
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                }
        }
    }

    private func stop() {
        ticker.withLock {
            $0?.cancel()
            $0 = nil
        }
    }

    /// Runs `body` with the clock ticking, and stops it however `body` ends (scoped, not in deinit).
    func whileTicking<T>(_ body: () async throws -> T) async rethrows -> T {
        start()
        defer { stop() }
        return try await body()
    }
}

/// The client contract: every typed call against the simulator, as the agent would use it.
@Suite struct ClientContractTests {
    let node = "pve1"

    @Test func reads() async throws {
        try await withSim { h in
            let c = try h.client()
            let v = try await c.version()
            #expect(v.version == "9.1.3")
            let nodes = try await c.nodes()
            #expect(nodes.map(\.node) == ["pve1"])
            #expect(nodes[0].maxmem != nil)
            let st = try await c.nodeStatus(node: node)
            #expect(st.memoryTotal > st.memoryUsed)
            let guests = try await c.containers(node: node)
            #expect(guests.map(\.vmid) == [100, 101, SimSeed.selftestVmid])
            #expect(guests[0].isRunning && !guests[1].isRunning)
            let s100 = try await c.containerStatus(node: node, vmid: 100)
            #expect(s100.maxmem == 2048 << 20)
            let cfg = try await c.containerConfig(node: node, vmid: 100, current: true)
            #expect(cfg.memory == 2048)
            #expect(cfg.mountPoints[0]?.backup == false)
            #expect(cfg.digest?.count == 40)
            let storages = try await c.storages()
            #expect(storages.map(\.storage) == ["local", "local-lvm", "pbs-felhom"])
            #expect(storages[2].encryptionKey != nil)
            let ns = try await c.nodeStorages(node: node)
            #expect(ns.allSatisfy { $0.active })
            let backups = try await c.storageContent(node: node, storage: "local", content: "backup", vmid: nil)
            #expect(backups.map(\.volid) == [SimSeed.goldenTemplateVolid])
            #expect(backups[0].protected)
            let pbs = try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 100)
            #expect(pbs.first?.format == "pbs-ct")
            #expect(pbs.first?.encrypted != nil)
            #expect(try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 101).isEmpty)
            let snaps = try await c.snapshots(node: node, vmid: 100)
            #expect(snaps.map(\.name) == ["current"])
        }
    }

    @Test func lifeCycleWithTasks() async throws {
        try await withSim { h in
            let c = try h.client()
            // start → task → running
            let up = try await c.startContainer(node: node, vmid: 101)
            #expect(up.type == "vzstart" && up.id == "101" && up.user == SimSeed.agentTokenID)
            let st = try await c.waitTask(up, initialInterval: .milliseconds(10))
            #expect(st.exitStatus == "OK")
            #expect(st.user == "felhom@pve" && st.tokenID == "agent")
            #expect(try await c.containerStatus(node: node, vmid: 101).isRunning)
            let log = try await c.taskLog(up, start: 0, limit: 0)
            #expect(log.last?.text == "TASK OK")
            #expect(log.first?.n == 1)
            // pre-check failure at request time
            let again = await #expect(throws: PVEError.self) { _ = try await c.startContainer(node: node, vmid: 101) }
            #expect(again?.message == "CT 101 already running")
            // destroy refused while running
            let running = await #expect(throws: PVEError.self) { _ = try await c.destroyContainer(node: node, vmid: 101, purge: false, force: false) }
            #expect(running?.message == "unable to destroy CT 101 - container is running")
            // shutdown, then destroy
            _ = try await c.waitTask(
                try await c.shutdownContainer(node: node, vmid: 101, timeout: 30, forceStop: true), initialInterval: .milliseconds(10))
            #expect(try await c.containerStatus(node: node, vmid: 101).status == "stopped")
            let stop = await #expect(throws: PVEError.self) { _ = try await c.stopContainer(node: node, vmid: 101) }
            #expect(stop?.message == "CT 101 not running")
            _ = try await c.waitTask(
                try await c.destroyContainer(node: node, vmid: 101, purge: true, force: false), initialInterval: .milliseconds(10))
            let gone = await #expect(throws: PVEError.self) { _ = try await c.containerConfig(node: node, vmid: 101, current: true) }
            #expect(gone?.code == .notFound)
            #expect(try await c.storageContent(node: node, storage: "local-lvm", content: nil, vmid: 101).isEmpty)
        }
    }

    @Test func configUpdateDigestAndDescriptionQuirk() async throws {
        try await withSim { h in
            let c = try h.client()
            let before = try await c.containerConfig(node: node, vmid: 101, current: true)
            try await c.updateContainerConfig(
                node: node, vmid: 101, ContainerConfigUpdate(set: ["description": "line one\n\nline two", "memory": "768"], digest: before.digest))
            let after = try await c.containerConfig(node: node, vmid: 101, current: true)
            #expect(after.description == "line one\nline two\n")
            #expect(after.memory == 768)
            #expect(after.digest != before.digest)
            // The old digest is now stale.
            let stale = await #expect(throws: PVEError.self) {
                try await c.updateContainerConfig(node: node, vmid: 101, ContainerConfigUpdate(set: ["memory": "1024"], digest: before.digest))
            }
            #expect(stale?.code == .digestMismatch)
            #expect(try await c.containerConfig(node: node, vmid: 101, current: true).memory == 768)
            // A running guest: hostname applies now, features wait as pending.
            try await c.updateContainerConfig(node: node, vmid: 100, ContainerConfigUpdate(set: ["hostname": "web2", "features": "nesting=1"]))
            let cur = try await c.containerConfig(node: node, vmid: 100, current: true)
            let pend = try await c.containerConfig(node: node, vmid: 100, current: false)
            #expect(cur.hostname == "web2")
            #expect(cur.features == "keyctl=1,nesting=1")
            #expect(pend.features == "nesting=1")
        }
    }

    @Test func permissionErrorsAreTyped() async throws {
        try await withSim { h in
            let agent = try h.client()
            // keyctl is root@pam only, even for an operator-tier token.
            let keyctl = await #expect(throws: PVEError.self) {
                try await agent.updateContainerConfig(node: node, vmid: 101, ContainerConfigUpdate(set: ["features": "keyctl=1,nesting=1"]))
            }
            #expect(keyctl?.code == .forbidden)
            #expect(keyctl?.message == "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)")
            let ro = try h.client(SimSeed.auditorTokenID)
            let e = await #expect(throws: PVEError.self) { _ = try await ro.startContainer(node: node, vmid: 101) }
            #expect(e?.code == .forbidden)
            #expect(e?.privilege == "VM.PowerMgmt")
            #expect(e?.path == "/vms/101")
            let wrong = try h.client(SimSeed.agentTokenID, secret: "00000000-0000-0000-0000-000000000000")
            let auth = await #expect(throws: PVEError.self) { _ = try await wrong.version() }
            #expect(auth?.code == .unauthorized)
            #expect(auth?.message == "Authentication failed!")
            #expect(auth?.description.contains("00000000-0000") == false)
        }
    }

    @Test func provisionByRestoringTheGoldenTemplate() async throws {
        let clock = TickingClock()
        try await withSim(clock: clock.clock, taskSeconds: 1) { h in
            let c = try h.client()
            var spec = ContainerCreateSpec(vmid: 120, ostemplate: SimSeed.goldenTemplateVolid, restore: true)
            spec.storage = "local-lvm"
            spec.hostname = "photos"
            spec.memoryMiB = 1024
            spec.unique = true
            let up = try await c.createContainer(node: node, spec)
            #expect(up.type == "vzrestore")
            // While the task runs the config carries lock: create.
            #expect(try await c.containerStatus(node: node, vmid: 120).lock == "create")
            // From here on the clock ticks: this task and every later one finish quickly.
            try await clock.whileTicking {
                _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
                let cfg = try await c.containerConfig(node: node, vmid: 120, current: true)
                #expect(cfg.features == "keyctl=1,nesting=1")  // from the backup: a token could not set keyctl itself
                #expect(cfg.hostname == "photos")
                #expect(cfg.memory == 1024)
                #expect(cfg.rootfs?.storage == "local-lvm")
                #expect(cfg.rootfs?.size == "4G")
                #expect(cfg.lock == nil)
                // Restoring over an existing guest without force is refused synchronously.
                let exists = await #expect(throws: PVEError.self) { _ = try await c.createContainer(node: node, spec) }
                #expect(exists?.message == "unable to restore CT 120 - CT 120 already exists on node 'pve1'")
                // Plain create from an OS template, with a new mount point volume.
                var create = ContainerCreateSpec(vmid: 121, ostemplate: SimSeed.osTemplateVolid)
                create.rootfs = "local-lvm:4"
                create.mountPoints[0] = MountPoint(volume: "local-lvm:16", path: "/srv/media", backup: false)
                _ = try await c.waitTask(try await c.createContainer(node: node, create), initialInterval: .milliseconds(10))
                let cfg2 = try await c.containerConfig(node: node, vmid: 121, current: true)
                #expect(cfg2.hostname == "CT121")
                #expect(cfg2.mountPoints[0]?.sizeBytes == 16 << 30)
                #expect(cfg2.mountPoints[0]?.backup == false)
            }
        }
    }

    @Test func snapshotsRollbackAndDelete() async throws {
        try await withSim { h in
            let c = try h.client()
            _ = try await c.waitTask(
                try await c.createSnapshot(node: node, vmid: 101, name: "before", description: "pre upgrade"), initialInterval: .milliseconds(10))
            try await c.updateContainerConfig(node: node, vmid: 101, ContainerConfigUpdate(set: ["memory": "4096"]))
            var snaps = try await c.snapshots(node: node, vmid: 101)
            #expect(snaps.map(\.name) == ["before", "current"])
            #expect(snaps[0].description == "pre upgrade\n")
            #expect(snaps[1].parent == "before")
            _ = try await c.waitTask(
                try await c.rollbackSnapshot(node: node, vmid: 101, name: "before", start: false), initialInterval: .milliseconds(10))
            #expect(try await c.containerConfig(node: node, vmid: 101, current: true).memory == 1024)
            // Duplicate names fail inside the task.
            let dup = await #expect(throws: PVEError.self) {
                _ = try await c.waitTask(
                    try await c.createSnapshot(node: node, vmid: 101, name: "before", description: nil), initialInterval: .milliseconds(10))
            }
            #expect(dup?.exitStatus == "snapshot name 'before' already used")
            _ = try await c.waitTask(
                try await c.deleteSnapshot(node: node, vmid: 101, name: "before", force: false), initialInterval: .milliseconds(10))
            snaps = try await c.snapshots(node: node, vmid: 101)
            #expect(snaps.map(\.name) == ["current"])
            let reserved = await #expect(throws: PVEError.self) {
                _ = try await c.createSnapshot(node: node, vmid: 101, name: "vzdump", description: nil)
            }
            #expect(reserved?.httpStatus == 500)
        }
    }

    @Test func vzdumpProducesContentEntries() async throws {
        let clock = TickingClock()
        try await withSim(clock: clock.clock, taskSeconds: 1) { h in
            let c = try h.client()
            var o = VzdumpOptions(vmids: [101], storage: "pbs-felhom")
            o.notesTemplate = "{{guestname}} nightly"
            o.protected = true
            let up = try #require(try await c.vzdump(node: node, o).upid, "expected a task")
            #expect(up.type == "vzdump" && up.id == "101")
            #expect(try await c.containerStatus(node: node, vmid: 101).lock == "backup")
            // From here on the clock ticks: this task and every later one finish quickly.
            try await clock.whileTicking {
                _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
                let items = try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 101)
                #expect(items.count == 1)
                #expect(items[0].volid.hasPrefix("pbs-felhom:backup/ct/101/"))
                #expect(items[0].notes == "db nightly")
                #expect(items[0].protected)
                #expect(items[0].encrypted != nil)
                #expect(items[0].verificationState == "ok")
                let log = try await c.taskLog(up, start: 0, limit: 0).map(\.text)
                #expect(log.contains("INFO: including mount point mp0 ('/var/lib/postgresql') in backup"))
                // A dir storage gets a vzdump-lxc-… archive.
                let up2 = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [100], storage: "local")).upid, "expected a task")
                _ = try await c.waitTask(up2, initialInterval: .milliseconds(10))
                let local = try await c.storageContent(node: node, storage: "local", content: "backup", vmid: 100)
                #expect(local.first?.volid.contains("vzdump-lxc-100-") == true)
                #expect(local.first?.format == "tar.zst")
                #expect(
                    try await c.taskLog(up2, start: 0, limit: 0).map(\.text).contains(
                        "INFO: excluding volume mount point mp0 ('/srv/media') from backup (disabled)"))
                // A guest that is not on this node: "OK", nothing done.
                #expect(try await c.vzdump(node: node, VzdumpOptions(vmids: [555], storage: "local")) == .nothingToDo)
            }
        }
    }

    @Test func locksHeldByTasksFailTheSecondOperation() async throws {
        // A manual clock keeps the backup running for as long as the test needs.
        let clock = ManualClock(start: Date())
        try await withSim(clock: clock, taskSeconds: 1) { h in
            let c = try h.client()
            let backup = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [101], storage: "local")).upid, "expected a task")
            // A synchronous call sees the lock at once…
            let sync = await #expect(throws: PVEError.self) {
                try await c.updateContainerConfig(node: node, vmid: 101, ContainerConfigUpdate(set: ["memory": "2048"]))
            }
            #expect(sync?.code == .locked)
            #expect(sync?.lock == "backup")
            // …a task-based one is accepted and fails inside its task.
            let start = try await c.startContainer(node: node, vmid: 101)
            clock.advance(by: 2)
            let e = await #expect(throws: PVEError.self) { _ = try await c.waitTask(start, initialInterval: .milliseconds(10)) }
            #expect(e?.code == .taskFailed)
            #expect(e?.lock == "backup")
            #expect(e?.logTail.last == "TASK ERROR: CT is locked (backup)")
            _ = try await c.waitTask(backup, initialInterval: .milliseconds(10))
            try await c.updateContainerConfig(node: node, vmid: 101, ContainerConfigUpdate(set: ["memory": "2048"]))
        }
    }

    @Test func injectedFaults() async throws {
        try await withSim { h in
            let c = try h.client()
            var f = SimFaults()
            f.taskFailures["/nodes/pve1/lxc/101/status/start"] = "startup for container '101' failed"
            f.taskWarnings["/nodes/pve1/lxc/199/status/start"] = 2
            f.forcedLocks[100] = "mounted"
            await h.engine.setFaults(f)
            let failed = await #expect(throws: PVEError.self) {
                _ = try await c.waitTask(try await c.startContainer(node: node, vmid: 101), initialInterval: .milliseconds(10))
            }
            #expect(failed?.exitStatus == "startup for container '101' failed")
            let warn = try await c.waitTask(try await c.startContainer(node: node, vmid: 199), initialInterval: .milliseconds(10))
            #expect(warn.exitStatus == "WARNINGS: 2")
            #expect(try await c.containerStatus(node: node, vmid: 100).lock == "mounted")
            f = SimFaults()
            f.serverErrorRate = 1
            await h.engine.setFaults(f)
            let proxy = await #expect(throws: PVEError.self) { _ = try await c.version() }
            #expect(proxy?.code == .proxy)
            #expect(proxy?.httpStatus == 596)
        }
    }

    @Test func legacyErrorBodiesStillGiveTheMessage() async throws {
        try await withSim { h in
            var s = SimSettings()
            s.errorBodyStyle = "legacy"
            await h.engine.setSettings(s)
            let e = await #expect(throws: PVEError.self) { _ = try await h.client().startContainer(node: node, vmid: 100) }
            #expect(e?.message == "CT 100 already running")
        }
    }
}
