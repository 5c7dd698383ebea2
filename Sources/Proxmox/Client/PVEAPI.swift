import FelhomCore
import Foundation

/// The Proxmox VE operations Felhom uses, as a protocol so the agent can be tested with fakes.
///
/// Mutations that Proxmox runs as tasks return a ``UPID``; wait for them with
/// ``PVEAPI/waitTask(_:timeout:)``. A config update is synchronous (Proxmox answers `null`).
public protocol PVEAPI: Sendable {
    func version() async throws -> PVEVersion
    func nodes() async throws -> [PVENode]
    func nodeStatus(node: String) async throws -> PVENodeStatus
    func containers(node: String) async throws -> [PVEGuestStatus]
    func containerStatus(node: String, vmid: Int) async throws -> PVEGuestStatus
    /// The config; `current: true` returns the active values without pending changes.
    func containerConfig(node: String, vmid: Int, current: Bool) async throws -> PVEGuestConfig
    func storages() async throws -> [PVEStorageConfig]
    /// The container's network interfaces as seen inside it (`GET …/interfaces`); nil while it
    /// is stopped.
    func containerInterfaces(node: String, vmid: Int) async throws -> [PVEInterface]?
    func nodeStorages(node: String) async throws -> [PVENodeStorage]
    func storageContent(node: String, storage: String, content: String?, vmid: Int?) async throws -> [PVEStorageContent]
    func snapshots(node: String, vmid: Int) async throws -> [PVESnapshot]
    func taskStatus(_ upid: UPID) async throws -> PVETaskStatus
    /// `GET /nodes/{node}/tasks` (`source=all`): the tasks this client's own token started
    /// (running and finished, newest first), of `type` on `vmid` when given — how an operation
    /// killed between asking for a task and recording its UPID finds out whether it was asked.
    func ownTasks(node: String, vmid: Int?, type: String?) async throws -> [UPID]
    /// Log lines from `start` (0-based offset); `limit` 0 means all.
    func taskLog(_ upid: UPID, start: Int, limit: Int) async throws -> [PVETaskLogLine]

    func createContainer(node: String, _ spec: ContainerCreateSpec) async throws -> UPID
    func destroyContainer(node: String, vmid: Int, purge: Bool, force: Bool) async throws -> UPID
    func startContainer(node: String, vmid: Int) async throws -> UPID
    func stopContainer(node: String, vmid: Int) async throws -> UPID
    func shutdownContainer(node: String, vmid: Int, timeout: Int?, forceStop: Bool) async throws -> UPID
    /// Synchronous; Proxmox answers `null`. `digest` guards against concurrent edits.
    func updateContainerConfig(node: String, vmid: Int, _ update: ContainerConfigUpdate) async throws
    func createSnapshot(node: String, vmid: Int, name: String, description: String?) async throws -> UPID
    func rollbackSnapshot(node: String, vmid: Int, name: String, start: Bool) async throws -> UPID
    func deleteSnapshot(node: String, vmid: Int, name: String, force: Bool) async throws -> UPID
    func vzdump(node: String, _ options: VzdumpOptions) async throws -> PVEVzdumpResult
    /// `POST /storage` (`pvesm add`), synchronous. Proxmox activates the storage before it saves
    /// the entry: a `dir` storage with `is_mountpoint` is refused while nothing is mounted there.
    func createStorage(_ spec: StorageCreateSpec) async throws
    /// `PUT /storage/{storage}`: the content types it holds.
    func updateStorage(_ storage: String, content: [String]) async throws
    /// `DELETE /storage/{storage}`: removes the entry only; Proxmox leaves the data where it is.
    func deleteStorage(_ storage: String) async throws
}

extension PVEAPI {
    /// The oldest task of `type` on `vmid` that this client's own token started no earlier than
    /// `since` (whole seconds, one second of slack), or nil when there is none or the task list
    /// cannot be read — how an operation killed between asking for a task and journaling its UPID
    /// finds the task it asked for.
    public func ownTask(node: String, vmid: Int, type: String, since: Date) async -> UPID? {
        let floor = UInt32(max(0, since.timeIntervalSince1970.rounded(.down) - 1))
        return try? await ownTasks(node: node, vmid: vmid, type: type).filter { $0.starttime >= floor }.last  // newest first
    }
}

