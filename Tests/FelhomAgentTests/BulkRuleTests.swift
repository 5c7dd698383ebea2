import FelhomAgent
import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Testing

@Suite struct BulkRuleTests {
    @Test func pveSizesReadAsGiB() {
        #expect(BulkRule.gib("32G") == 32 && BulkRule.gib("1T") == 1024 && BulkRule.gib("512M") == 0 && BulkRule.gib("2048M") == 2)
        #expect(BulkRule.gib(nil) == nil && BulkRule.gib("big") == nil && BulkRule.gib("") == nil)
    }

    @Test func theDesiredStateRefusesABulkVolumeInBackupsOrInTheRootDisk() throws {
        func guest(_ disk: Int, _ mps: [DesiredState.MountPoint]) -> DesiredState {
            DesiredState(guests: [.init(vmid: 100, name: "web", cpu: 1, memoryMB: 512, diskGB: disk, runState: .running, mountPoints: mps)])
        }
        let big = DesiredState.MountPoint(key: "mp0", path: "/srv/media", sizeGB: 800, backup: true, bulk: false)
        #expect((#expect(throws: ContractError.self) { try guest(8, [big]).validate() })?.path == "$.guests[0].mount_points[0].backup")
        #expect((#expect(throws: ContractError.self) { try guest(600, []).validate() })?.path == "$.guests[0].disk_gb")
        var fixed = big
        fixed.backup = false
        fixed.bulk = true
        try guest(8, [fixed]).validate()
        // A path whose "/" is followed by a combining mark is still absolute (one Character, two scalars).
        fixed.path = "/\u{301}media"
        try guest(8, [fixed]).validate()
        fixed.path = "/"
        #expect((#expect(throws: ContractError.self) { try guest(8, [fixed]).validate() })?.path == "$.guests[0].mount_points[0].path")
    }

    /// Guests that break the rule anyway (changed behind the agent's back) are reported once each:
    /// one marked bulk in the desired state, one above the size threshold.
    @Test func theAgentReportsBulkMountPointsThatRideInBackupsOnce() async throws {
        let adjust: (inout SimState) -> Void = { state in
            state.containers[100]?.config["mp0"] = "local-lvm:vm-100-disk-1,mp=/srv/media,backup=1,size=600G"
        }
        try await withAgentWorld(adjust) { w in
            let agent = try await w.agent()
            let web = DesiredState.Guest(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running)
            let db = DesiredState.Guest(
                vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped,
                mountPoints: [.init(key: "mp0", path: "/var/lib/postgresql", sizeGB: 16, backup: false, bulk: true)])
            try await w.publish([web, db])
            try await agent.cycle()
            var events: [HubEvent] = []
            for _ in 0..<100 where events.count < 2 {
                events = try await w.op.events(hostID: w.hostID, type: "bulk_volume_in_backup")
                if events.count < 2 { try await Task.sleep(for: .milliseconds(50)) }
            }
            let found = Set(events.map { "\($0.data["vmid"]?.lenientInt ?? 0):\($0.data["why"]?.stringValue ?? "")" })
            #expect(found == ["100:size", "101:marked"], "\(events.map(\.data))")
            try await agent.cycle()
            #expect(try await w.op.events(hostID: w.hostID, type: "bulk_volume_in_backup").count == 2, "said once")
            #expect(
                await w.sim.engine.snapshot().containers[100]?.config["mp0"]?.contains("backup=1") == true, "the agent does not change the guest")
        }
    }
}
