import FelhomCore
import Foundation

extension PVESimEngine {
    // MARK: - vzdump

    /// `POST /nodes/{node}/vzdump`: backs up the given containers into a storage's content.
    func vzdump(_ p: Params, _ authid: String, path: String) throws -> Result {
        let nodeName = p.str("node") ?? ""
        if p.has("stdout") { throw SimError.param(["stdout": "option is only allowed on the command line interface."]) }
        for k in ["tmpdir", "dumpdir", "script", "job-id"] where p.has(k) && authid != "root@pam" {
            throw SimError.param([k: "Only root may set this option."])
        }
        guard let storageID = p.str("storage") else {
            throw SimError.param(["storage": "property is missing and it is not optional"])
        }
        let st = try storage(storageID)
        guard st.content.contains("backup") else {
            throw SimError.die("storage '\(storageID)' does not support backups")
        }
        try require(authid, "/storage/\(storageID)", ["Datastore.AllocateSpace"])
        if p.has("prune-backups") { try require(authid, "/storage/\(storageID)", ["Datastore.Allocate"]) }
        for k in ["bwlimit", "performance", "ionice"] where p.has(k) { try require(authid, "/", ["Sys.Modify"]) }

        var vmids: [Int]
        if p.bool("all") == true {
            vmids = state.containers.values.filter { $0.node == nodeName }.map(\.vmid).sorted()
        } else {
            vmids = (p.str("vmid") ?? "").split(whereSeparator: { ",; ".contains($0) }).compactMap { Int($0) }
        }
        let local = vmids.filter { state.containers[$0]?.node == nodeName }
        if local.isEmpty && p.bool("all") != true { return Result(.string("OK")) }

        let mode = p.str("mode") ?? "snapshot"
        let compress = p.str("compress") ?? "0"
        let ext: String
        switch compress {
        case "zstd": ext = ".zst"
        case "gzip", "1": ext = ".gz"
        case "lzo": ext = ".lzo"
        default: ext = ""
        }
        var spec = TaskSpec(
            node: nodeName, type: "vzdump", id: local.count == 1 ? String(local[0]) : "", authid: authid, requestPath: path)
        spec.checkLock = false
        let cmdline =
            (["vzdump"] + local.map(String.init) + ["--storage", storageID, "--mode", mode]
            + (compress != "0" ? ["--compress", compress] : []) + ["--node", nodeName]).joined(separator: " ")
        var log = ["INFO: starting new backup job: \(cmdline)"]
        var errors = 0
        var lastError: String?
        var lockable: [Int] = []
        var produced: [SimVolume] = []
        let date = now
        for vmid in local {
            guard let c = state.containers[vmid] else { continue }
            log.append("INFO: Starting Backup of VM \(vmid) (lxc)")
            log.append("INFO: Backup started at \(Self.logDate(date))")
            if !has(authid, "/vms/\(vmid)", "VM.Backup") {
                let e = "Permission check failed (/vms/\(vmid), VM.Backup)"
                log.append("ERROR: Backup of VM \(vmid) failed - \(e)")
                errors += 1
                lastError = e
                continue
            }
            if let l = lock(of: vmid) {
                log.append("ERROR: Backup of VM \(vmid) failed - CT is locked (\(l))")
                errors += 1
                lastError = "CT is locked (\(l))"
                continue
            }
            if st.type == "pbs" && !st.active {
                let e =
                    "could not activate storage '\(storageID)': \(storageID): error fetching datastores - 500 Can't connect to \(st.server ?? storageID):8007 (Connection refused)"
                log.append("ERROR: Backup of VM \(vmid) failed - \(e)")
                errors += 1
                lastError = e
                continue
            }
            log.append("INFO: status = \(c.running ? "running" : "stopped")")
            log.append("INFO: CT Name: \(c.config["hostname"] ?? "CT\(vmid)")")
            var captured: [String: String] = [:]
            var total: Int64 = 0
            for (key, vol) in volumesOf(c) {
                let mp = key == "rootfs" ? "/" : Self.option("mp", in: c.config[key] ?? "") ?? "?"
                let included = key == "rootfs" || Self.option("backup", in: c.config[key] ?? "") == "1"
                if included {
                    log.append("INFO: including mount point \(key) ('\(mp)') in backup")
                    captured[key] = vol.data ?? ""
                    total += vol.size / 10
                } else {
                    log.append("INFO: excluding volume mount point \(key) ('\(mp)') from backup (disabled)")
                }
            }
            log.append("INFO: backup mode: \(mode)")
            var volid: String
            var format: String
            var encrypted: String?
            if st.type == "pbs" {
                volid = "\(storageID):backup/ct/\(vmid)/\(Self.isoDate(date))"
                format = "pbs-ct"
                encrypted = st.encryptionKeyFingerprint
                log.append("INFO: creating Proxmox Backup Server archive 'ct/\(vmid)/\(Self.isoDate(date))'")
                if encrypted == nil { log.append("INFO: WARNING: backup is not encrypted") }
            } else {
                let base = "vzdump-lxc-\(vmid)-\(Self.fileDate(date))"
                volid = "\(storageID):backup/\(base).tar\(ext)"
                format = "tar" + (ext.isEmpty ? "" : "." + ext.dropFirst())
                log.append("INFO: creating vzdump archive '\(st.path ?? "/var/lib/vz")/dump/\(base).tar\(ext)'")
            }
            var notes: String?
            if let tmpl = p.str("notes-template") {
                notes = tmpl.replacingOccurrences(of: "{{guestname}}", with: c.config["hostname"] ?? "CT\(vmid)")
                    .replacingOccurrences(of: "{{vmid}}", with: String(vmid))
                    .replacingOccurrences(of: "{{node}}", with: nodeName)
                    .replacingOccurrences(of: "{{cluster}}", with: nodeName)
                    .replacingOccurrences(of: "\\n", with: "\n")
                notes = notes?.split(separator: "\n").first.map(String.init)
                log.append("INFO: adding notes to backup")
            }
            var backupConfig = c.config
            for k in ["lock", "parent"] { backupConfig[k] = nil }
            backupConfig = backupConfig.filter { !$0.key.hasPrefix("x-sim-") }
            var vol = SimVolume(
                volid: volid, storage: storageID, content: "backup", format: format, size: max(total, 1 << 20), vmid: vmid,
                ctime: Int64(date.timeIntervalSince1970), notes: notes, protected: p.bool("protected") == true)
            vol.encrypted = encrypted
            if st.type == "pbs" { vol.verification = state.faults.verificationFailures.contains(vmid) ? "failed" : "ok" }
            vol.backupConfig = backupConfig
            vol.capturedData = captured
            vol.appHealth = c.appHealth
            produced.append(vol)
            lockable.append(vmid)
            log.append("INFO: Finished Backup of VM \(vmid) (00:00:01)")
            log.append("INFO: Backup finished at \(Self.logDate(date))")
        }
        spec.vmids = lockable
        spec.lockName = "backup"
        spec.effect = .backups(produced)
        if errors > 0 {
            spec.failure = local.count == 1 ? lastError : "job errors"
            spec.lockName = nil
        }
        spec.log = log
        spec.successLog = ["INFO: Backup job finished successfully"]
        return Result(.string(startTask(spec)))
    }

