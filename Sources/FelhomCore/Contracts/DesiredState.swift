import Foundation

/// What one host should look like (SPEC §1 rule 7: infrastructure only, never apps): its guests
/// with their specs and run state, the storage policy and the versions to run.
///
/// The hub stores and publishes it; the agent reconciles towards it. Both read it through
/// ``DesiredState/decode(_:)`` so a bad document is refused with the JSON path of what is wrong.
public struct DesiredState: Codable, Sendable, Equatable {
    /// One mount point of a guest beyond its root disk.
    public struct MountPoint: Codable, Sendable, Equatable {
        /// `mp0` … `mp255`.
        public var key: String
        /// Absolute path inside the guest.
        public var path: String
        public var sizeGB: Int
        /// Whether vzdump includes it.
        public var backup: Bool
        /// A bulk volume (media): must not be backed up with the guest (SPEC §4 storage manifest).
        public var bulk: Bool
        /// Whether the volume is snapshotted to object storage (issue 17, docs/object-storage.md;
        /// default true). Encoded only when false, so states written before it keep their bytes.
        public var backupEnabled: Bool

        public init(key: String, path: String, sizeGB: Int, backup: Bool, bulk: Bool, backupEnabled: Bool = true) {
            self.key = key
            self.path = path
            self.sizeGB = sizeGB
            self.backup = backup
            self.bulk = bulk
            self.backupEnabled = backupEnabled
        }

        enum CodingKeys: String, CodingKey {
            case key, path, backup, bulk
            case sizeGB = "size_gb"
            case backupEnabled = "backup_enabled"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            key = try c.decode(String.self, forKey: .key)
            path = try c.decode(String.self, forKey: .path)
            sizeGB = try c.decode(Int.self, forKey: .sizeGB)
            backup = try c.decode(Bool.self, forKey: .backup)
            bulk = try c.decode(Bool.self, forKey: .bulk)
            backupEnabled = try c.decodeIfPresent(Bool.self, forKey: .backupEnabled) ?? true
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(key, forKey: .key)
            try c.encode(path, forKey: .path)
            try c.encode(sizeGB, forKey: .sizeGB)
            try c.encode(backup, forKey: .backup)
            try c.encode(bulk, forKey: .bulk)
            if !backupEnabled { try c.encode(false, forKey: .backupEnabled) }
        }
    }

    /// Whether a guest should run.
    public enum RunState: String, Codable, Sendable, CaseIterable { case running, stopped }

    /// One guest.
    public struct Guest: Codable, Sendable, Equatable {
        public var vmid: Int
        public var name: String
        /// Decimal vCPU (0.25, 0.5, 1, 2 …): a proportional weight, not a hard limit (SPEC §6).
        public var cpu: Double
        /// Hard memory cap in MiB.
        public var memoryMB: Int
        /// Root disk size in GiB.
        public var diskGB: Int
        public var runState: RunState
        public var description: String
        public var mountPoints: [MountPoint]
        /// A scratch guest (restore test): the agent may destroy it without a signature.
        public var ephemeral: Bool
        /// Whether the agent backs this guest up daily (default true). `false` opts the guest out:
        /// no scheduled backup, no restore test, no `backup_overdue` alarm.
        public var backup: Bool
        /// A hard CPU limit in vCPUs (PVE `cpulimit`); nil: none, `cpu` is only a weight (ADR 0012).
        public var cpuLimit: Double?
        /// Whether the guest gets a public IPv4 address (counts against `max_public_ipv4`).
        public var publicIPv4: Bool

        public init(
            vmid: Int, name: String, cpu: Double, memoryMB: Int, diskGB: Int, runState: RunState, description: String = "",
            mountPoints: [MountPoint] = [], ephemeral: Bool = false, backup: Bool = true, cpuLimit: Double? = nil, publicIPv4: Bool = false
        ) {
            self.cpuLimit = cpuLimit
            self.publicIPv4 = publicIPv4
            self.vmid = vmid
            self.name = name
            self.cpu = cpu
            self.memoryMB = memoryMB
            self.diskGB = diskGB
            self.runState = runState
            self.description = description
            self.mountPoints = mountPoints
            self.ephemeral = ephemeral
            self.backup = backup
        }

