import Foundation

/// What a host agent sends the hub on every poll (SPEC §2). Field names are pinned by the golden
/// fixture `host-report.golden.json`, which both sides test. Collections are always present
/// (`[]`, never `null`).
public struct HostReport: Codable, Sendable, Equatable {
    /// Host metrics.
    public struct Metrics: Codable, Sendable, Equatable {
        /// CPU use as a fraction of all cores (0…1).
        public var cpu: Double
        public var memoryTotal: Int64
        public var memoryUsed: Int64
        public var diskTotal: Int64
        public var diskUsed: Int64
        public var uptime: Int64
        public var load: [Double]
        public var kernel: String
        public var pveVersion: String
        /// The host's CPU count (PVE's `cpuinfo.cpus`): the base of its allocatable CPU (ADR 0012).
        /// Absent in reports of older agents.
        public var cores: Int?

        public init(
            cpu: Double, memoryTotal: Int64, memoryUsed: Int64, diskTotal: Int64, diskUsed: Int64, uptime: Int64,
            load: [Double], kernel: String, pveVersion: String, cores: Int? = nil
        ) {
            self.cores = cores
            self.cpu = cpu
            self.memoryTotal = memoryTotal
            self.memoryUsed = memoryUsed
            self.diskTotal = diskTotal
            self.diskUsed = diskUsed
            self.uptime = uptime
            self.load = load
            self.kernel = kernel
            self.pveVersion = pveVersion
        }

        enum CodingKeys: String, CodingKey {
            case cpu, uptime, load, kernel, cores
            case memoryTotal = "memory_total"
            case memoryUsed = "memory_used"
            case diskTotal = "disk_total"
            case diskUsed = "disk_used"
            case pveVersion = "pve_version"
        }
    }

    /// A guest mount point as reported.
    public struct MountPoint: Codable, Sendable, Equatable {
        /// `rootfs`, `mp0`, …
        public var key: String
        public var volume: String
        public var path: String?
        public var backup: Bool
        public var size: String?

        public init(key: String, volume: String, path: String?, backup: Bool, size: String?) {
            self.key = key
            self.volume = volume
            self.path = path
            self.backup = backup
            self.size = size
        }
    }

    /// A guest's reported spec (omitted when its config could not be read).
    public struct GuestSpec: Codable, Sendable, Equatable {
        public var cores: Int?
        public var cpuunits: Int?
        public var memory: Int
        public var disk: Int64?
        public var description: String
        public var mountPoints: [MountPoint]
        /// PVE `cpulimit` (0: none); absent in reports of older agents.
        public var cpulimit: Double?

        public init(
            cores: Int?, cpuunits: Int?, memory: Int, cpulimit: Double? = nil, disk: Int64?, description: String, mountPoints: [MountPoint]
        ) {
            self.cpulimit = cpulimit
            self.cores = cores
            self.cpuunits = cpuunits
            self.memory = memory
            self.disk = disk
            self.description = description
            self.mountPoints = mountPoints
        }

        enum CodingKeys: String, CodingKey {
            case cores, cpuunits, memory, disk, description, cpulimit
            case mountPoints = "mount_points"
        }
    }

    /// One guest.
    public struct Guest: Codable, Sendable, Equatable {
        public enum Status: String, Codable, Sendable {
            case running, stopped, unknown

            /// A value a newer agent may send decodes as `unknown` instead of failing the report.
            public init(from decoder: Decoder) throws {
                self = Self(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .unknown
            }
        }
        public var vmid: Int
        public var name: String
        public var status: Status
        public var spec: GuestSpec?

        public init(vmid: Int, name: String, status: Status, spec: GuestSpec?) {
            self.vmid = vmid
            self.name = name
            self.status = status
            self.spec = spec
        }
    }

    /// State of the host's cloudflared tunnel.
    public enum TunnelStatus: String, Codable, Sendable {
        /// `degraded`: cloudflared runs but has no connection to Cloudflare's edge.
        case running, stopped, degraded, unknown

        /// A value a newer agent may send decodes as `unknown` instead of failing the report.
        public init(from decoder: Decoder) throws {
            self = Self(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .unknown
        }
    }

