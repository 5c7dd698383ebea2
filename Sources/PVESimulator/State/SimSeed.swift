import Foundation

/// The default simulated host: node `pve1`, storages `local` (dir), `local-lvm` (lvmthin) and `pbs`
/// (Proxmox Backup Server, client-side encrypted), a running and a stopped container, a selftest
/// container, a golden template backup, and three tokens (root, FelhomAgent role, PVEAuditor).
public enum SimSeed {
    /// The golden template backup volid the agent provisions new guests from.
    public static let goldenTemplateVolid = "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"
    /// The OS template volid.
    public static let osTemplateVolid = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    /// The guest the agent selftest may snapshot and roll back.
    public static let selftestVmid = 199
    public static let rootTokenID = "root@pam!felhom-root"
    public static let agentTokenID = "felhom@pve!agent"
    public static let auditorTokenID = "auditor@pve!readonly"

    /// A fresh default state with random token secrets.
    public static func defaultState(now: Date = Date()) -> SimState {
        let node = "pve1"
        var local = SimStorage(id: "local", type: "dir", content: ["backup", "iso", "vztmpl", "rootdir", "images"])
        local.path = "/var/lib/vz"
        var lvm = SimStorage(id: "local-lvm", type: "lvmthin", content: ["rootdir", "images"])
        lvm.totalBytes = 800 << 30
        var pbs = SimStorage(id: "pbs-felhom", type: "pbs", content: ["backup"])
        pbs.server = "pbs.felhom.internal"
        pbs.datastore = "felhom"
        pbs.namespace = "customers/box-1"
        pbs.username = "felhom-box-1@pbs!backup"
        pbs.fingerprint = "9c:2f:41:0a:7e:5b:d3:18:64:af:0c:92:e1:57:3b:c8:10:4d:6e:a9:f2:35:87:0b:ce:61:d4:28:93:7a:b5:e0"
        pbs.encryptionKeyFingerprint = "a9:ee:c8:02:13:5c:44:1b:90:7d:2e:6f:38:c1:05:aa:d2:53:2c:98:61:e4:0f:7b:3a:96:c5:18:2d:53:2c:98"
        pbs.totalBytes = 2 << 40

        let t0 = Int64(now.timeIntervalSince1970) - 86_400
        var volumes: [SimVolume] = [
            SimVolume(volid: osTemplateVolid, storage: "local", content: "vztmpl", format: "tzst", size: 126_322_345, ctime: t0)
        ]
        func disk(_ vmid: Int, _ n: Int, _ gib: Int64, _ data: String) -> SimVolume {
            SimVolume(
                volid: "local-lvm:vm-\(vmid)-disk-\(n)", storage: "local-lvm", content: "rootdir", format: "raw",
                size: gib << 30, vmid: vmid, ctime: t0, data: data)
        }
        let golden: [String: String] = [
            "arch": "amd64", "cores": "1", "features": "keyctl=1,nesting=1", "hostname": "felhom-golden",
            "memory": "512", "swap": "512", "ostype": "debian", "unprivileged": "1",
            "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:90:00,ip=dhcp,type=veth",
            "rootfs": "local-lvm:vm-9000-disk-0,size=4G", "description": "felhom golden template v1\n",
        ]
        var goldenBackup = SimVolume(
            volid: goldenTemplateVolid, storage: "local", content: "backup", format: "tar.zst", size: 412_000_000, vmid: 9000,
            ctime: 1_767_225_600, notes: "felhom golden template v1", protected: true)
        goldenBackup.backupConfig = golden
        goldenBackup.capturedData = ["rootfs": "golden-template-v1"]
        volumes.append(goldenBackup)

        var web = SimContainer(
            vmid: 100, node: node,
            config: [
                "arch": "amd64", "cores": "2", "cpuunits": "200", "features": "keyctl=1,nesting=1", "hostname": "web",
                "memory": "2048", "swap": "512", "ostype": "debian", "unprivileged": "1", "onboot": "1", "tags": "felhom",
                "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:2E:C5:7E,ip=dhcp,type=veth",
                "rootfs": "local-lvm:vm-100-disk-0,size=8G",
                "mp0": "local-lvm:vm-100-disk-1,mp=/srv/media,backup=0,size=32G",
                "description": "customer apps: photos, passwords\n",
            ], running: true)
        web.startedAt = Double(t0)
        volumes += [disk(100, 0, 8, "web-rootfs"), disk(100, 1, 32, "web-media")]

        let db = SimContainer(
            vmid: 101, node: node,
            config: [
                "arch": "amd64", "cores": "1", "cpuunits": "100", "features": "keyctl=1,nesting=1", "hostname": "db",
                "memory": "1024", "swap": "512", "ostype": "debian", "unprivileged": "1", "tags": "felhom",
                "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:4A:10:01,ip=dhcp,type=veth",
                "rootfs": "local-lvm:vm-101-disk-0,size=8G",
                "mp0": "local-lvm:vm-101-disk-1,mp=/var/lib/postgresql,backup=1,size=16G",
            ])
        volumes += [disk(101, 0, 8, "db-rootfs"), disk(101, 1, 16, "db-data")]

        let selftest = SimContainer(
            vmid: selftestVmid, node: node,
            config: [
                "arch": "amd64", "cores": "1", "hostname": "felhom-selftest", "memory": "256", "swap": "0", "ostype": "debian",
                "unprivileged": "1", "rootfs": "local-lvm:vm-\(selftestVmid)-disk-0,size=2G",
                "description": "scratch guest for felhom-agent selftest\n", "tags": "felhom-selftest",
            ])
        volumes.append(disk(selftestVmid, 0, 2, "selftest-rootfs"))

        var pbsBackup = SimVolume(
            volid: "pbs-felhom:backup/ct/100/2026-01-01T02:00:00Z", storage: "pbs-felhom", content: "backup", format: "pbs-ct",
            size: 1_073_741_824, vmid: 100, ctime: 1_767_232_800, notes: "web nightly")
        pbsBackup.encrypted = pbs.encryptionKeyFingerprint
        pbsBackup.verification = "ok"
        pbsBackup.backupConfig = web.config
        pbsBackup.capturedData = ["rootfs": "web-rootfs"]
        volumes.append(pbsBackup)

        func secret() -> String { UUID().uuidString.lowercased() }
        return SimState(
            nodes: [SimNode(name: node)],
            storages: [local, lvm, pbs],
            containers: [100: web, 101: db, selftestVmid: selftest],
            volumes: volumes,
            users: ["root@pam", "felhom@pve", "auditor@pve"],
            tokens: [
                SimToken(tokenid: rootTokenID, secret: secret(), privsep: false, comment: "full privileges (not root@pam itself)"),
                SimToken(tokenid: agentTokenID, secret: secret(), privsep: true, comment: "felhom-agent, FelhomAgent role"),
                SimToken(tokenid: auditorTokenID, secret: secret(), privsep: true, comment: "read-only, PVEAuditor role"),
            ],
            acls: [
                SimACL(path: "/", ugid: "felhom@pve", role: "FelhomAgent"),
                SimACL(path: "/", ugid: agentTokenID, role: "FelhomAgent"),
                SimACL(path: "/storage", ugid: "felhom@pve", role: "FelhomStorage", propagate: false),
                SimACL(path: "/storage", ugid: agentTokenID, role: "FelhomStorage", propagate: false),
                SimACL(path: "/", ugid: "auditor@pve", role: "PVEAuditor"),
                SimACL(path: "/", ugid: auditorTokenID, role: "PVEAuditor"),
            ],
            customRoles: ["FelhomAgent": Permissions.felhomAgentRole, "FelhomStorage": Permissions.felhomStorageRole])
    }
}