        enum CodingKeys: String, CodingKey {
            case vmid, name, cpu, description, ephemeral, backup
            case memoryMB = "memory_mb"
            case diskGB = "disk_gb"
            case runState = "run_state"
            case mountPoints = "mount_points"
            case cpuLimit = "cpu_limit"
            case publicIPv4 = "public_ipv4"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            vmid = try c.decode(Int.self, forKey: .vmid)
            name = try c.decode(String.self, forKey: .name)
            cpu = try c.decode(Double.self, forKey: .cpu)
            memoryMB = try c.decode(Int.self, forKey: .memoryMB)
            diskGB = try c.decode(Int.self, forKey: .diskGB)
            runState = try c.decodeIfPresent(RunState.self, forKey: .runState) ?? .running
            description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
            mountPoints = try c.decodeIfPresent([MountPoint].self, forKey: .mountPoints) ?? []
            ephemeral = try c.decodeIfPresent(Bool.self, forKey: .ephemeral) ?? false
            backup = try c.decodeIfPresent(Bool.self, forKey: .backup) ?? true
            cpuLimit = try c.decodeIfPresent(Double.self, forKey: .cpuLimit)
            publicIPv4 = try c.decodeIfPresent(Bool.self, forKey: .publicIPv4) ?? false
        }

        /// `backup` is written only when the guest opts out, `cpu_limit` only when set,
        /// `public_ipv4` only when true (older readers see the same bytes as before).
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(vmid, forKey: .vmid)
            try c.encode(name, forKey: .name)
            try c.encode(cpu, forKey: .cpu)
            try c.encode(memoryMB, forKey: .memoryMB)
            try c.encode(diskGB, forKey: .diskGB)
            try c.encode(runState, forKey: .runState)
            try c.encode(description, forKey: .description)
            try c.encode(mountPoints, forKey: .mountPoints)
            try c.encode(ephemeral, forKey: .ephemeral)
            if !backup { try c.encode(backup, forKey: .backup) }
            if let cpuLimit { try c.encode(cpuLimit, forKey: .cpuLimit) }
            if publicIPv4 { try c.encode(publicIPv4, forKey: .publicIPv4) }
        }