    public var reportedAt: Date
    public var agentVersion: String
    public var host: Metrics
    public var guests: [Guest]
    public var cloudflared: TunnelStatus
    /// The storage manifest: every non-system disk by filesystem UUID.
    public var storageTargets: [StorageTarget]
    /// Per guest: last backup success and failure (typed since issue 14).
    public var backups: [BackupRecord]
    /// Per guest: the last restore test.
    public var restoreTests: [RestoreTestRecord]
    /// What the backup storage holds for this box (newest first, at most 10 per guest).
    public var pbsSnapshots: [PBSSnapshotRecord]
    /// The last finished operations of the agent (newest first, at most 50).
    public var auditTail: [AuditRecord]
    public var journalInFlight: [JSONValue]
    /// The desired generation the agent has fully applied (absent before its first success, and
    /// from agents that predate it): the hub alarms when a published generation stays unapplied.
    public var appliedGeneration: Int64?
    /// The routes the agent runs (absent from agents without routes, and older ones).
    public var routes: [RouteStatus]?
    /// How each guest volume is protected off-box (absent when volume snapshots are not set up,
    /// and from older agents).
    public var volumeSnapshots: [VolumeProtection]?
    /// Why `cloudflared` is what it is (absent when the agent does not supervise a tunnel).
    public var cloudflaredReason: String?
    /// SMART and temperatures (absent from agents that do not read hardware, and older ones).
    public var hardware: HardwareHealth?

    public init(
        reportedAt: Date, agentVersion: String, host: Metrics, guests: [Guest], cloudflared: TunnelStatus,
        storageTargets: [StorageTarget] = [], backups: [BackupRecord] = [], restoreTests: [RestoreTestRecord] = [],
        pbsSnapshots: [PBSSnapshotRecord] = [], auditTail: [AuditRecord] = [], journalInFlight: [JSONValue] = []
    ) {
        self.reportedAt = reportedAt
        self.agentVersion = agentVersion
        self.host = host
        self.guests = guests
        self.cloudflared = cloudflared
        self.storageTargets = storageTargets
        self.backups = backups
        self.restoreTests = restoreTests
        self.pbsSnapshots = pbsSnapshots
        self.auditTail = auditTail
        self.journalInFlight = journalInFlight
    }

    enum CodingKeys: String, CodingKey {
        case host, guests, cloudflared, backups
        case reportedAt = "reported_at"
        case agentVersion = "agent_version"
        case storageTargets = "storage_targets"
        case restoreTests = "restore_tests"
        case pbsSnapshots = "pbs_snapshots"
        case auditTail = "audit_tail"
        case journalInFlight = "journal_in_flight"
        case appliedGeneration = "applied_generation"
        case routes
        case volumeSnapshots = "volume_snapshots"
        case hardware
        case cloudflaredReason = "cloudflared_reason"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        reportedAt = try c.decodeContractTime(forKey: .reportedAt)
        agentVersion = try c.decode(String.self, forKey: .agentVersion)
        host = try c.decode(Metrics.self, forKey: .host)
        guests = try c.decode([Guest].self, forKey: .guests)
        cloudflared = try c.decode(TunnelStatus.self, forKey: .cloudflared)
        storageTargets = try c.decode([StorageTarget].self, forKey: .storageTargets)
        backups = try c.decode([BackupRecord].self, forKey: .backups)
        restoreTests = try c.decode([RestoreTestRecord].self, forKey: .restoreTests)
        pbsSnapshots = try c.decode([PBSSnapshotRecord].self, forKey: .pbsSnapshots)
        auditTail = try c.decode([AuditRecord].self, forKey: .auditTail)
        journalInFlight = try c.decode([JSONValue].self, forKey: .journalInFlight)
        appliedGeneration = try c.decodeIfPresent(Int64.self, forKey: .appliedGeneration)
        routes = try c.decodeIfPresent([RouteStatus].self, forKey: .routes)
        volumeSnapshots = try c.decodeIfPresent([VolumeProtection].self, forKey: .volumeSnapshots)
        hardware = try c.decodeIfPresent(HardwareHealth.self, forKey: .hardware)
        cloudflaredReason = try c.decodeIfPresent(String.self, forKey: .cloudflaredReason)
    }

    /// Decodes and checks a report; errors name the JSON path (`$.guests[1].status: …`).
    public static func decode(_ data: Data) throws -> HostReport {
        let r: HostReport = try ContractCoding.decode(data)
        try r.validate()
        return r
    }

