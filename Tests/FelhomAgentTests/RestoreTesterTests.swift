import FelhomAgent
import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

@Suite struct RestoreTesterTests {
    static let healthy =
        #"[{"name":"photos","state":"running","protected":false,"services":[]},{"name":"traefik","state":"running","protected":true,"services":[]}]"#
    static let broken = #"[{"name":"photos","state":"stopped","protected":false,"services":[]}]"#

    func tester(_ h: SimHarness, _ j: Journal, health: Duration = .seconds(10)) throws -> RestoreTester {
        RestoreTester(
            pve: try h.client(), node: "pve1", queue: GuestQueue(), journal: j,
            backend: PrivilegedBackend(runner: SimCommandRunner(engine: h.engine)),
            healthTimeout: health, taskTimeout: .seconds(30))
    }

    func journal() throws -> Journal { try Journal(path: NSTemporaryDirectory() + "felhom-rt-\(UUID().uuidString).jsonl") }

    func backUp(_ h: SimHarness, _ vmid: Int) async throws {
        let c = try h.client()
        let up = try #require(try await c.vzdump(node: "pve1", VzdumpOptions(vmids: [vmid], storage: "pbs-felhom")).upid)
        _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
    }

    @Test func aHealthyBackupPassesInAnIsolatedScratchGuestThatIsThenDestroyed() async throws {
        try await withSim { h in
            let j = try journal()
            await h.engine.setAppHealth(vmid: 100, json: Self.healthy)
            try await backUp(h, 100)
            let before = await h.engine.snapshot()
            let result = try await tester(h, j).run(vmid: 100, backupStorage: "pbs-felhom", id: "t1")
            #expect(result.passed, "\(String(describing: result.reason))")
            #expect(result.isolated, "no mount point, link down, tagged — read back from PVE")
            #expect(
                result.scratchVMID == 9900 && result.stacks == ["photos", "traefik"] && result.restoreSeconds != nil && result.healthySeconds != nil)
            let after = await h.engine.snapshot()
            #expect(after.containers[9900] == nil, "the scratch guest is gone")
            #expect(after.containers[100]?.config == before.containers[100]?.config, "the source guest is untouched")
            #expect(after.volumes.filter { $0.vmid == 9900 }.isEmpty, "no scratch volume left")
            #expect(j.entries(of: result.op).map(\.step) == ["begin", "restore", "started", "destroyed", "done"])
        }
    }

    @Test func unhealthyAppsOrNoBackupFailNamingWhyAndLeaveNothingBehind() async throws {
        try await withSim { h in
            let j = try journal()
            await h.engine.setAppHealth(vmid: 100, json: Self.broken)
            try await backUp(h, 100)
            let failed = try await tester(h, j, health: .seconds(2)).run(vmid: 100, backupStorage: "pbs-felhom", id: "t2")
            #expect(!failed.passed && failed.reason?.contains("photos stopped") == true, "\(String(describing: failed.reason))")
            #expect(await h.engine.snapshot().containers[9900] == nil)
            let none = try await tester(h, j).run(vmid: 101, backupStorage: "pbs-felhom", id: "t3")
            #expect(!none.passed && none.reason?.contains("no backup of 101") == true)
        }
    }

    @Test func aCrashMidTestDestroysOnlyTheScratchGuestItCreated() async throws {
        try await withSim { h in
            let j = try journal()
            let c = try h.client()
            // As if the agent died after starting the scratch restore.
            let op = "restore-test-100-crash"
            try j.append(
                op: op, kind: RestoreTester.kind, step: "begin",
                data: ["vmid": "100", "scratch": "9901", "volid": "pbs-felhom:backup/ct/100/2026-01-01T02:00:00Z"])
            var spec = ContainerCreateSpec(vmid: 9901, ostemplate: "pbs-felhom:backup/ct/100/2026-01-01T02:00:00Z", restore: true)
            spec.rootfs = "local-lvm:4"
            let upid = try await c.createContainer(node: "pve1", spec)
            try j.append(op: op, kind: RestoreTester.kind, step: "restore", data: ["vmid": "9901", "upid": upid.description])
            let resumed = try #require(try await tester(h, j).resume(op: op, entries: j.entries(of: op)))
            #expect(!resumed.passed && resumed.reason == "interrupted by a restart")
            #expect(await h.engine.snapshot().containers[9901] == nil, "the orphan scratch guest is destroyed")
            // A journal that names a guest it did not create (no restore recorded): never touched.
            let op2 = "restore-test-100-other"
            try j.append(op: op2, kind: RestoreTester.kind, step: "begin", data: ["vmid": "100", "scratch": "101", "volid": "x"])
            _ = try await tester(h, j).resume(op: op2, entries: j.entries(of: op2))
            #expect(await h.engine.snapshot().containers[101] != nil, "guest 101 is not ours: left alone")
        }
    }

    /// Killed after asking PVE for the scratch restore but before journaling its UPID (the random
    /// kill soak left scratch guest 9900 behind this way): the restart finds the request in PVE's
    /// task list — a vzrestore of exactly that vmid by the agent's own token, after `begin` —
    /// journals it and destroys the orphan. The same vmid restored by another token is left alone.
    @Test func aKillBeforeTheRestoreIsJournaledStillFindsAndDestroysTheOrphan() async throws {
        try await withSim { h in
            let j = try journal()
            await h.engine.setAppHealth(vmid: 100, json: Self.healthy)
            try await backUp(h, 100)
            let volid = try #require(
                try await h.client().storageContent(node: "pve1", storage: "pbs-felhom", content: "backup", vmid: 100).first?.volid)
            func restore(_ c: PVEClient, into vmid: Int) async throws {
                var spec = ContainerCreateSpec(vmid: vmid, ostemplate: volid, restore: true)
                spec.rootfs = "local-lvm:4"
                _ = try await c.waitTask(try await c.createContainer(node: "pve1", spec), initialInterval: .milliseconds(10))
            }
            let op = "restore-test-100-unrecorded"
            try j.append(op: op, kind: RestoreTester.kind, step: "begin", data: ["vmid": "100", "scratch": "9902", "volid": volid])
            try await restore(try h.client(), into: 9902)  // asked for; the kill came before the journal line
            let resumed = try #require(try await tester(h, j).resume(op: op, entries: j.entries(of: op)))
            #expect(resumed.reason == RestoreTester.interrupted)
            #expect(await h.engine.snapshot().containers[9902] == nil, "the orphan scratch guest is destroyed")
            #expect(j.entries(of: op).map(\.step) == ["begin", "restore", "destroyed", "done"])
            #expect(j.entries(of: op)[1].data["found"] == "task list")

            // Someone else (the root token) restored into the scratch vmid: not this operation's.
            let op2 = "restore-test-100-theirs"
            try j.append(op: op2, kind: RestoreTester.kind, step: "begin", data: ["vmid": "100", "scratch": "9903", "volid": volid])
            try await restore(try h.rootClient(), into: 9903)
            _ = try await tester(h, j).resume(op: op2, entries: j.entries(of: op2))
            #expect(await h.engine.snapshot().containers[9903] != nil, "not created by this agent: left alone")
            #expect(!j.entries(of: op2).contains { $0.step == "restore" || $0.step == "destroyed" })
        }
    }
}
