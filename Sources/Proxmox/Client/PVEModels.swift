import FelhomCore
import Foundation

/// `GET /version`.
public struct PVEVersion: Sendable, Equatable {
    public var version: String
    public var release: String
    public var repoid: String
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "version")
        version = try f.string("version")
        release = try f.string("release")
        repoid = try f.string("repoid")
    }
}

/// One item of `GET /nodes`.
public struct PVENode: Sendable, Equatable {
    public var node: String
    public var status: String
    public var uptime: Int64?
    public var cpu: Double?
    public var maxcpu: Int64?
    public var mem: Int64?
    public var maxmem: Int64?
    public var sslFingerprint: String?
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "node")
        node = try f.string("node")
        status = f.optString("status") ?? "unknown"
        uptime = try f.optInt("uptime")
        cpu = try f.optDouble("cpu")
        maxcpu = try f.optInt("maxcpu")
        mem = try f.optInt("mem")
        maxmem = try f.optInt("maxmem")
        sslFingerprint = f.optString("ssl_fingerprint")
    }
}

/// `GET /nodes/{node}/status` (the parts the agent reports).
public struct PVENodeStatus: Sendable, Equatable {
    public var uptime: Int64
    public var cpu: Double
    public var loadavg: [Double]
    public var memoryTotal: Int64
    public var memoryUsed: Int64
    public var rootfsTotal: Int64
    public var rootfsUsed: Int64
    public var kernel: String?
    public var pveVersion: String?
    public var cpuCount: Int64?
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "node status")
        uptime = try f.int("uptime")
        cpu = try f.optDouble("cpu") ?? 0
        loadavg = (json["loadavg"]?.arrayValue ?? []).compactMap { $0.lenientDouble }
        let mem = try JSONFields(json["memory"] ?? .object([:]), context: "node status.memory")
        memoryTotal = try mem.int("total")
        memoryUsed = try mem.int("used")
        let root = try JSONFields(json["rootfs"] ?? .object([:]), context: "node status.rootfs")
        rootfsTotal = try root.int("total")
        rootfsUsed = try root.int("used")
        kernel = f.optString("kversion")
        pveVersion = f.optString("pveversion")
        cpuCount = try json["cpuinfo"].map { try JSONFields($0, context: "node status.cpuinfo").optInt("cpus") } ?? nil
    }
}

/// One container as listed by `GET /nodes/{node}/lxc`, or `status/current` for one guest.
public struct PVEGuestStatus: Sendable, Equatable {
    public var vmid: Int
    /// `running` or `stopped`.
    public var status: String
    public var name: String?
    public var cpus: Double?
    public var maxmem: Int64?
    public var maxdisk: Int64?
    public var mem: Int64?
    public var disk: Int64?
    public var uptime: Int64?
    /// The config lock (`backup`, `create`, …) when one is held.
    public var lock: String?
    public var template: Bool
    public var tags: String?
    public var isRunning: Bool { status == "running" }
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "guest")
        vmid = Int(try f.int("vmid"))
        status = try f.string("status")
        name = f.optString("name")
        cpus = try f.optDouble("cpus")
        maxmem = try f.optInt("maxmem")
        maxdisk = try f.optInt("maxdisk")
        mem = try f.optInt("mem")
        disk = try f.optInt("disk")
        uptime = try f.optInt("uptime")
        let l = f.optString("lock")
        lock = (l?.isEmpty ?? true) ? nil : l
        template = try f.optBool("template") ?? false
        tags = f.optString("tags")
    }
}

/// A container's configuration (`GET …/config`), raw values plus typed accessors.
public struct PVEGuestConfig: Sendable, Equatable {
    /// Every key as Proxmox sent it (including `digest`).
    public var raw: [String: JSONValue]
    init(json: JSONValue) throws {
        guard let o = json.objectValue else {
            throw PVEError(code: .decoding, message: "config: expected an object, got \(json.kindName)")
        }
        raw = o
    }
    public init(raw: [String: JSONValue]) { self.raw = raw }