    /// Rules beyond types.
    public func validate() throws {
        if !(0...1).contains(host.cpu) { throw ContractError(path: "$.host.cpu", message: "must be between 0 and 1") }
        for (k, v) in [
            ("memory_total", host.memoryTotal), ("memory_used", host.memoryUsed), ("disk_total", host.diskTotal),
            ("disk_used", host.diskUsed), ("uptime", host.uptime),
        ] where v < 0 {
            throw ContractError(path: "$.host.\(k)", message: "must not be negative")
        }
        if let cores = host.cores, !(0...65536).contains(cores) { throw ContractError(path: "$.host.cores", message: "must be 0…65536") }
        if let routes {
            guard routes.count <= DesiredState.maxRoutes else {
                throw ContractError(path: "$.routes", message: "at most \(DesiredState.maxRoutes) routes")
            }
            for (i, r) in routes.enumerated() {
                guard !r.id.isEmpty, r.id.unicodeScalars.count <= 40 else {
                    throw ContractError(path: "$.routes[\(i)].id", message: "must be 1–40 characters")
                }
                guard (1...65535).contains(r.listenPort) else { throw ContractError(path: "$.routes[\(i)].listen_port", message: "must be 1…65535") }
                guard r.openConnections >= 0 else { throw ContractError(path: "$.routes[\(i)].open_connections", message: "must not be negative") }
                for (k, v) in [("reason", r.reason), ("message", r.message)] where (v?.unicodeScalars.count ?? 0) > 500 {
                    throw ContractError(path: "$.routes[\(i)].\(k)", message: "at most 500 characters")
                }
            }
        }
        if let volumes = volumeSnapshots {
            guard volumes.count <= 4096 else { throw ContractError(path: "$.volume_snapshots", message: "at most 4096 volumes") }
            for (i, v) in volumes.enumerated() {
                for (k, text, max) in [
                    ("key", v.key, 16), ("volume_id", v.volumeID, 300), ("reason", v.reason ?? "", 100), ("message", v.message ?? "", 500),
                ]
                where text.unicodeScalars.count > max {
                    throw ContractError(path: "$.volume_snapshots[\(i)].\(k)", message: "at most \(max) characters")
                }
            }
        }
        try hardware?.validate(path: "$.hardware")
        if let r = cloudflaredReason, r.utf8.count > 500 { throw ContractError(path: "$.cloudflared_reason", message: "at most 500 bytes") }
        if let generation = appliedGeneration, generation < 0 {
            throw ContractError(path: "$.applied_generation", message: "must not be negative")
        }
        for (i, b) in backups.enumerated() where !(100...999_999_999).contains(b.vmid) {
            throw ContractError(path: "$.backups[\(i)].vmid", message: "must be 100…999999999")
        }
        for (i, r) in restoreTests.enumerated() {
            guard (100...999_999_999).contains(r.vmid) else {
                throw ContractError(path: "$.restore_tests[\(i)].vmid", message: "must be 100…999999999")
            }
            for (k, v) in [("restore_seconds", r.restoreSeconds), ("healthy_seconds", r.healthySeconds)] where (v ?? 0) < 0 {
                throw ContractError(path: "$.restore_tests[\(i)].\(k)", message: "must not be negative")
            }
        }
        guard storageTargets.count <= 256 else { throw ContractError(path: "$.storage_targets", message: "at most 256 disks") }
        var uuids = Set<String>()
        for (i, t) in storageTargets.enumerated() {
            guard !t.uuid.isEmpty, t.uuid.utf8.count <= 64 else {
                throw ContractError(path: "$.storage_targets[\(i)].uuid", message: "must be a filesystem UUID (1–64 characters)")
            }
            guard uuids.insert(t.uuid).inserted else {
                throw ContractError(path: "$.storage_targets[\(i)].uuid", message: "duplicate disk \(t.uuid)")
            }
            for (k, v) in [("size", t.size), ("free", t.free)] where (v ?? 0) < 0 {
                throw ContractError(path: "$.storage_targets[\(i)].\(k)", message: "must not be negative")
            }
        }
        guard pbsSnapshots.count <= 5000 else { throw ContractError(path: "$.pbs_snapshots", message: "at most 5000 entries") }
        for (i, p) in pbsSnapshots.enumerated() {
            guard (100...999_999_999).contains(p.vmid) else {
                throw ContractError(path: "$.pbs_snapshots[\(i)].vmid", message: "must be 100…999999999")
            }
            guard p.size >= 0 else { throw ContractError(path: "$.pbs_snapshots[\(i)].size", message: "must not be negative") }
        }
        guard auditTail.count <= 200 else { throw ContractError(path: "$.audit_tail", message: "at most 200 entries") }
        for (i, a) in auditTail.enumerated() where !["done", "failed"].contains(a.outcome) {
            throw ContractError(path: "$.audit_tail[\(i)].outcome", message: "must be done or failed")
        }
        var seen = Set<Int>()
        for (i, g) in guests.enumerated() {
            guard (100...999_999_999).contains(g.vmid) else { throw ContractError(path: "$.guests[\(i)].vmid", message: "must be 100…999999999") }
            guard seen.insert(g.vmid).inserted else { throw ContractError(path: "$.guests[\(i)].vmid", message: "duplicate vmid \(g.vmid)") }
            if let s = g.spec, s.memory <= 0 { throw ContractError(path: "$.guests[\(i)].spec.memory", message: "must be positive") }
        }
    }

