import FelhomCore
import Foundation

extension PVESimEngine {
    /// `POST /nodes/{node}/lxc`: create from a template, or restore from a backup volid (`restore=1`).
    func createContainer(_ p: Params, _ authid: String, path: String) throws -> Result {
        let nodeName = p.str("node") ?? ""
        let vmid = p.int("vmid") ?? 0
        let ostemplate = p.str("ostemplate") ?? ""
        let restore = p.bool("restore") == true
        let force = p.bool("force") == true
        let existing = state.containers[vmid]
        let verb = restore ? "restore" : "create"

        // Permissions: VM.Allocate, or VM.Backup for a forced restore over an existing CT.
        if restore && force && existing != nil {
            if !has(authid, "/vms/\(vmid)", "VM.Allocate") { try require(authid, "/vms/\(vmid)", ["VM.Backup"]) }
        } else {
            try require(authid, "/vms/\(vmid)", ["VM.Allocate"])
        }
        let defaultStorage = p.str("storage") ?? "local"
        try require(authid, "/storage/\(defaultStorage)", ["Datastore.AllocateSpace"])
        if p.bool("unprivileged") == false { try require(authid, "/", ["Sys.Modify"]) }

        // The template or backup volume.
        guard let colon = ostemplate.firstIndex(of: ":") else {
            throw SimError.param(["ostemplate": "unable to parse volume ID '\(ostemplate)'"])
        }
        let tmplStorage = try storage(String(ostemplate[..<colon]))
        let volume = state.volumes.first { $0.volid == ostemplate }
        if restore {
            try require(authid, "/storage/\(tmplStorage.id)", ["Datastore.AllocateSpace"])
            if let owner = volume?.vmid { try require(authid, "/vms/\(owner)", ["VM.Backup"]) }
        } else if !has(authid, "/storage/\(tmplStorage.id)", "Datastore.AllocateSpace") {
            try require(authid, "/storage/\(tmplStorage.id)", ["Datastore.Audit"])
        }

        // Config keys given with the request.
        let reserved: Set<String> = [
            "node", "vmid", "ostemplate", "restore", "force", "storage", "start", "unique", "password", "ssh-public-keys",
            "pool", "ignore-unpack-errors", "bwlimit", "ha-managed",
        ]
        var given: [String: String] = [:]
        for (k, v) in p.values where !reserved.contains(k) { given[k] = ParamValidator.text(v) }
        try checkModifyPermissions(authid, vmid: vmid, keys: Array(given.keys), values: given, newVolumes: true)

        if let existing {
            guard restore && force else {
                throw SimError.die("unable to \(verb) CT \(vmid) - CT \(vmid) already exists on node '\(existing.node)'")
            }
            if existing.running { throw SimError.die("unable to restore CT \(vmid) - can't overwrite running container") }
            if existing.config["protection"] == "1" { throw SimError.die("unable to restore CT \(vmid) - protection mode enabled") }
            if let l = lock(of: vmid) { throw SimError.die("CT is locked (\(l))") }
        }
        if given["rootfs"] == nil, given.keys.contains(where: { $0.hasPrefix("mp") }), !restore {
            throw SimError.die("mount points configured, but 'rootfs' not set - aborting")
        }

        var spec = TaskSpec(
            node: nodeName, type: restore ? "vzrestore" : "vzcreate", id: String(vmid), authid: authid, requestPath: path)
        spec.checkLock = false
        var failure: String?
        var config: [String: String] = [:]
        var volumes: [SimVolume] = []
        var taken = Set<String>()

        if restore {
            guard let backup = volume, backup.content == "backup", let backupConfig = backup.backupConfig else {
                failure = "unable to restore CT \(vmid) - volume '\(ostemplate)' does not exist"
                return Result(.string(startFailedCreate(spec, vmid: vmid, failure: failure!, existing: existing)))
            }
            spec.log = [
                "recovering backed-up configuration from '\(ostemplate)'"
            ]
            config = backupConfig
            for k in ["lock", "parent", "snaptime"] { config[k] = nil }
            let advanced = given["rootfs"] != nil
            if advanced {
                // pct.adoc "Restoring Container Backups": advanced mode "completely ignores the rootfs
                // and mpX configuration options contained in the backup archive, and instead only
                // uses the options explicitly provided as parameters".
                for key in config.keys where key == "rootfs" || (key.hasPrefix("mp") && Int(key.dropFirst(2)) != nil) { config[key] = nil }
            }
            // Simple mode: recreate each recorded volume on the target storage with its recorded size.
            for key in config.keys.sorted() where key == "rootfs" || (key.hasPrefix("mp") && Int(key.dropFirst(2)) != nil) {
                guard !advanced, let value = config[key] else { continue }
                let volid = Self.volid(of: value)
                if volid.hasPrefix("/") { continue }
                let size = Self.sizeBytes(Self.option("size", in: value))
                let data = backup.capturedData?[key]
                var vol = try allocateDisk(
                    storageID: p.str("storage") ?? String(volid.split(separator: ":").first ?? "local"), vmid: vmid,
                    sizeGiB: Double(size) / 1_073_741_824, data: data, taken: &taken)
                vol.data = data
                volumes.append(vol)
                var opts = value.split(separator: ",").dropFirst().filter { !$0.hasPrefix("size=") }.map(String.init)
                opts.append("size=\(Self.sizeText(vol.size))")
                config[key] = ([vol.volid] + Self.sortedOptions(opts)).joined(separator: ",")
                if data == nil && key != "rootfs" {
                    spec.log.append("excluded mount point \(key) ('\(Self.option("mp", in: value) ?? "")') was not in the backup: restored empty")
                }
            }
            spec.log.append("restoring '\(ostemplate)' now..")
            if !given.isEmpty { spec.log.append("merging backed-up and given configuration..") }
        } else {
            guard let tmpl = volume, tmpl.content == "vztmpl" else {
                failure = "unable to create CT \(vmid) - volume '\(ostemplate)' does not exist"
                return Result(.string(startFailedCreate(spec, vmid: vmid, failure: failure!, existing: existing)))
            }
            config = [
                "arch": "amd64", "hostname": "CT\(vmid)", "memory": "512", "swap": "512", "unprivileged": "1",
                "ostype": tmpl.volid.contains("alpine") ? "alpine" : tmpl.volid.contains("ubuntu") ? "ubuntu" : "debian",
            ]
            if given["rootfs"] == nil { given["rootfs"] = "\(defaultStorage):4" }
            spec.log = ["extracting archive '/var/lib/vz/template/cache/\(tmpl.volid.split(separator: "/").last ?? "")'"]
        }
        for (k, v) in given {
            if k == "description" {
                config[k] = FelhomSimText.normalizedDescription(v)
            } else if k == "rootfs" || k.hasPrefix("mp") {
                let (value, vol) = try allocateIfNew(k, v, vmid: vmid, taken: &taken)
                config[k] = value
                if let vol { volumes.append(vol) }
            } else {
                config[k] = v
            }
        }
        if p.bool("unique") == true, let net0 = config["net0"] {
            let mac = String(format: "BC:24:11:%02X:%02X:%02X", Int.random(in: 0..<256), Int.random(in: 0..<256), Int.random(in: 0..<256))
            config["net0"] = net0.split(separator: ",").map { $0.hasPrefix("hwaddr=") ? "hwaddr=\(mac)" : String($0) }.joined(separator: ",")
        }

        // PVE writes the config with `lock: create` at once; the worker fills the volumes.
        let previous = existing
        var fresh = SimContainer(vmid: vmid, node: nodeName, config: config)
        if restore { fresh.appHealth = volume?.appHealth }
        fresh.config["lock"] = "create"
        // On a worker failure PVE destroys the half-restored container (even over an existing one).
        fresh.config["x-sim-fresh"] = "1"
        if p.bool("start") == true { fresh.config["x-sim-start"] = "1" }
        if let previous {
            // Restore over an existing CT: the old disks are destroyed and replaced.
            state.volumes.removeAll { v in previous.config.values.contains { Self.volid(of: $0) == v.volid } }
        }
        state.containers[vmid] = fresh
        state.volumes.append(contentsOf: volumes)
        spec.vmids = [vmid]
        spec.effect = .create(vmid: vmid)
        spec.lockName = "create"
        spec.successLog = p.bool("start") == true ? ["starting CT \(vmid)"] : []
        return Result(.string(startTask(spec)))
    }

