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

/// The rest of the handshake and the end of a disk's life, on the simulator: an assigned disk gets
/// its Proxmox storage (a `dir` with `is_mountpoint`), a role change updates its content, and
/// `disk.decommission` is refused while any guest volume lives on it and otherwise removes the
/// storage entry and marks the disk, leaving its data alone.
@Suite struct DiskLifecycleTests {
    static let usb = StorageManifestTests.usb
    static let storageID = "felhom-1b2c3d4e"

    @Test func anAssignedDiskGetsItsStorageAndIsDecommissionedOnlyWhenEmpty() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agentWithStorage()
            await w.sim.engine.attachDisk(SimDisk(device: "/dev/sdb1", uuid: Self.usb, label: "MEDIA", sizeBytes: 2 << 40, usedBytes: 1 << 40))
            try await w.publish([])
            // Before the box reported the disk, the hub refuses a policy for it (and for any unknown disk).
            var desired = DesiredState()
            desired.storage = [.init(uuid: Self.usb, label: "Media", role: .bulk, isDefault: true)]
            let early = await #expect(throws: HubClientError.self) { try await w.op.putDesired(hostID: w.hostID, desired) }
            #expect(early?.status == 409 && early?.code == "unknown_disk" && early?.path == "$.storage[0].uuid", "\(String(describing: early))")
            try await agent.cycle()
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            var storage = try #require(await w.sim.engine.snapshot().storages.first { $0.id == Self.storageID })
            #expect(storage.type == "dir" && storage.path == "/mnt/felhom/media-1b2c3d4e" && storage.content == ["rootdir"])
            #expect(storage.isMountpoint == true, "offline whenever the disk is not mounted")
            try await agent.cycle()
            let target = try #require(try await agent.hostReport()?.storageTargets.first)
            #expect(target.pveStorage == Self.storageID && target.state == .attached)
            #expect(try await w.op.events(hostID: w.hostID, type: "storage_attached").count == 1)
            let status = try #require(try await w.rootPVE().nodeStorages(node: "pve1").first { $0.storage == Self.storageID })
            #expect(status.active && status.total == 2 << 40)

            // The operator makes it the backup disk: the storage's content follows.
            desired.storage[0].role = .backup
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            storage = try #require(await w.sim.engine.snapshot().storages.first { $0.id == Self.storageID })
            #expect(storage.content == ["backup"])
            desired.storage[0].role = .guestData
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()

            // A guest keeps a volume on it: decommission is refused, naming the guest and the volume.
            let root = try w.rootPVE()
            var spec = ContainerCreateSpec(vmid: 150, ostemplate: SimSeed.osTemplateVolid)
            spec.rootfs = "local-lvm:4"
            spec.mountPoints[0] = try MountPoint(parsing: "\(Self.storageID):8,mp=/media,backup=0")
            _ = try await root.waitTask(try await root.createContainer(node: "pve1", spec), timeout: .seconds(30))
            let unknown = await #expect(throws: HubClientError.self) {
                try await w.queueSigned("disk.decommission", vmid: nil, params: ["disk_uuid": "00000000-0000-4000-8000-000000000000"], key: w.pinned)
            }
            #expect(unknown?.code == "unknown_disk" && unknown?.path == "$.params.disk_uuid")
            let refused = try await w.queueSigned("disk.decommission", vmid: nil, params: ["disk_uuid": .string(Self.usb)], key: w.pinned)
            try await agent.cycle()
            let refusedView = try await w.op.signedOp(refused)
            #expect(refusedView.status == .rejected)
            #expect(refusedView.reason?.contains("guest 150 mp0 (\(Self.storageID):") == true, "\(refusedView.reason ?? "")")
            #expect(await w.sim.engine.snapshot().storages.contains { $0.id == Self.storageID }, "nothing changed")
            #expect(try await agent.hostReport()?.storageTargets.first?.state == .attached)

            // Emptied, it is decommissioned: the storage entry goes, the data stays, for good.
            _ = try await root.waitTask(try await root.destroyContainer(node: "pve1", vmid: 150, purge: true, force: true), timeout: .seconds(30))
            let done = try await w.queueSigned("disk.decommission", vmid: nil, params: ["disk_uuid": .string(Self.usb)], key: w.pinned)
            try await agent.cycle()
            #expect(try await w.op.signedOp(done).status == .applied)
            #expect(agent.journal.entries(of: done).map(\.step) == ["begin", "storage_removed", "decommissioned", "done"])
            let after = await w.sim.engine.snapshot()
            #expect(!after.storages.contains { $0.id == Self.storageID })
            #expect(after.disks?.first?.usedBytes == 1 << 40, "never wiped")
            try await agent.cycle()
            let gone = try #require(try await agent.hostReport()?.storageTargets.first)
            #expect(gone.state == .decommissioned && gone.pveStorage == nil && !gone.isDefault)
            #expect(
                !(await w.sim.engine.snapshot().storages.contains { $0.id == Self.storageID }), "the still-published policy does not bring it back")
            let again = await #expect(throws: HubClientError.self) {
                try await w.queueSigned("disk.decommission", vmid: nil, params: ["disk_uuid": .string(Self.usb)], key: w.pinned)
            }
            #expect(again?.status == 409)
        }
    }

    /// The simulator's `POST /storage` refuses what Proxmox refuses: a mount-point storage over a
    /// path where nothing is mounted (nothing saved), a duplicate id, a content type `dir` cannot hold.
    @Test func theSimulatorCreatesAndRemovesStoragesAsProxmoxDoes() async throws {
        try await withSim { sim in
            let root = try sim.rootClient()
            var spec = StorageCreateSpec(storage: "usb", path: "/mnt/felhom/usb", content: ["backup"])
            let unmounted = await #expect(throws: PVEError.self) { try await root.createStorage(spec) }
            #expect(unmounted?.message.contains("directory is expected to be a mount point but is not mounted") == true)
            #expect(!(await sim.engine.snapshot().storages.contains { $0.id == "usb" }))
            spec.isMountpoint = false
            try await root.createStorage(spec)
            let duplicate = await #expect(throws: PVEError.self) { try await root.createStorage(spec) }
            #expect(duplicate?.message.contains("storage ID 'usb' already defined") == true)
            let badContent = await #expect(throws: PVEError.self) { try await root.updateStorage("usb", content: ["backup", "nonsense"]) }
            #expect(badContent?.httpStatus == 400)
            try await root.deleteStorage("usb")
            let missing = await #expect(throws: PVEError.self) { try await root.deleteStorage("usb") }
            #expect(missing?.message.contains("storage 'usb' does not exist") == true)
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