    /// The report as JSON (ISO 8601 times, sorted keys).
    public func encoded() -> Data { ContractCoding.encode(self) }
}

/// How every shared contract is read and written: JSON with ISO 8601 times and sorted keys;
/// decoding errors become ``ContractError``s naming the JSON path.
public enum ContractCoding {
    public static func decode<T: Decodable>(_ data: Data) throws -> T {
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            guard let date = RFC3339.parseWholeSeconds(try container.decode(String.self)) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "must be an RFC 3339 time like 2026-01-01T00:00:00Z")
            }
            return date
        }
        do { return try dec.decode(T.self, from: data) } catch let e as DecodingError {
            throw ContractError(path: e.pathText, message: e.reason)
        } catch {
            throw ContractError(path: "$", message: "not valid JSON")
        }
    }

    public static func encode<T: Encodable>(_ value: T) -> Data {
        let enc = JSONEncoder()
        enc.dateEncodingStrategy = .iso8601
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Contract types hold only strings, numbers, arrays and objects: encoding cannot fail.
        return (try? enc.encode(value)) ?? Data()
    }
}

extension KeyedDecodingContainer {
    /// An RFC 3339 time, parsed here rather than by a date strategy so a bad value reports its path.
    func decodeContractTime(forKey key: Key) throws -> Date {
        guard let date = RFC3339.parseWholeSeconds(try decode(String.self, forKey: key)) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "must be an RFC 3339 UTC time like 2026-01-01T00:00:00Z")
        }
        return date
    }
}

/// The hub's answer to a report or poll.
public struct ControlEnvelope: Codable, Sendable, Equatable {
    /// Seconds until the next report; the agent clamps it to [60, 3600].
    public var pollIntervalSeconds: Int
    /// The operator blocked this host: the agent reports but changes nothing.
    public var blocked: Bool
    public var desiredGeneration: Int64
    public var hasSignedOps: Bool

    public init(pollIntervalSeconds: Int, blocked: Bool, desiredGeneration: Int64, hasSignedOps: Bool) {
        self.pollIntervalSeconds = pollIntervalSeconds
        self.blocked = blocked
        self.desiredGeneration = desiredGeneration
        self.hasSignedOps = hasSignedOps
    }

    enum CodingKeys: String, CodingKey {
        case blocked
        case pollIntervalSeconds = "poll_interval_seconds"
        case desiredGeneration = "desired_generation"
        case hasSignedOps = "has_signed_ops"
    }
}

/// A report or request that breaks the shared contract.
public struct ContractError: Error, Sendable, CustomStringConvertible {
    /// JSON path of the offending value (`$.guests[0].status`).
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
}

extension DecodingError {
    /// `$.a.b[2]` of the failing value.
    public var pathText: String {
        let ctx: Context
        var extra: [CodingKey] = []
        switch self {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): ctx = c
        case .keyNotFound(let k, let c):
            ctx = c
            extra = [k]
        @unknown default: return "$"
        }
        let p = ctx.codingPath + extra
        return p.isEmpty ? "$" : "$" + p.map { k in k.intValue.map { "[\($0)]" } ?? ".\(k.stringValue)" }.joined()
    }

    /// What is wrong, without the path.
    public var reason: String {
        switch self {
        case .typeMismatch(let t, _): return "expected \(t)"
        case .valueNotFound(let t, _): return "expected \(t), got null"
        case .keyNotFound: return "required but missing"
        case .dataCorrupted(let c): return c.debugDescription
        @unknown default: return "invalid"
        }
    }
}