    /// A create/restore whose worker fails before touching anything.
    private func startFailedCreate(_ spec: TaskSpec, vmid: Int, failure: String, existing: SimContainer?) -> String {
        var s = spec
        s.failure = failure
        s.effect = nil
        return startTask(s)
    }

    // MARK: - Snapshots

    func listSnapshots(_ p: Params, _ authid: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Audit"])
        let c = try container(p.str("node") ?? "", vmid)
        var items: [JSONValue] = c.snapshots.map { s in
            var o: [String: JSONValue] = ["name": .string(s.name), "snaptime": .int(s.snaptime), "description": .string(s.description)]
            if let parent = s.parent { o["parent"] = .string(parent) }
            return .object(o)
        }
        var current: [String: JSONValue] = [
            "name": "current", "digest": .string(Self.digest(c)), "running": .int(c.running ? 1 : 0),
            "description": "You are here!",
        ]
        if let parent = c.config["parent"] { current["parent"] = .string(parent) }
        items.append(.object(current))
        return Result(.array(items))
    }

    func createSnapshot(_ p: Params, _ authid: String, path: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Snapshot"])
        let c = try container(p.str("node") ?? "", vmid)
        let name = p.str("snapname") ?? ""
        if name == "current" || name == "vzdump" { throw SimError.die("unable to use snapshot name '\(name)' (reserved name)") }
        var spec = TaskSpec(node: c.node, type: "vzsnapshot", id: String(vmid), authid: authid, requestPath: path, vmids: [vmid])
        spec.lockName = "snapshot"
        spec.effect = .snapshot(vmid: vmid, name: name, description: FelhomSimText.normalizedDescription(p.str("description") ?? ""))
        if volumesOf(c).contains(where: { v in state.storages.first { $0.id == v.volume.storage }?.type == "dir" }) {
            spec.failure = "snapshot feature is not available"
        }
        if c.snapshots.contains(where: { $0.name == name }) { spec.failure = "snapshot name '\(name)' already used" }
        spec.log = c.running ? ["freezing container", "thawing container"] : []
        return Result(.string(startTask(spec)))
    }