    /// A key's value as text (numbers printed), `nil` when not set.
    public func value(_ key: String) -> String? {
        switch raw[key] {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return b ? "1" : "0"
        default: return nil
        }
    }
    private func int(_ key: String) -> Int? { raw[key]?.lenientInt.map { Int($0) } }

    /// SHA-1 of the config file, for optimistic concurrency on update.
    public var digest: String? { value("digest") }
    public var hostname: String? { value("hostname") }
    public var cores: Int? { int("cores") }
    public var memory: Int? { int("memory") }
    public var swap: Int? { int("swap") }
    public var cpuunits: Int? { int("cpuunits") }
    /// `cpulimit` is a JSON string on the wire; read as a number.
    public var cpulimit: Double? { raw["cpulimit"]?.lenientDouble }
    /// The description as PVE returns it (with its trailing newline).
    public var description: String? { value("description") }
    public var features: String? { value("features") }
    public var lock: String? { value("lock") }
    public var tags: String? { value("tags") }
    public var onboot: Bool? { raw["onboot"]?.lenientBool }
    public var rootfs: MountPoint? { value("rootfs").flatMap { try? MountPoint(parsing: $0) } }
    /// `mp0`… parsed, keyed by index.
    public var mountPoints: [Int: MountPoint] {
        var out: [Int: MountPoint] = [:]
        for (k, v) in raw where k.hasPrefix("mp") {
            guard let idx = Int(k.dropFirst(2)), let s = v.stringValue, let mp = try? MountPoint(parsing: s) else { continue }
            out[idx] = mp
        }
        return out
    }
}

/// One item of `GET /storage` (storage configuration).
/// One network interface of a running container (`GET /nodes/{node}/lxc/{vmid}/interfaces`).
public struct PVEInterface: Sendable, Equatable {
    public var name: String
    /// IPv4 `address/prefix` (PVE's `inet`), if any.
    public var inet: String?
    public var inet6: String?
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "interface")
        name = try f.string("name")
        inet = f.optString("inet")
        inet6 = f.optString("inet6")
    }

    /// The IPv4 address without its prefix.
    public var ipv4: String? { inet.map { String($0.split(separator: "/").first ?? "") }.flatMap { $0.isEmpty ? nil : $0 } }
}

public struct PVEStorageConfig: Sendable, Equatable {
    public var storage: String
    public var type: String
    public var content: [String]
    public var shared: Bool
    public var disabled: Bool
    /// For `pbs`: the encryption key fingerprint (or "1"), never the key.
    public var encryptionKey: String?
    public var fingerprint: String?
    public var datastore: String?
    public var namespace: String?
    public var server: String?
    /// For `dir`: its directory.
    public var path: String?
    /// For `dir`: `yes`, `no` or a path (Proxmox keeps what was given).
    public var isMountpoint: String?
    /// For `lvm` and `lvmthin`: the volume group.
    public var vgname: String?
    /// For `lvmthin`: the thin pool.
    public var thinpool: String?
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "storage")
        vgname = f.optString("vgname")
        thinpool = f.optString("thinpool")
        path = f.optString("path")
        isMountpoint = f.optString("is_mountpoint")
        storage = try f.string("storage")
        type = try f.string("type")
        content = (f.optString("content") ?? "").split(separator: ",").map(String.init)
        shared = try f.optBool("shared") ?? false
        disabled = try f.optBool("disable") ?? false
        encryptionKey = f.optString("encryption-key")
        fingerprint = f.optString("fingerprint")
        datastore = f.optString("datastore")
        namespace = f.optString("namespace")
        server = f.optString("server")
    }
}

/// One item of `GET /nodes/{node}/storage`: a storage's status on a node.
public struct PVENodeStorage: Sendable, Equatable {
    public var storage: String
    public var type: String
    public var content: [String]
    public var active: Bool
    public var enabled: Bool
    public var total: Int64
    public var used: Int64
    public var avail: Int64
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "node storage")
        storage = try f.string("storage")
        type = try f.string("type")
        content = (f.optString("content") ?? "").split(separator: ",").map(String.init)
        active = try f.optBool("active") ?? false
        enabled = try f.optBool("enabled") ?? true
        total = try f.optInt("total") ?? 0
        used = try f.optInt("used") ?? 0
        avail = try f.optInt("avail") ?? 0
    }
}

