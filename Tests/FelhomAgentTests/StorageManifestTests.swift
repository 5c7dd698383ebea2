import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomSigning
import FelhomTestSupport
import Foundation
import Logging
import PVESimulator
import Proxmox
import Testing

@Suite struct StorageManifestTests {
    static let usb = "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809"
    static let stick = "7A1C-33F0"
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func fs(_ uuid: String, label: String? = nil, type: String = "ext4", at: String? = nil, size: Int64 = 2 << 40)
        -> PrivilegedBackend.BlockFilesystem
    {
        .init(device: "/dev/sdb1", uuid: uuid, label: label, fstype: type, size: size, available: at == nil ? nil : size / 2, mountPoint: at)
    }

    @Test func lsblksRealOutputParsesAndTheSystemDiskIsLeftOut() throws {
        // util-linux 2.38.1's answer on this machine, plus a USB disk and an LVM member.
        let text = """
            {"blockdevices": [
              {"path": "/dev/vda", "uuid": null, "label": null, "fstype": null, "size": 274877906944, "fsavail": 77535899648, "mountpoint": "/"},
              {"path": "/dev/sda3", "uuid": "3f1c8a2e-5b7d-4e19-9c60-2d8b7a41e0f5", "label": null, "fstype": "LVM2_member", "size": 100, "fsavail": null, "mountpoint": null},
              {"path": "/dev/sdb1", "uuid": "\(Self.usb)", "label": "Media 2TB", "fstype": "ext4", "size": 2000398934016, "fsavail": null, "mountpoint": null}
            ]}
            """
        let parsed = try PrivilegedBackend.parseFilesystems(text)
        #expect(parsed.count == 3 && parsed[2].label == "Media 2TB" && parsed[2].size == 2_000_398_934_016 && parsed[0].mountPoint == "/")
        var m = StorageManifest()
        let (events, mounts) = m.observe(parsed, policies: [], now: t0)
        #expect(m.disks.map(\.uuid) == [Self.usb], "only the data disk; not the system disk or the LVM member")
        #expect(m.disks.first?.state == .unassigned && events.map(\.type) == ["storage_detected"] && mounts.isEmpty)
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.parseFilesystems("lsblk: command not found") }
        #expect(try PrivilegedBackend.parseFilesystems(#"{"blockdevices":[{"path":"/dev/x","label":"bad\u0007label"}]}"#).first?.label == nil)
    }

    @Test func theHandshakeAssignsMountsByUUIDAndADiskComesBackAsItWas() {
        var m = StorageManifest()
        _ = m.observe([fs(Self.usb, label: "MEDIA")], policies: [], now: t0)
        let policy = DesiredState.DiskPolicy(uuid: Self.usb, label: "Média 2 TB", role: .bulk, isDefault: true)
        var (events, mounts) = m.observe([fs(Self.usb, label: "MEDIA")], policies: [policy], now: t0)
        #expect(events.isEmpty)
        #expect(mounts.map(\.at) == ["/mnt/felhom/m-dia-2-tb-1b2c3d4e"], "\(mounts)")
        m.mounted(uuid: Self.usb, at: mounts[0].at)
        #expect(m.disks[0].state == .attached && m.disks[0].role == .bulk && m.disks[0].isDefault && m.disks[0].label == "Média 2 TB")
        // Unplugged: disconnected, said once.
        (events, _) = m.observe([], policies: [policy], now: t0)
        #expect(events.map(\.type) == ["storage_disconnected"] && events[0].severity == .critical && m.disks[0].state == .disconnected)
        (events, _) = m.observe([], policies: [policy], now: t0)
        #expect(events.isEmpty)
        // Another disk shows up on the same device name: a new, unassigned disk — never the old one.
        (events, _) = m.observe([fs(Self.stick, type: "vfat")], policies: [policy], now: t0)
        #expect(events.map(\.type) == ["storage_detected"] && m.disks.count == 2 && m.disks[0].state == .disconnected)
        // The same UUID comes back: attached again and mounted where it was.
        (events, mounts) = m.observe([fs(Self.usb, at: nil), fs(Self.stick, type: "vfat")], policies: [policy], now: t0)
        #expect(events.map(\.type) == ["storage_reconnected"] && mounts.map(\.uuid) == [Self.usb])
    }

    @Test func aPolicyForAnUnknownDiskIsSaidOnceAndADecommissionedDiskStaysSo() {
        var m = StorageManifest()
        let ghost = DesiredState.DiskPolicy(uuid: "00000000-0000-4000-8000-000000000000", label: "ghost", role: .backup)
        var (events, _) = m.observe([], policies: [ghost], now: t0)
        #expect(events.map(\.type) == ["storage_policy_unknown_disk"])
        (events, _) = m.observe([], policies: [ghost], now: t0)
        #expect(events.isEmpty)
        _ = m.observe([fs(Self.usb)], policies: [], now: t0)
        m.disks[0].state = .decommissioned
        let mounts = m.observe([fs(Self.usb)], policies: [.init(uuid: Self.usb, label: "again", role: .bulk)], now: t0).mounts
        #expect(mounts.isEmpty && m.disks[0].state == .decommissioned, "never silently used again")
    }

    @Test func theDesiredStateChecksDiskPolicies() throws {
        func state(_ disks: [DesiredState.DiskPolicy]) -> DesiredState { DesiredState(storage: disks) }
        let a = DesiredState.DiskPolicy(uuid: Self.usb, label: "A", role: .bulk, isDefault: true)
        try state([a]).validate()
        #expect((#expect(throws: ContractError.self) { try state([a, a]).validate() })?.path == "$.storage[1].uuid")
        var b = a
        b.uuid = Self.stick
        #expect((#expect(throws: ContractError.self) { try state([a, b]).validate() })?.path == "$.storage")
        b.isDefault = false
        b.uuid = "/dev/sdb1"
        #expect((#expect(throws: ContractError.self) { try state([b]).validate() })?.path == "$.storage[0].uuid")
        b.uuid = Self.stick
        b.label = ""
        #expect((#expect(throws: ContractError.self) { try state([b]).validate() })?.path == "$.storage[0].label")
    }

    /// On the simulator through the agent's cycle: a USB disk plugged into the host is reported
    /// unassigned, the operator's policy mounts it by UUID, unplugging it is reported, and the host
    /// report carries the manifest typed.
    @Test func theAgentKeepsTheManifestThroughItsCycle() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agentWithStorage()
            await w.sim.engine.attachDisk(SimDisk(device: "/dev/sdb1", uuid: Self.usb, label: "MEDIA", sizeBytes: 2 << 40, usedBytes: 1 << 40))
            try await w.publish([])
            try await agent.cycle()
            #expect(try await agent.hostReport()?.storageTargets.first?.state == .unassigned)
            #expect(try await w.op.events(hostID: w.hostID, type: "storage_detected").count == 1)
            var desired = DesiredState()
            desired.storage = [.init(uuid: Self.usb, label: "Media", role: .bulk, isDefault: true)]
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            let disk = await w.sim.engine.snapshot().disks?.first
            #expect(disk?.mountPoint == "/mnt/felhom/media-1b2c3d4e", "mounted by UUID through the fenced backend")
            try await agent.cycle()
            let target = try #require(try await agent.hostReport()?.storageTargets.first)
            #expect(target.state == .attached && target.role == .bulk && target.isDefault && target.free == 1 << 40)
            await w.sim.engine.detachDisk(uuid: Self.usb)
            try await agent.cycle()
            #expect(try await w.op.events(hostID: w.hostID, type: "storage_disconnected").first?.data["uuid"]?.stringValue == Self.usb)
            #expect(try await agent.hostReport()?.storageTargets.first?.state == .disconnected)
        }
    }
}

extension AgentWorld {
    /// An agent whose fenced backend is the simulator's (the storage manifest runs).
    func agentWithStorage() async throws -> Agent {
        var logger = Logger(label: "agent")
        logger.logLevel = .critical
        return try Agent(
            hostID: hostID, hub: try HubClient(url: hubURL, key: hostKey), pve: try sim.client(), node: "pve1", stateDir: stateDir,
            signers: [PinnedSigner(name: "operator", key: pinned.publicKey)],
            provision: .init(node: "pve1", goldenTemplate: SimSeed.goldenTemplateVolid, storage: "local-lvm", taskTimeout: .seconds(30)),
            longPollSeconds: 1, logger: logger, storageRunner: SimCommandRunner(engine: sim.engine))
    }
}
