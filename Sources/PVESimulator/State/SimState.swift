import Foundation

/// Everything the simulated Proxmox host knows, as plain data (persisted as JSON in the state dir).
public struct SimState: Codable, Sendable {
    public var nodes: [SimNode]
    public var storages: [SimStorage]
    public var containers: [Int: SimContainer]
    public var volumes: [SimVolume]
    public var tasks: [SimTask]
    public var users: [String]
    public var tokens: [SimToken]
    public var acls: [SimACL]
    /// Extra roles beyond the built-in ones (name → privileges).
    public var customRoles: [String: [String]]
    public var faults: SimFaults
    public var settings: SimSettings
    /// Next fake worker pid.
    public var nextPid: UInt32
    /// Disks attached to the host besides its system disk (what `lsblk` lists); nil: none.
    public var disks: [SimDisk]?

    public init(
        nodes: [SimNode], storages: [SimStorage], containers: [Int: SimContainer] = [:], volumes: [SimVolume] = [],
        tasks: [SimTask] = [], users: [String] = ["root@pam"], tokens: [SimToken] = [], acls: [SimACL] = [],
        customRoles: [String: [String]] = [:], faults: SimFaults = SimFaults(), settings: SimSettings = SimSettings(),
        nextPid: UInt32 = 0x0001_2000
    ) {
        self.nodes = nodes
        self.storages = storages
        self.containers = containers
        self.volumes = volumes
        self.tasks = tasks
        self.users = users
        self.tokens = tokens
        self.acls = acls
        self.customRoles = customRoles
        self.faults = faults
        self.settings = settings
        self.nextPid = nextPid
    }
}

/// A disk attached to the simulated host (a USB drive, a second SATA disk), with one filesystem.
public struct SimDisk: Codable, Sendable, Equatable {
    public var device: String
    public var uuid: String
    public var label: String?
    public var fstype: String
    public var sizeBytes: Int64
    public var usedBytes: Int64
    /// Where it is mounted (`mount UUID=…` through the fenced backend), if at all.
    public var mountPoint: String?

    public init(device: String, uuid: String, label: String? = nil, fstype: String = "ext4", sizeBytes: Int64, usedBytes: Int64 = 0) {
        self.device = device
        self.uuid = uuid
        self.label = label
        self.fstype = fstype
        self.sizeBytes = sizeBytes
        self.usedBytes = usedBytes
    }
}

/// A Proxmox node.
public struct SimNode: Codable, Sendable {
    public var name: String
    public var cpus: Int = 8
    public var memoryBytes: Int64 = 32 << 30
    public var rootfsBytes: Int64 = 100 << 30
    /// Seconds since epoch when the node "booted" (for uptime).
    public var bootedAt: Double = 1_767_225_600
    public var pveVersion: String = "9.1.3"
    public var repoid: String = "c743d6c1"

    public init(name: String) { self.name = name }
}

/// A storage definition (storage.cfg entry) with its capacity.
public struct SimStorage: Codable, Sendable {
    public var id: String
    /// `dir`, `lvmthin` or `pbs`.
    public var type: String
    public var content: [String]
    public var path: String?
    public var totalBytes: Int64 = 500 << 30
    public var shared: Bool = false
    /// PBS only.
    public var server: String?
    public var datastore: String?
    public var namespace: String?
    public var username: String?
    public var fingerprint: String?
    /// PBS only: the client-side encryption key's fingerprint; `nil` means backups are plaintext.
    public var encryptionKeyFingerprint: String?
    /// Unreachable storages report `active: 0` and zero sizes.
    public var active: Bool = true
    /// `dir` only, `is_mountpoint=yes`: active only while a disk is mounted at `path` (its size
    /// is then the storage's size).
    public var isMountpoint: Bool?

    public init(id: String, type: String, content: [String]) {
        self.id = id
        self.type = type
        self.content = content
    }
}

/// A container: its config (raw `.conf` values), pending changes, run state and snapshots.
public struct SimContainer: Codable, Sendable {
    public var vmid: Int
    public var node: String
    /// Config keys as stored in the `.conf` file (`memory: "512"`, `description: "hello\n"`).
    public var config: [String: String]
    /// `[pve:pending]` values of a running container (applied at the next start).
    public var pending: [String: String] = [:]
    public var pendingDelete: [String] = []
    public var running: Bool = false
    public var startedAt: Double?
    public var snapshots: [SimSnapshot] = []
    /// What the guest's controller answers to `felhom-controller stacks list --json` (the apps
    /// inside): it lives on the guest's disk, so vzdump captures it and a restore brings it back.
    public var appHealth: String?
    /// The guest's IPv4 address on eth0 while it runs (`GET …/interfaces`): the static `ip=` of
    /// `net0` when there is one, else this (what DHCP gave it), else `10.0.0.<vmid % 250 + 2>`.
    public var address: String?

    public init(vmid: Int, node: String, config: [String: String], running: Bool = false) {
        self.vmid = vmid
        self.node = node
        self.config = config
        self.running = running
    }
}

/// A container snapshot.
public struct SimSnapshot: Codable, Sendable {
    public var name: String
    public var snaptime: Int64
    public var description: String
    public var parent: String?
    public var config: [String: String]
    /// The data of each mount point volume at snapshot time (rollback restores it).
    public var volumeData: [String: String]
}