/// One volume of `GET …/storage/{storage}/content` (backups, templates, disks).
public struct PVEStorageContent: Sendable, Equatable {
    public var volid: String
    public var content: String
    public var format: String
    public var size: Int64
    public var vmid: Int?
    public var ctime: Int64?
    public var notes: String?
    public var protected: Bool
    /// PBS: the key fingerprint, or "1" when only marked encrypted; `nil` means plaintext.
    public var encrypted: String?
    public var subtype: String?
    public var verificationState: String?
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "storage content")
        volid = try f.string("volid")
        content = f.optString("content") ?? ""
        format = f.optString("format") ?? ""
        size = try f.optInt("size") ?? 0
        vmid = try f.optInt("vmid").map { Int($0) }
        ctime = try f.optInt("ctime")
        notes = f.optString("notes")
        protected = try f.optBool("protected") ?? false
        encrypted = f.optString("encrypted")
        subtype = f.optString("subtype")
        verificationState = json["verification"]?["state"]?.stringValue
    }
}

/// One item of `GET …/snapshot`; the last is the `current` pseudo-entry.
public struct PVESnapshot: Sendable, Equatable {
    public var name: String
    public var snaptime: Int64?
    public var description: String
    public var parent: String?
    /// True for the `current` pseudo-entry ("You are here!").
    public var isCurrent: Bool { name == "current" }
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "snapshot")
        name = try f.string("name")
        snaptime = try f.optInt("snaptime")
        description = f.optString("description") ?? ""
        parent = f.optString("parent")
    }
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
public struct PVETaskStatus: Sendable, Equatable {
    public var upid: UPID
    /// `running` or `stopped`.
    public var status: String
    /// Present only when stopped: `OK`, `WARNINGS: n`, or the error text.
    public var exitStatus: String?
    public var type: String
    public var user: String
    public var tokenID: String?
    public var isRunning: Bool { status == "running" }
    /// `OK` or `WARNINGS: n` (pve-common `status_is_error` is false).
    public var succeeded: Bool {
        guard let e = exitStatus else { return false }
        return PVETaskStatus.isSuccess(e)
    }
    /// The `n` of `WARNINGS: n`, else 0.
    public var warningCount: Int {
        guard let e = exitStatus, e.hasPrefix("WARNINGS: ") else { return 0 }
        return Int(e.dropFirst(10)) ?? 0
    }
    static func isSuccess(_ exit: String) -> Bool {
        if exit == "OK" { return true }
        guard exit.hasPrefix("WARNINGS: ") else { return false }
        let n = exit.dropFirst(10)
        return !n.isEmpty && n.allSatisfy(\.isNumber)
    }
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "task status")
        upid = try UPID(parsing: try f.string("upid"))
        status = try f.string("status")
        exitStatus = f.optString("exitstatus")
        type = try f.string("type")
        user = try f.string("user")
        tokenID = f.optString("tokenid")
    }
}

/// One line of a task log (`n` is 1-based).
public struct PVETaskLogLine: Sendable, Equatable {
    public var n: Int
    public var text: String
    init(json: JSONValue) throws {
        let f = try JSONFields(json, context: "task log line")
        n = Int(try f.int("n"))
        text = f.optString("t") ?? ""
    }
}

/// What `POST /nodes/{node}/vzdump` started.
public enum PVEVzdumpResult: Sendable, Equatable {
    /// A backup task.
    case task(UPID)
    /// `"OK"`: none of the selected guests lives on this node, nothing was done.
    case nothingToDo

    /// The backup task, if one was started.
    public var upid: UPID? {
        if case .task(let u) = self { return u }
        return nil
    }
}