        /// PVE `cores`: enough visible cores for the share (at least 1).
        public var cores: Int { max(1, Int(cpu.rounded(.up))) }
        /// PVE `cpuunits`: the proportional weight, 100 per vCPU (PVE's cgroup v2 default is 100).
        public var cpuunits: Int { max(1, Int((cpu * 100).rounded())) }
    }

    /// How the host's guests are backed up.
    public struct StoragePolicy: Codable, Sendable, Equatable {
        /// The PVE storage that receives backups (a PBS storage in production).
        public var backupStorage: String?
        /// Local hour (0–23) of the daily backup.
        public var backupHour: Int
        /// Backups to keep.
        public var keepLast: Int

        public init(backupStorage: String? = nil, backupHour: Int = 2, keepLast: Int = 14) {
            self.backupStorage = backupStorage
            self.backupHour = backupHour
            self.keepLast = keepLast
        }

        enum CodingKeys: String, CodingKey {
            case backupStorage = "backup_storage"
            case backupHour = "backup_hour"
            case keepLast = "keep_last"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            backupStorage = try c.decodeIfPresent(String.self, forKey: .backupStorage)
            backupHour = try c.decodeIfPresent(Int.self, forKey: .backupHour) ?? 2
            keepLast = try c.decodeIfPresent(Int.self, forKey: .keepLast) ?? 14
        }
    }

    /// Something the operator asked the box to do once (`POST /api/v1/hosts/{id}/requests`): an
    /// app-consistent backup or a restore test of one guest now. The hub keeps the latest
    /// ``maxRequests`` in every published generation; the agent acts on each `id` once.
    public struct Request: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable, CaseIterable {
            case backup
            case restoreTest = "restore_test"
        }
        /// Unique per host, `[a-z0-9-]{1,40}` (it becomes part of journal operation ids).
        public var id: String
        public var kind: Kind
        public var vmid: Int
        /// RFC 3339 time of the request (informational).
        public var requestedAt: String?

        public init(id: String, kind: Kind, vmid: Int, requestedAt: String? = nil) {
            self.id = id
            self.kind = kind
            self.vmid = vmid
            self.requestedAt = requestedAt
        }

        enum CodingKeys: String, CodingKey {
            case id, kind, vmid
            case requestedAt = "requested_at"
        }
    }

    /// The bulk-volume rule (SPEC §4, seed review B2): a volume of this many GiB or more is bulk —
    /// it must be its own mount point with `bulk: true, backup: false`, never inside the root disk
    /// (where vzdump would capture it, and Docker named volumes live).
    public static let bulkThresholdGB = 500

    /// The operator's policy for one disk the box reported (the storage handshake, SPEC §1 rule 7):
    /// what it is for, its label, whether it is the default place for new guest data.
    public struct DiskPolicy: Codable, Sendable, Equatable {
        /// The filesystem UUID the box reported (`storage_targets`).
        public var uuid: String
        public var label: String
        public var role: StorageTarget.Role
        public var isDefault: Bool

        public init(uuid: String, label: String, role: StorageTarget.Role, isDefault: Bool = false) {
            self.uuid = uuid
            self.label = label
            self.role = role
            self.isDefault = isDefault
        }

        enum CodingKeys: String, CodingKey {
            case uuid, label, role
            case isDefault = "default"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            uuid = try c.decode(String.self, forKey: .uuid)
            label = try c.decode(String.self, forKey: .label)
            role = try c.decode(StorageTarget.Role.self, forKey: .role)
            isDefault = try c.decodeIfPresent(Bool.self, forKey: .isDefault) ?? false
        }
    }

    /// A public route (ADR 0009, SPEC §6 "Routes"): a TCP entry point on the host that the
    /// agent's proxy relays to a port of one guest. With `proxy_protocol: "v2"` every connection
    /// starts with a PROXY v2 header carrying the real client address — only for a backend that
    /// is set up to expect it, which the operator acknowledges with
    /// `backend_expects_proxy_protocol: true` (otherwise the header is refused here).
    public struct Route: Codable, Sendable, Equatable {
        public enum ProxyProtocol: String, Codable, Sendable, CaseIterable {
            case off, v2
        }
        /// Stable id (`a-z`, `0-9`, `-`; 1–40 characters).
        public var id: String
        public var guestVMID: Int
        /// The host's public port (1–65535).
        public var listenPort: Int
        /// The guest's port (1–65535).
        public var targetPort: Int
        /// Only `tcp`.
        public var proto: String
        public var proxyProtocol: ProxyProtocol
        /// The operator's acknowledgement that the backend accepts a PROXY header.
        public var backendExpectsProxyProtocol: Bool
        /// With `v2`: what the active probe sends after the PROXY v2 LOCAL header — the
        /// protocol's opening (e.g. `"GET / HTTP/1.0\r\n\r\n"`), for a backend that would
        /// otherwise wait silently on garbage. A PROXY receiver answers it as a request; one that
        /// reads the header as payload answers `400` or closes. Printable ASCII, CR, LF and tab;
        /// at most 256 characters. Absent: the header alone.
        public var probeHello: String?

        /// The longest ``probeHello``.
        public static let maxProbeHello = 256

        public init(
            id: String, guestVMID: Int, listenPort: Int, targetPort: Int, proxyProtocol: ProxyProtocol = .off,
            backendExpectsProxyProtocol: Bool = false, probeHello: String? = nil
        ) {
            self.id = id
            self.guestVMID = guestVMID
            self.listenPort = listenPort
            self.targetPort = targetPort
            self.proto = "tcp"
            self.proxyProtocol = proxyProtocol
            self.backendExpectsProxyProtocol = backendExpectsProxyProtocol
            self.probeHello = probeHello
        }

        enum CodingKeys: String, CodingKey {
            case id
            case guestVMID = "guest_vmid"
            case listenPort = "listen_port"
            case targetPort = "target_port"
            case proto = "protocol"
            case proxyProtocol = "proxy_protocol"
            case backendExpectsProxyProtocol = "backend_expects_proxy_protocol"
            case probeHello = "probe_hello"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            guestVMID = try c.decode(Int.self, forKey: .guestVMID)
            listenPort = try c.decode(Int.self, forKey: .listenPort)
            targetPort = try c.decode(Int.self, forKey: .targetPort)
            proto = try c.decodeIfPresent(String.self, forKey: .proto) ?? "tcp"
            proxyProtocol = try c.decodeIfPresent(ProxyProtocol.self, forKey: .proxyProtocol) ?? .off
            backendExpectsProxyProtocol = try c.decodeIfPresent(Bool.self, forKey: .backendExpectsProxyProtocol) ?? false
            probeHello = try c.decodeIfPresent(String.self, forKey: .probeHello)
        }
    }

    /// How many routes a host carries at most.
    public static let maxRoutes = 256

    /// A filesystem UUID as the box's fenced `mount UUID=…` accepts it (ext4/xfs/btrfs, or a vfat/exfat serial).
    public static let filesystemUUIDPattern =
        #"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}"#

    /// How many requests a published state carries (older ones drop off).
    public static let maxRequests = 20

    public var guests: [Guest]
    public var storagePolicy: StoragePolicy
    /// Component → version (`agent`, `controller`).
    public var versions: [String: String]
    /// One-off operator requests (hub-managed: a draft's own list is replaced at publish).
    public var requests: [Request]
    /// Policies for the box's disks (by filesystem UUID).
    public var storage: [DiskPolicy]
    /// Public routes (TCP entry points to guest ports).
    public var routes: [Route]

    public init(
        guests: [Guest] = [], storagePolicy: StoragePolicy = StoragePolicy(), versions: [String: String] = [:], requests: [Request] = [],
        storage: [DiskPolicy] = [], routes: [Route] = []
    ) {
        self.guests = guests
        self.storagePolicy = storagePolicy
        self.versions = versions
        self.requests = requests
        self.storage = storage
        self.routes = routes
    }

    enum CodingKeys: String, CodingKey {
        case guests, versions, requests, storage, routes
        case storagePolicy = "storage_policy"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guests = try c.decodeIfPresent([Guest].self, forKey: .guests) ?? []
        storagePolicy = try c.decodeIfPresent(StoragePolicy.self, forKey: .storagePolicy) ?? StoragePolicy()
        versions = try c.decodeIfPresent([String: String].self, forKey: .versions) ?? [:]
        requests = try c.decodeIfPresent([Request].self, forKey: .requests) ?? []
        storage = try c.decodeIfPresent([DiskPolicy].self, forKey: .storage) ?? []
        routes = try c.decodeIfPresent([Route].self, forKey: .routes) ?? []
    }

    /// Encodes `requests` only when there are any (older documents stay byte-identical).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(guests, forKey: .guests)
        try c.encode(storagePolicy, forKey: .storagePolicy)
        try c.encode(versions, forKey: .versions)
        if !requests.isEmpty { try c.encode(requests, forKey: .requests) }
        if !storage.isEmpty { try c.encode(storage, forKey: .storage) }
        if !routes.isEmpty { try c.encode(routes, forKey: .routes) }
    }

    /// Decodes and validates; errors name the JSON path.
    public static func decode(_ data: Data) throws -> DesiredState {
        let d: DesiredState = try ContractCoding.decode(data)
        try d.validate()
        return d
    }

    /// Decodes an operator-written document strictly: an unknown key anywhere is refused with
    /// its JSON path (`$.guests[0].nmae: unknown key`), then types and rules as ``decode(_:)``.
    /// Agents decode published states leniently (``decode(_:)``): a newer hub may add fields.
    public static func decodeStrict(_ data: Data) throws -> DesiredState {
        if let doc = try? JSONValue.parse(data), let path = schema.unknownKeys(in: doc).first {
            throw ContractError(path: path, message: "unknown key")
        }
        return try decode(data)
    }

    /// Every key a desired state may contain.
    public static let schema: KeySchema = .object([
        "guests": .array(
            .object([
                "vmid": .any, "name": .any, "cpu": .any, "memory_mb": .any, "disk_gb": .any, "run_state": .any,
                "description": .any, "ephemeral": .any, "backup": .any, "cpu_limit": .any, "public_ipv4": .any,
                "mount_points": .array(.object(["key": .any, "path": .any, "size_gb": .any, "backup": .any, "bulk": .any, "backup_enabled": .any])),
            ])),
        "storage_policy": .object(["backup_storage": .any, "backup_hour": .any, "keep_last": .any]),
        "versions": .map(.any),
        "requests": .array(.object(["id": .any, "kind": .any, "vmid": .any, "requested_at": .any])),
        "storage": .array(.object(["uuid": .any, "label": .any, "role": .any, "default": .any])),
        "routes": .array(
            .object([
                "id": .any, "guest_vmid": .any, "listen_port": .any, "target_port": .any, "protocol": .any, "proxy_protocol": .any,
                "backend_expects_proxy_protocol": .any, "probe_hello": .any,
            ])),
    ])

    public func encoded() -> Data { ContractCoding.encode(self) }

    /// Rules beyond types.
    public func validate() throws {
        var vmids = Set<Int>()
        var names = Set<String>()
        for (i, g) in guests.enumerated() {
            let p = "$.guests[\(i)]"
            guard (100...999_999_999).contains(g.vmid) else { throw ContractError(path: "\(p).vmid", message: "must be 100…999999999") }
            guard vmids.insert(g.vmid).inserted else { throw ContractError(path: "\(p).vmid", message: "duplicate vmid \(g.vmid)") }
            guard Pattern.whole(g.name, #"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"#) else {
                throw ContractError(path: "\(p).name", message: "must be a host name: a-z, 0-9 and '-', at most 63 characters")
            }
            guard names.insert(g.name).inserted else { throw ContractError(path: "\(p).name", message: "duplicate name '\(g.name)'") }
            guard g.cpu.isFinite, g.cpu >= 0.01 - 1e-9, g.cpu <= 512 else {
                throw ContractError(path: "\(p).cpu", message: "must be a positive number of vCPUs (e.g. 0.5, 1, 2)")
            }
            guard abs(g.cpu * 100 - (g.cpu * 100).rounded()) <= 1e-6 else {
                throw ContractError(path: "\(p).cpu", message: "at most two decimals (e.g. 0.25)")
            }
            if let limit = g.cpuLimit {
                guard limit.isFinite, limit >= 0.01 - 1e-9, limit <= 8192, abs(limit * 100 - (limit * 100).rounded()) <= 1e-6 else {
                    throw ContractError(path: "\(p).cpu_limit", message: "must be a positive number of vCPUs with at most two decimals (e.g. 1.5)")
                }
            }
            guard g.memoryMB > 0 else { throw ContractError(path: "\(p).memory_mb", message: "memory must be positive (MiB)") }
            guard g.memoryMB >= 16 else { throw ContractError(path: "\(p).memory_mb", message: "must be at least 16 MiB") }
            guard g.diskGB > 0 else { throw ContractError(path: "\(p).disk_gb", message: "disk must be positive (GiB)") }
            guard g.diskGB < Self.bulkThresholdGB else {
                throw ContractError(
                    path: "\(p).disk_gb",
                    message:
                        "guest \(g.name): a \(g.diskGB) GiB root disk would carry bulk data (media) inside every backup; keep it under \(Self.bulkThresholdGB) GiB and put media on a mount point with bulk=true, backup=false"
                )
            }
            guard g.description.unicodeScalars.count <= 8192 else {
                throw ContractError(path: "\(p).description", message: "at most 8192 characters")
            }
            var keys = Set<String>()
            for (j, m) in g.mountPoints.enumerated() {
                let mp = "\(p).mount_points[\(j)]"
                guard Pattern.whole(m.key, #"mp([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])"#) else {
                    throw ContractError(path: "\(mp).key", message: "must be mp0 … mp255")
                }
                guard keys.insert(m.key).inserted else { throw ContractError(path: "\(mp).key", message: "duplicate mount point \(m.key)") }
                // By scalars: "/" followed by a combining mark is one Character, and hasPrefix("/") would miss it.
                guard m.path.unicodeScalars.first == "/", m.path.unicodeScalars.count > 1, !m.path.unicodeScalars.contains(",") else {
                    throw ContractError(path: "\(mp).path", message: "must be an absolute path other than / (no commas)")
                }
                guard m.sizeGB > 0 else { throw ContractError(path: "\(mp).size_gb", message: "must be positive (GiB)") }
                if m.bulk && m.backup {
                    throw ContractError(path: "\(mp).backup", message: "a bulk volume must have backup=false (it would bloat every backup)")
                }
                if m.sizeGB >= Self.bulkThresholdGB && m.backup {
                    throw ContractError(
                        path: "\(mp).backup",
                        message:
                            "guest \(g.name): a \(m.sizeGB) GiB volume is bulk (\(Self.bulkThresholdGB) GiB or more): set bulk=true and backup=false, or it rides in every backup"
                    )
                }
            }
        }
        let sp = storagePolicy
        guard (0...23).contains(sp.backupHour) else { throw ContractError(path: "$.storage_policy.backup_hour", message: "must be 0…23") }
        guard (1...1000).contains(sp.keepLast) else { throw ContractError(path: "$.storage_policy.keep_last", message: "must be 1…1000") }
        for (k, v) in versions {
            guard Pattern.whole(v, #"[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?"#) else {
                throw ContractError(path: "$.versions.\(k)", message: "must be a version like 1.2.3")
            }
        }
        guard storage.count <= 64 else { throw ContractError(path: "$.storage", message: "at most 64 disks") }
        var disks = Set<String>()
        for (i, d) in storage.enumerated() {
            let p = "$.storage[\(i)]"
            guard Pattern.whole(d.uuid, Self.filesystemUUIDPattern) else {
                throw ContractError(path: "\(p).uuid", message: "must be a filesystem UUID as the box reported it (8-4-4-4-12 hex, or XXXX-XXXX)")
            }
            guard disks.insert(d.uuid.lowercased()).inserted else { throw ContractError(path: "\(p).uuid", message: "duplicate disk \(d.uuid)") }
            guard !d.label.isEmpty, d.label.unicodeScalars.count <= 80, d.label.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
            else {
                throw ContractError(path: "\(p).label", message: "must be 1–80 printable characters")
            }
        }
        guard storage.filter(\.isDefault).count <= 1 else {
            throw ContractError(path: "$.storage", message: "at most one disk may be the default")
        }
        guard requests.count <= Self.maxRequests else {
            throw ContractError(path: "$.requests", message: "at most \(Self.maxRequests) requests")
        }
        var ids = Set<String>()
        for (i, r) in requests.enumerated() {
            guard Pattern.whole(r.id, #"[a-z0-9-]{1,40}"#) else {
                throw ContractError(path: "$.requests[\(i)].id", message: "must be 1–40 characters of a-z, 0-9 and '-'")
            }
            guard ids.insert(r.id).inserted else { throw ContractError(path: "$.requests[\(i)].id", message: "duplicate request id '\(r.id)'") }
            guard vmids.contains(r.vmid) else {
                throw ContractError(path: "$.requests[\(i)].vmid", message: "guest \(r.vmid) is not in this desired state")
            }
        }
        try validateRoutes(guests: vmids)
    }

    /// Routes (ADR 0009): ids and listen ports unique, ports 1–65535, `tcp` only, a guest of this
    /// desired state, and PROXY v2 only with the operator's acknowledgement.
    func validateRoutes(guests vmids: Set<Int>) throws {
        guard routes.count <= Self.maxRoutes else { throw ContractError(path: "$.routes", message: "at most \(Self.maxRoutes) routes") }
        var ids = Set<String>()
        var ports = Set<Int>()
        for (i, r) in routes.enumerated() {
            let p = "$.routes[\(i)]"
            guard Pattern.whole(r.id, #"[a-z0-9][a-z0-9-]{0,39}"#) else {
                throw ContractError(path: "\(p).id", message: "must be 1–40 characters of a-z, 0-9 and '-' (not starting with '-')")
            }
            guard ids.insert(r.id).inserted else { throw ContractError(path: "\(p).id", message: "duplicate route id '\(r.id)'") }
            guard vmids.contains(r.guestVMID) else {
                throw ContractError(path: "\(p).guest_vmid", message: "guest \(r.guestVMID) is not in this desired state")
            }
            guard (1...65535).contains(r.listenPort) else { throw ContractError(path: "\(p).listen_port", message: "must be 1…65535") }
            guard ports.insert(r.listenPort).inserted else {
                throw ContractError(path: "\(p).listen_port", message: "listen port \(r.listenPort) is already used by another route")
            }
            guard (1...65535).contains(r.targetPort) else { throw ContractError(path: "\(p).target_port", message: "must be 1…65535") }
            guard r.proto == "tcp" else { throw ContractError(path: "\(p).protocol", message: "must be tcp") }
            if r.proxyProtocol == .v2 && !r.backendExpectsProxyProtocol {
                throw ContractError(
                    path: "\(p).backend_expects_proxy_protocol",
                    message:
                        "must be true for proxy_protocol v2: the backend must be set up to accept the PROXY header (HAProxy accept-proxy, nginx proxy_protocol), or it reads the header as garbage (ADR 0009)"
                )
            }
            if let hello = r.probeHello {
                guard r.proxyProtocol == .v2 else {
                    throw ContractError(path: "\(p).probe_hello", message: "only for proxy_protocol v2 (an off route's probe is a TCP connect)")
                }
                let scalars = hello.unicodeScalars
                guard !scalars.isEmpty, scalars.count <= Route.maxProbeHello else {
                    throw ContractError(path: "\(p).probe_hello", message: "must be 1–\(Route.maxProbeHello) characters")
                }
                guard scalars.allSatisfy({ (0x20...0x7E).contains($0.value) || $0 == "\r" || $0 == "\n" || $0 == "\t" }) else {
                    throw ContractError(path: "\(p).probe_hello", message: "must be printable ASCII, CR, LF or tab")
                }
            }
        }
    }
}