/// A volume on a storage: a backup archive, a template, or a container disk.
public struct SimVolume: Codable, Sendable {
    public var volid: String
    public var storage: String
    /// `backup`, `vztmpl`, `rootdir`.
    public var content: String
    public var format: String
    public var size: Int64
    public var vmid: Int?
    public var ctime: Int64
    public var notes: String?
    public var protected: Bool = false
    /// PBS backups: the key fingerprint when client-side encrypted.
    public var encrypted: String?
    /// PBS backups: the last verification's state (`ok` or `failed`); nil before any verification.
    public var verification: String?
    /// Backups: the container config captured by vzdump.
    public var backupConfig: [String: String]?
    /// Backups: the data of each captured mount point (`rootfs`, `mp0` with `backup=1`), by config key.
    public var capturedData: [String: String]?
    /// Disks: an opaque marker for "what is written on this volume" (tests write and read it).
    public var data: String?
    /// Backups: the guest's app-health payload at backup time (see ``SimContainer/appHealth``).
    public var appHealth: String?
}

extension SimVolume {
    /// A volume (tests and tools; the simulator's own code uses the memberwise initializer).
    public init(
        volid: String, storage: String, content: String, format: String, size: Int64, vmid: Int? = nil, ctime: Int64, notes: String? = nil,
        protected: Bool = false
    ) {
        self.volid = volid
        self.storage = storage
        self.content = content
        self.format = format
        self.size = size
        self.vmid = vmid
        self.ctime = ctime
        self.notes = notes
        self.protected = protected
    }
}

/// A task (worker) with its schedule, log and effect.
public struct SimTask: Codable, Sendable {
    public var upid: String
    public var node: String
    public var type: String
    public var id: String
    /// The authenticated id that started it (`user@realm` or `user@realm!token`).
    public var authid: String
    public var pid: UInt32
    public var pstart: UInt64
    public var starttime: UInt32
    public var endsAt: Double
    /// Log lines written so far (without the final `TASK …` line until finished).
    public var log: [String]
    /// The exit status the task will end with (`OK`, `WARNINGS: n`, or an error text).
    public var exitStatus: String
    public var effect: SimTaskEffect?
    public var finished: Bool = false
    /// The vmids whose config lock this task holds, and the lock name.
    public var lockedVmids: [Int] = []
    public var lockName: String?
    /// Lines appended when the task ends successfully.
    public var successLog: [String] = []
}

/// What a task changes when it ends successfully.
public enum SimTaskEffect: Codable, Sendable {
    case start(vmid: Int)
    case stop(vmid: Int)
    case create(vmid: Int)
    case destroy(vmid: Int)
    case snapshot(vmid: Int, name: String, description: String)
    case rollback(vmid: Int, name: String, start: Bool)
    case deleteSnapshot(vmid: Int, name: String)
    case backups([SimVolume])
}

/// An API token.
public struct SimToken: Codable, Sendable {
    /// `user@realm!name`.
    public var tokenid: String
    public var secret: String
    /// Privilege separation (PVE's default is on).
    public var privsep: Bool = true
    /// Expiry as epoch seconds; 0 = never.
    public var expire: Int64 = 0
    public var comment: String?

    public init(tokenid: String, secret: String, privsep: Bool = true, expire: Int64 = 0, comment: String? = nil) {
        self.tokenid = tokenid
        self.secret = secret
        self.privsep = privsep
        self.expire = expire
        self.comment = comment
    }

    public var userid: String { String(tokenid.split(separator: "!").first ?? "") }
}

/// An ACL entry: a role for a user or token on a path.
public struct SimACL: Codable, Sendable {
    public var path: String
    /// A user id or a token id.
    public var ugid: String
    public var role: String
    public var propagate: Bool = true

    public init(path: String, ugid: String, role: String, propagate: Bool = true) {
        self.path = path
        self.ugid = ugid
        self.role = role
        self.propagate = propagate
    }
}

/// Faults to inject.
public struct SimFaults: Codable, Sendable {
    /// Added to every answer.
    public var latencyMilliseconds: Int = 0
    /// Share of API calls (0…1) answered with `596 Connection timed out` instead.
    public var serverErrorRate: Double = 0
    /// Task failures: a request path prefix (e.g. `/nodes/pve1/lxc/101/status/start`) → the error text
    /// the task ends with.
    public var taskFailures: [String: String] = [:]
    /// Tasks that end with `WARNINGS: n`: a request path prefix → n.
    public var taskWarnings: [String: Int] = [:]
    /// Locks forced onto containers (vmid → lock name), as if a backup were holding them.
    public var forcedLocks: [Int: String] = [:]
    /// PBS backups of these vmids verify as `failed` (new backups are verified at once, as with
    /// PBS's "verify new snapshots").
    public var verificationFailures: Set<Int> = []

    public init() {}
}

/// Behaviour switches.
public struct SimSettings: Codable, Sendable {
    /// Task durations in seconds by task type (`vzstart`, `vzdump`, …); `default` for the rest.
    public var taskDurations: [String: Double] = ["default": 0.3, "vzcreate": 1, "vzrestore": 1, "vzdump": 1]
    /// `modern` puts the message in the JSON body too (libpve-http-server-perl ≥ 5.2.0); `legacy`
    /// sends only `{"data":null}` (+ `errors`) with the message in the status line.
    public var errorBodyStyle: String = "modern"
    /// Delay before answering a failed authentication (PVE waits 3 s).
    public var authFailureDelaySeconds: Double = 0

    public init() {}

    func duration(_ type: String) -> Double { taskDurations[type] ?? taskDurations["default"] ?? 0.3 }
}