    func deleteSnapshot(_ p: Params, _ authid: String, path: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Snapshot"])
        let c = try container(p.str("node") ?? "", vmid)
        let name = p.str("snapname") ?? ""
        var spec = TaskSpec(node: c.node, type: "vzdelsnapshot", id: String(vmid), authid: authid, requestPath: path, vmids: [vmid])
        spec.lockName = "snapshot-delete"
        spec.effect = .deleteSnapshot(vmid: vmid, name: name)
        if !c.snapshots.contains(where: { $0.name == name }) { spec.failure = "snapshot '\(name)' does not exist" }
        return Result(.string(startTask(spec)))
    }

    func rollback(_ p: Params, _ authid: String, path: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try requireAny(authid, "/vms/\(vmid)", ["VM.Snapshot", "VM.Snapshot.Rollback"])
        let c = try container(p.str("node") ?? "", vmid)
        let name = p.str("snapname") ?? ""
        var spec = TaskSpec(node: c.node, type: "vzrollback", id: String(vmid), authid: authid, requestPath: path, vmids: [vmid])
        spec.lockName = "rollback"
        let start = p.bool("start") == true
        spec.effect = .rollback(vmid: vmid, name: name, start: start)
        if c.running { spec.log.append("stopping CT \(vmid) for rollback") }
        if !c.snapshots.contains(where: { $0.name == name }) { spec.failure = "snapshot '\(name)' does not exist" }
        if start { spec.successLog = ["starting CT \(vmid)"] }
        return Result(.string(startTask(spec)))
    }

    func snapshotConfig(_ p: Params, _ authid: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try requireAny(authid, "/vms/\(vmid)", ["VM.Snapshot", "VM.Snapshot.Rollback", "VM.Audit"])
        let c = try container(p.str("node") ?? "", vmid)
        let name = p.str("snapname") ?? ""
        guard let s = c.snapshots.first(where: { $0.name == name }) else { throw SimError.die("snapshot '\(name)' does not exist") }
        var cfg = s.config
        cfg["snaptime"] = String(s.snaptime)
        if !s.description.isEmpty { cfg["description"] = s.description }
        if let parent = s.parent { cfg["parent"] = parent }
        return Result(configObject(cfg, digest: nil))
    }
}