/// How a desired guest compares with a reported one, field by field, on normalized values.
///
/// One comparison for the hub's drift view and the agent's plan: PVE appends a newline to
/// `description`, memory is MiB, disk GiB.
public enum GuestComparison {
    /// A field that differs: name, desired value, actual value (as text).
    public struct Difference: Codable, Sendable, Equatable {
        public var field: String
        public var desired: String
        public var actual: String
        public init(field: String, desired: String, actual: String) {
            self.field = field
            self.desired = desired
            self.actual = actual
        }
    }

    /// PVE stores descriptions with a trailing newline; compare without it.
    public static func normalizedDescription(_ s: String) -> String {
        var t = s.replacingOccurrences(of: "\r\n", with: "\n")
        while t.hasSuffix("\n") { t.removeLast() }
        return t
    }

    /// What was observed of a guest's config; `nil` is a field that could not be read (never compared,
    /// so never written).
    public struct Observed: Sendable, Equatable {
        public var cores: Int?
        public var cpuunits: Int?
        public var memory: Int?
        public var description: String?
        /// Root disk in GiB.
        public var disk: Int64?
        /// PVE `cpulimit` (0: no limit).
        public var cpulimit: Double?
        public init(cores: Int?, cpuunits: Int?, memory: Int?, description: String?, disk: Int64? = nil, cpulimit: Double? = nil) {
            self.cpulimit = cpulimit
            self.cores = cores
            self.cpuunits = cpuunits
            self.memory = memory
            self.description = description
            self.disk = disk
        }
    }