/// Parameters of `POST /storage` for the storages the agent adds: a `dir` storage on a disk the
/// agent mounted, offline (not written to) whenever the disk is not mounted there.
public struct StorageCreateSpec: Sendable, Equatable {
    public var storage: String
    public var type: String = "dir"
    public var path: String
    public var content: [String]
    /// `is_mountpoint=yes`: Proxmox treats the storage as offline while the path is not a mount
    /// point, so nothing is ever written to the system disk underneath an unplugged USB disk.
    public var isMountpoint: Bool = true
    /// Limit to these nodes (empty: all).
    public var nodes: [String] = []

    public init(storage: String, path: String, content: [String], nodes: [String] = []) {
        self.storage = storage
        self.path = path
        self.content = content
        self.nodes = nodes
    }
}

/// Parameters of `POST /nodes/{node}/lxc` (create, or restore from a backup volid).
public struct ContainerCreateSpec: Sendable, Equatable {
    public var vmid: Int
    /// A `vztmpl` volid for create, or a backup volid with `restore = true`.
    public var ostemplate: String
    public var restore: Bool = false
    /// Overwrite an existing container (restore only).
    public var force: Bool = false
    public var storage: String?
    public var hostname: String?
    public var memoryMiB: Int?
    public var swapMiB: Int?
    public var cores: Int?
    public var cpuunits: Int?
    public var features: String?
    public var description: String?
    public var rootfs: String?
    public var mountPoints: [Int: MountPoint] = [:]
    public var net0: String?
    public var unprivileged: Bool?
    public var start: Bool = false
    public var unique: Bool = false
    public var tags: String?

    public init(vmid: Int, ostemplate: String, restore: Bool = false) {
        self.vmid = vmid
        self.ostemplate = ostemplate
        self.restore = restore
    }

    var formFields: [(String, String)] {
        var f: [(String, String)] = [("vmid", String(vmid)), ("ostemplate", ostemplate)]
        if restore { f.append(("restore", "1")) }
        if force { f.append(("force", "1")) }
        if let storage { f.append(("storage", storage)) }
        if let hostname { f.append(("hostname", hostname)) }
        if let memoryMiB { f.append(("memory", String(memoryMiB))) }
        if let swapMiB { f.append(("swap", String(swapMiB))) }
        if let cores { f.append(("cores", String(cores))) }
        if let cpuunits { f.append(("cpuunits", String(cpuunits))) }
        if let features { f.append(("features", features)) }
        if let description { f.append(("description", description)) }
        if let rootfs { f.append(("rootfs", rootfs)) }
        for (i, mp) in mountPoints.sorted(by: { $0.key < $1.key }) { f.append(("mp\(i)", mp.description)) }
        if let net0 { f.append(("net0", net0)) }
        if let unprivileged { f.append(("unprivileged", unprivileged ? "1" : "0")) }
        if start { f.append(("start", "1")) }
        if unique { f.append(("unique", "1")) }
        if let tags { f.append(("tags", tags)) }
        return f
    }
}

/// Parameters of `PUT …/lxc/{vmid}/config`.
public struct ContainerConfigUpdate: Sendable, Equatable {
    /// Keys to set, with values as Proxmox expects them (`"2048"`, `"keyctl=1,nesting=1"`).
    public var set: [String: String]
    /// Keys to remove.
    public var delete: [String]
    /// Refuse the change if the config's digest is no longer this one.
    public var digest: String?

    public init(set: [String: String] = [:], delete: [String] = [], digest: String? = nil) {
        self.set = set
        self.delete = delete
        self.digest = digest
    }
}

/// Parameters of `POST /nodes/{node}/vzdump`.
public struct VzdumpOptions: Sendable, Equatable {
    public var vmids: [Int]
    public var storage: String
    /// `snapshot` (default), `suspend` or `stop`.
    public var mode: String = "snapshot"
    public var compress: String? = "zstd"
    public var notesTemplate: String?
    public var protected: Bool = false
    /// Prune per the storage's retention after the backup (Proxmox's default is 1).
    public var remove: Bool = false

    public init(vmids: [Int], storage: String) {
        self.vmids = vmids
        self.storage = storage
    }
}
