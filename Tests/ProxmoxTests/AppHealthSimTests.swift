import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

/// The guest's app health as a restore test reads it: the controller's `stacks list --json`, carried
/// by the simulated guest, captured by vzdump, brought back by a restore, read through the fenced
/// `pct exec` — and refused when the guest's answer is not the documented JSON.
@Suite struct AppHealthSimTests {
    let node = "pve1"
    let healthy = #"[{"name":"photos","state":"running","protected":false,"services":[{"name":"app","state":"running"}]}]"#

    @Test func theAnswerTravelsThroughBackupAndRestore() async throws {
        try await withSim { h in
            let c = try h.client()
            let backend = PrivilegedBackend(runner: SimCommandRunner(engine: h.engine))
            await h.engine.setAppHealth(vmid: 100, json: healthy)
            #expect(try await backend.stacks(vmid: 100) == [.init(name: "photos", state: "running")])
            let up = try #require(try await c.vzdump(node: node, VzdumpOptions(vmids: [100], storage: "pbs-felhom")).upid)
            _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
            let volid = try #require(
                try await c.storageContent(node: node, storage: "pbs-felhom", content: "backup", vmid: 100).max { ($0.ctime ?? 0) < ($1.ctime ?? 0) }?
                    .volid)
            var restore = ContainerCreateSpec(vmid: 150, ostemplate: volid, restore: true)
            restore.rootfs = "local-lvm:8"
            _ = try await c.waitTask(try await c.createContainer(node: node, restore), initialInterval: .milliseconds(10))
            // Stopped: the controller does not answer.
            await #expect(throws: PrivilegedError.self) { _ = try await backend.stacks(vmid: 150) }
            _ = try await c.waitTask(try await c.startContainer(node: node, vmid: 150), initialInterval: .milliseconds(10))
            #expect(try await backend.stacks(vmid: 150) == [.init(name: "photos", state: "running")], "restored with the guest")
            await #expect(throws: PrivilegedError.self) { _ = try await backend.stacks(vmid: 999) }
        }
    }

    @Test func aGuestsAnswerThatIsNotTheDocumentedJSONIsRefused() throws {
        for bad in ["", "not json", #"{"name":"x"}"#, #"[{"name":"x"}]"#, #"[{"name":"x","state":"exploded"}]"#] {
            #expect(throws: PrivilegedError.self, "\(bad)") { try PrivilegedBackend.parseStacks(bad) }
        }
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.stacksListArguments(vmid: 5) }
        #expect(try PrivilegedBackend.stacksListArguments(vmid: 120) == ["exec", "120", "--", "felhom-controller", "stacks", "list", "--json"])
    }
}