    /// The one comparison (config only, not run state), shared by the agent's plan and the hub's
    /// drift view. Field names are PVE config keys and `desired` is the value to write (`disk` is
    /// reported, not written: a root disk only grows through a resize).
    public static func differences(_ d: DesiredState.Guest, _ s: Observed) -> [Difference] {
        var out: [Difference] = []
        if let cores = s.cores, cores != d.cores { out.append(.init(field: "cores", desired: "\(d.cores)", actual: "\(cores)")) }
        if let units = s.cpuunits, units != d.cpuunits { out.append(.init(field: "cpuunits", desired: "\(d.cpuunits)", actual: "\(units)")) }
        if let memory = s.memory, memory != d.memoryMB { out.append(.init(field: "memory", desired: "\(d.memoryMB)", actual: "\(memory)")) }
        if let text = s.description, normalizedDescription(text) != normalizedDescription(d.description) {
            out.append(.init(field: "description", desired: normalizedDescription(d.description), actual: normalizedDescription(text)))
        }
        if let limit = s.cpulimit {
            // An empty desired value removes the key (no limit).
            let want = d.cpuLimit ?? 0
            if abs(limit - want) > 1e-6 {
                out.append(.init(field: "cpulimit", desired: want == 0 ? "" : cpuLimitText(want), actual: cpuLimitText(limit)))
            }
        }
        if let disk = s.disk, disk < Int64(d.diskGB) {
            out.append(.init(field: "disk", desired: "\(d.diskGB)", actual: "\(disk)"))
        }
        return out
    }

    /// ``differences(_:_:)`` against a host report's guest spec.
    public static func specDifferences(_ d: DesiredState.Guest, _ s: HostReport.GuestSpec) -> [Difference] {
        differences(
            d, Observed(cores: s.cores, cpuunits: s.cpuunits, memory: s.memory, description: s.description, disk: s.disk, cpulimit: s.cpulimit))
    }

    /// A CPU limit as PVE writes it: `1.5`, `2` (at most two decimals).
    public static func cpuLimitText(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let whole = hundredths / 100
        let fraction = hundredths % 100
        if fraction == 0 { return String(whole) }
        return fraction % 10 == 0 ? "\(whole).\(fraction / 10)" : "\(whole).\(String(format: "%02d", fraction))"
    }
}