    static func utcFormatter(_ format: String) -> DateFormatter {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = format
        return f
    }

    static func isoDate(_ d: Date) -> String { utcFormatter("yyyy-MM-dd'T'HH:mm:ss'Z'").string(from: d) }
    /// The simulated host runs in UTC, so vzdump's local-time file names are UTC here.
    static func fileDate(_ d: Date) -> String { utcFormatter("yyyy_MM_dd-HH_mm_ss").string(from: d) }
    static func logDate(_ d: Date) -> String { utcFormatter("yyyy-MM-dd HH:mm:ss").string(from: d) }

    // MARK: - Storage

    func canSeeStorage(_ authid: String, _ id: String) -> Bool {
        let p = privs(authid, "/storage/\(id)")
        return p.contains("Datastore.Audit") || p.contains("Datastore.AllocateSpace")
    }

    func storageConfigObject(_ s: SimStorage) -> [String: JSONValue] {
        var o: [String: JSONValue] = [
            "storage": .string(s.id), "type": .string(s.type), "content": .string(s.content.joined(separator: ",")),
            "digest": .string("3f1a6b4c0c9d2e7f8a5b6c7d8e9f0a1b2c3d4e5f"),
        ]
        if s.shared || s.type == "pbs" { o["shared"] = 1 }
        if let v = s.path { o["path"] = .string(v) }
        if s.isMountpoint == true { o["is_mountpoint"] = "yes" }
        if s.type == "lvmthin" {
            // What a default PVE install's local-lvm says (/etc/pve/storage.cfg).
            o["vgname"] = "pve"
            o["thinpool"] = "data"
        }
        if s.type == "pbs" {
            o["server"] = .string(s.server ?? "pbs.local")
            o["datastore"] = .string(s.datastore ?? "store")
            if let v = s.namespace { o["namespace"] = .string(v) }
            if let v = s.username { o["username"] = .string(v) }
            if let v = s.fingerprint { o["fingerprint"] = .string(v) }
            if let v = s.encryptionKeyFingerprint { o["encryption-key"] = .string(v) }
        }
        o["prune-backups"] = "keep-all=1"
        return o
    }

    func listStorageConfig(_ p: Params, _ authid: String) throws -> Result {
        let type = p.str("type")
        let items = state.storages.filter { canSeeStorage(authid, $0.id) && (type == nil || $0.type == type) }
            .map { JSONValue.object(storageConfigObject($0)) }
        return Result(.array(items))
    }

    /// `PUT /storage/{storage}` (`pvesm set`), the settings the simulator models: `delete` of
    /// `encryption-key`, `namespace` or `fingerprint`; `encryption-key` (`autogen`, or a key JSON
    /// with `data` — the config then shows its `fingerprint`, or `1`); `namespace`; `fingerprint`.
    func putStorageConfig(_ p: Params, _ authid: String) throws -> Result {
        let id = p.str("storage") ?? ""
        try require(authid, "/storage", ["Datastore.Allocate"])
        guard let i = state.storages.firstIndex(where: { $0.id == id }) else { throw SimError.die("storage '\(id)' does not exist") }
        let modelled: Set<String> = ["storage", "delete", "digest", "encryption-key", "namespace", "fingerprint", "content"]
        let unmodelled = p.values.keys.filter { !modelled.contains($0) }.sorted()
        if !unmodelled.isEmpty { throw SimError(status: 501, message: "storage option '\(unmodelled[0])' is not simulated") }
        var st = state.storages[i]
        for key in (p.str("delete") ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !key.isEmpty {
            switch key {
            case "encryption-key": st.encryptionKeyFingerprint = nil
            case "namespace": st.namespace = nil
            case "fingerprint": st.fingerprint = nil
            default: throw SimError.param(["delete": "deleting '\(key)' is not simulated"])
            }
        }
        var config: [String: JSONValue] = [:]
        if let key = p.str("encryption-key") {
            if let made = try Self.applyEncryptionKey(key, to: &st, now: now) { config["encryption-key"] = .string(made) }
        }
        if let content = p.str("content") { st.content = try Self.contentList(content, type: st.type) }
        if let ns = p.str("namespace") { st.namespace = ns }
        if let fp = p.str("fingerprint") { st.fingerprint = fp }
        state.storages[i] = st
        persist()
        var out: [String: JSONValue] = ["storage": .string(id), "type": .string(st.type)]
        if !config.isEmpty { out["config"] = .object(config) }
        return Result(.object(out))
    }

    /// `POST /storage` (`pvesm add`). The simulator models `dir` storages: `path` (absolute),
    /// `content`, `is_mountpoint`, `nodes`, `disable`, `shared`. Like Proxmox, it activates the
    /// storage before saving it: a `dir` with `is_mountpoint` over a path where nothing is mounted
    /// is refused and nothing is saved.
    func createStorage(_ p: Params, _ authid: String) throws -> Result {
        try require(authid, "/storage", ["Datastore.Allocate"])
        let id = p.str("storage") ?? ""
        let type = p.str("type") ?? ""
        guard type == "dir" else { throw SimError(status: 501, message: "creating a storage of type '\(type)' is not simulated") }
        let modelled: Set<String> = [
            "storage", "type", "path", "content", "is_mountpoint", "nodes", "disable", "shared", "mkdir", "create-base-path",
            "create-subdirs",
        ]
        let unmodelled = p.values.keys.filter { !modelled.contains($0) }.sorted()
        if !unmodelled.isEmpty { throw SimError(status: 501, message: "storage option '\(unmodelled[0])' is not simulated") }
        guard let path = p.str("path") else { throw SimError.param(["path": "property is missing and it is not optional"]) }
        guard path.hasPrefix("/") else { throw SimError.die("create storage failed: illegal path for directory storage: \(path)") }
        let content = try Self.contentList(p.str("content") ?? "images,rootdir", type: type)
        guard !state.storages.contains(where: { $0.id == id }) else {
            throw SimError.die("create storage failed: storage ID '\(id)' already defined")
        }
        var st = SimStorage(id: id, type: type, content: content)
        st.path = path
        st.shared = p.bool("shared") ?? false
        switch p.str("is_mountpoint") ?? "no" {
        case "yes", "1", "on", "true": st.isMountpoint = true
        case "no", "0", "off", "false": st.isMountpoint = nil
        default: throw SimError(status: 501, message: "is_mountpoint with a path is not simulated")
        }
        st.active = p.bool("disable") != true
        if st.isMountpoint == true, st.active, !(state.disks ?? []).contains(where: { $0.mountPoint == path }) {
            throw SimError.die(
                "create storage failed: unable to activate storage '\(id)' - directory is expected to be a mount point but is not mounted: '\(path)'"
            )
        }
        state.storages.append(st)
        persist()
        return Result(.object(["storage": .string(id), "type": .string(type)]))
    }

    /// `DELETE /storage/{storage}` (`pvesm remove`): the entry goes; the volumes stay where they
    /// are (Proxmox never deletes data with a storage entry).
    func deleteStorage(_ p: Params, _ authid: String) throws -> Result {
        try require(authid, "/storage", ["Datastore.Allocate"])
        let id = p.str("storage") ?? ""
        guard let i = state.storages.firstIndex(where: { $0.id == id }) else {
            throw SimError.die("delete storage failed: storage '\(id)' does not exist")
        }
        state.storages.remove(at: i)
        persist()
        return Result(.null)
    }

    /// A `content` list as PVE checks it for the storage type.
    static func contentList(_ text: String, type: String) throws -> [String] {
        let allowed: Set<String> =
            type == "pbs"
            ? ["backup"] : type == "dir" ? ["images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"] : ["images", "rootdir"]
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for item in items where !allowed.contains(item) {
            throw SimError.param(["content": "storage does not support content type '\(item)'"])
        }
        return items
    }

    /// A storage as it is now: a `dir` with `is_mountpoint` is active only while a disk is
    /// mounted at its path, with that disk's size.
    func live(_ s: SimStorage) -> SimStorage {
        guard s.isMountpoint == true, let path = s.path else { return s }
        var out = s
        if let disk = (state.disks ?? []).first(where: { $0.mountPoint == path }) {
            out.totalBytes = disk.sizeBytes
        } else {
            out.active = false
        }
        return out
    }

    /// PBSPlugin's `encryption-key` handling: `autogen` makes a key (returned as its JSON, once);
    /// a key JSON must have `data`; the config then shows the fingerprint (or `1`).
    static func applyEncryptionKey(_ value: String, to st: inout SimStorage, now: Date) throws -> String? {
        guard st.type == "pbs" else { throw SimError.param(["encryption-key": "not allowed for storage type '\(st.type)'"]) }
        if value == "autogen" {
            let fp = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined(separator: ":")
            let raw = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            let made = isoDate(now)
            st.encryptionKeyFingerprint = fp
            return #"{"kdf":null,"created":"\#(made)","modified":"\#(made)","data":"\#(raw)","fingerprint":"\#(fp)"}"#
        }
        guard let doc = try? JSONValue.parse(Data(value.utf8)), doc["data"]?.stringValue != nil else {
            throw SimError.die("Value does not seems like a valid, JSON formatted encryption key!")
        }
        st.encryptionKeyFingerprint = doc["fingerprint"]?.stringValue ?? "1"
        return nil
    }

    /// `pvesm set STORAGE --encryption-key VALUE` as root runs it on the host.
    public func execSetEncryptionKey(storage: String, value: String) -> (exitCode: Int32, stderr: String) {
        advance()
        guard let i = state.storages.firstIndex(where: { $0.id == storage }) else { return (255, "storage '\(storage)' does not exist\n") }
        var st = state.storages[i]
        do { _ = try Self.applyEncryptionKey(value, to: &st, now: now) } catch { return (255, "update storage failed: \(error)\n") }
        state.storages[i] = st
        persist()
        return (0, "")
    }

    func getStorageConfig(_ p: Params, _ authid: String) throws -> Result {
        let id = p.str("storage") ?? ""
        try require(authid, "/storage/\(id)", ["Datastore.Allocate"])
        return Result(.object(storageConfigObject(try storage(id))))
    }

    func nodeStorageObject(_ storage: SimStorage) -> [String: JSONValue] {
        let s = live(storage)
        let used = state.volumes.filter { $0.storage == s.id }.reduce(Int64(0)) { $0 + $1.size }
        let total = s.active ? s.totalBytes : 0
        let usedOut = s.active ? min(used, total) : 0
        var o: [String: JSONValue] = [
            "storage": .string(s.id), "type": .string(s.type), "content": .string(s.content.joined(separator: ",")),
            "shared": .int(s.shared || s.type == "pbs" ? 1 : 0), "active": .int(s.active ? 1 : 0), "enabled": 1,
            "total": .int(total), "used": .int(usedOut), "avail": .int(total - usedOut),
        ]
        o["used_fraction"] = total > 0 ? .double(Double(usedOut) / Double(total)) : .int(0)
        return o
    }

    func listNodeStorage(_ p: Params, _ authid: String) throws -> Result {
        let content = p.str("content").map { Set($0.split(separator: ",").map(String.init)) }
        let items = state.storages.filter { s in
            canSeeStorage(authid, s.id) && (p.str("storage") == nil || p.str("storage") == s.id)
                && (content.map { !$0.isDisjoint(with: s.content) } ?? true)
                && (p.bool("enabled") != true || live(s).active)
        }.map { JSONValue.object(nodeStorageObject($0)) }
        return Result(.array(items))
    }

    func nodeStorageStatus(_ p: Params, _ authid: String) throws -> Result {
        let id = p.str("storage") ?? ""
        try requireAny(authid, "/storage/\(id)", ["Datastore.Audit", "Datastore.AllocateSpace"])
        var o = nodeStorageObject(try storage(id))
        o["storage"] = nil
        return Result(.object(o))
    }

    func contentObject(_ v: SimVolume) -> [String: JSONValue] {
        var o: [String: JSONValue] = [
            "volid": .string(v.volid), "content": .string(v.content), "format": .string(v.format), "size": .int(v.size),
            "ctime": .int(v.ctime),
        ]
        if let vmid = v.vmid { o["vmid"] = .int(Int64(vmid)) }
        if v.content == "backup" { o["subtype"] = "lxc" }
        if v.content == "rootdir" { o["used"] = .int(v.size / 8) }
        if let n = v.notes { o["notes"] = .string(n) }
        if v.protected { o["protected"] = 1 }
        if v.format == "pbs-ct" {
            if let state = v.verification {
                o["verification"] = ["state": .string(state), "upid": "UPID:pbs:00001234:00005678:65F0A1B2:verificationjob:store:root@pam:"]
            }
            if let e = v.encrypted { o["encrypted"] = .string(e) }
        }
        return o
    }

    func storageContent(_ p: Params, _ authid: String) throws -> Result {
        let id = p.str("storage") ?? ""
        try requireAny(authid, "/storage/\(id)", ["Datastore.Audit", "Datastore.AllocateSpace"])
        let st = try storage(id)
        if !st.active { throw SimError.die("error listing snapshots - 500 Can't connect to \(st.server ?? id):8007 (Connection refused)") }
        let content = p.str("content")
        let vmid = p.int("vmid")
        let items = state.volumes.filter { v in
            v.storage == id && (content == nil || v.content == content) && (vmid == nil || v.vmid == vmid)
                && (v.content != "backup"
                    || v.vmid.map { owner in
                        has(authid, "/vms/\(owner)", "VM.Backup") || has(authid, "/vms/\(owner)", "VM.Audit")
                            || has(authid, "/storage/\(id)", "Datastore.Allocate")
                    } ?? true)
        }.sorted { $0.volid < $1.volid }.map { JSONValue.object(contentObject($0)) }
        return Result(.array(items))
    }

    func volumeInfo(_ p: Params, _ authid: String) throws -> Result {
        let id = p.str("storage") ?? ""
        var volume = p.str("volume") ?? ""
        if !volume.contains(":") { volume = "\(id):\(volume)" }
        try requireAny(authid, "/storage/\(id)", ["Datastore.Audit", "Datastore.AllocateSpace"])
        guard let v = state.volumes.first(where: { $0.volid == volume }) else {
            throw SimError.die("volume '\(volume)' does not exist")
        }
        let st = try storage(id)
        var o: [String: JSONValue] = [
            "format": .string(v.format), "size": .int(v.size), "used": .int(v.content == "rootdir" ? v.size / 8 : v.size),
            "path": .string(st.type == "pbs" ? v.volid : "\(st.path ?? "/dev/pve")/\(v.volid.split(separator: ":").last ?? "")"),
        ]
        if let n = v.notes { o["notes"] = .string(n) }
        if v.protected { o["protected"] = 1 }
        return Result(.object(o))
    }

    // MARK: - Version, nodes, cluster, access

    func getVersion(_ authid: String) throws -> Result {
        let n = state.nodes.first ?? SimNode(name: "pve")
        let release = n.pveVersion.split(separator: ".").prefix(2).joined(separator: ".")
        return Result(["version": .string(n.pveVersion), "release": .string(release), "repoid": .string(n.repoid), "console": "html5"])
    }

    func getNodes(_ authid: String) throws -> Result {
        let items: [JSONValue] = state.nodes.map { n in
            var o: [String: JSONValue] = [
                "id": .string("node/\(n.name)"), "node": .string(n.name), "type": "node", "status": "online", "level": "",
                "ssl_fingerprint": .string(serverFingerprint ?? ""),
            ]
            if has(authid, "/nodes/\(n.name)", "Sys.Audit") {
                let running = state.containers.values.filter { $0.node == n.name && $0.running }
                let mem = running.reduce(Int64(2 << 30)) { $0 + ((Int64($1.config["memory"] ?? "512") ?? 512) << 20) / 5 }
                o["uptime"] = .int(max(0, nowEpoch - Int64(n.bootedAt)))
                o["cpu"] = .double(0.0123)
                o["maxcpu"] = .int(Int64(n.cpus))
                o["mem"] = .int(mem)
                o["maxmem"] = .int(n.memoryBytes)
                o["disk"] = .int(n.rootfsBytes / 10)
                o["maxdisk"] = .int(n.rootfsBytes)
            }
            return .object(o)
        }
        return Result(.array(items))
    }

    func getNodeStatus(_ p: Params, _ authid: String) throws -> Result {
        let n = try node(p.str("node") ?? "")
        try require(authid, "/nodes/\(n.name)", ["Sys.Audit"])
        let running = state.containers.values.filter { $0.node == n.name && $0.running }
        let used = running.reduce(Int64(2 << 30)) { $0 + ((Int64($1.config["memory"] ?? "512") ?? 512) << 20) / 5 }
        let rootUsed = n.rootfsBytes / 10
        return Result([
            "uptime": .int(max(0, nowEpoch - Int64(n.bootedAt))), "idle": 0,
            "loadavg": ["0.05", "0.10", "0.08"],
            "kversion": "Linux 6.8.12-4-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-4 (2024-11-06T15:04Z) x86_64",
            "current-kernel": [
                "sysname": "Linux", "release": "6.8.12-4-pve", "machine": "x86_64",
                "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-4 (2024-11-06T15:04Z)",
            ],
            "boot-info": ["mode": "efi", "secureboot": 0],
            "cpuinfo": [
                "model": "Intel(R) N100", "vendor": "GenuineIntel", "family": "6", "mhz": "2400.000",
                "cpus": .int(Int64(n.cpus)), "cores": .int(Int64(n.cpus)), "sockets": 1, "hvm": "1", "user_hz": 100,
                "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr",
            ],
            "cpu": .double(0.0123), "wait": .double(0.0001),
            "memory": [
                "total": .int(n.memoryBytes), "used": .int(used), "free": .int(n.memoryBytes - used),
                "available": .int(n.memoryBytes - used),
            ],
            "swap": ["total": 0, "used": 0, "free": 0],
            "ksm": ["shared": 0],
            "pveversion": .string("pve-manager/\(n.pveVersion)/\(n.repoid)"),
            "rootfs": [
                "total": .int(n.rootfsBytes), "used": .int(rootUsed), "avail": .int(n.rootfsBytes - rootUsed),
                "free": .int(n.rootfsBytes - rootUsed),
            ],
        ])
    }

    func nextID(_ p: Params) throws -> Result {
        if let v = p.int("vmid") {
            if state.containers[v] != nil { throw SimError.param(["vmid": "VM \(v) already exists"]) }
            return Result(.string(String(v)))
        }
        var id = 100
        while state.containers[id] != nil { id += 1 }
        return Result(.int(Int64(id)))
    }

    func permissions(_ p: Params, _ authid: String) throws -> Result {
        if let other = p.str("userid"), other != authid, !authid.hasPrefix(other + "!"), !(other.hasPrefix(authid + "!")) {
            try require(authid, "/access", ["Sys.Audit"])
        }
        let who = p.str("userid") ?? authid
        var paths: [String]
        if let path = p.str("path") {
            paths = [path]
        } else {
            paths =
                ["/", "/access", "/nodes", "/storage", "/vms"] + state.nodes.map { "/nodes/\($0.name)" }
                + state.storages.map { "/storage/\($0.id)" } + state.containers.keys.sorted().map { "/vms/\($0)" }
        }
        var out: [String: JSONValue] = [:]
        for path in paths {
            let privs = Permissions.privileges(authid: who, path: path, state: state)
            if privs.isEmpty && p.str("path") == nil { continue }
            out[path] = .object(Dictionary(uniqueKeysWithValues: privs.sorted().map { ($0, JSONValue.int(1)) }))
        }
        return Result(.object(out))
    }
}
