import Crypto
import FelhomCore
import Foundation

extension PVESimEngine {
    // MARK: - Config representation

    /// The JSON type of each config key, from the GET config return schema.
    static let configTypes: [String: String] = {
        let props = ParamValidator.endpoints["GET /nodes/{node}/lxc/{vmid}/config"]?["returns"]?["properties"]?.objectValue ?? [:]
        return props.compactMapValues { $0["type"]?.stringValue }
    }()

    /// A config value as PVE's config parser types it: integers and booleans as numbers, `number`
    /// keys (cpulimit) as strings, the rest as strings.
    static func typed(_ key: String, _ value: String) -> JSONValue {
        let base = key.prefix { !$0.isNumber }
        let type = configTypes[key] ?? (base.count < key.count ? configTypes["\(base)[n]"] : nil) ?? "string"
        switch type {
        case "integer", "boolean": return Int64(value).map(JSONValue.int) ?? .string(value)
        default: return .string(value)
        }
    }

    /// The `.conf` file text (description comments, sorted keys, pending section, snapshots).
    static func confText(_ c: SimContainer) -> String {
        func section(_ cfg: [String: String]) -> String {
            var s = ""
            for line in (cfg["description"] ?? "").unicodeScalars.split(separator: "\n").map({ String(String.UnicodeScalarView($0)) }) {
                s +=
                    "#"
                    + (line.addingPercentEncoding(
                        withAllowedCharacters: .init(
                            charactersIn: " !\"#$&'()*+,-./0123456789;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"))
                        ?? String(line)) + "\n"
            }
            for k in cfg.keys.sorted() where k != "description" && !k.hasPrefix("x-sim-") { s += "\(k): \(cfg[k]!)\n" }
            return s
        }
        var text = section(c.config)
        if !c.pending.isEmpty || !c.pendingDelete.isEmpty {
            var p = c.pending
            if !c.pendingDelete.isEmpty { p["delete"] = c.pendingDelete.joined(separator: ",") }
            text += "\n[pve:pending]\n" + section(p)
        }
        for s in c.snapshots {
            var cfg = s.config
            cfg["snaptime"] = String(s.snaptime)
            if let parent = s.parent { cfg["parent"] = parent }
            cfg["description"] = s.description
            text += "\n[\(s.name)]\n" + section(cfg)
        }
        return text
    }

    static func digest(_ c: SimContainer) -> String {
        Insecure.SHA1.hash(data: Data(confText(c).utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The volumes a container's mount points refer to (`rootfs`, `mp0`, …), skipping bind mounts.
    func volumesOf(_ c: SimContainer) -> [(key: String, volume: SimVolume)] {
        c.config.keys.sorted().compactMap { key in
            guard key == "rootfs" || (key.hasPrefix("mp") && Int(key.dropFirst(2)) != nil), let value = c.config[key] else {
                return nil
            }
            let volid = Self.volid(of: value)
            guard let v = state.volumes.first(where: { $0.volid == volid }) else { return nil }
            return (key, v)
        }
    }

    static func volid(of mount: String) -> String {
        let first = String(mount.split(separator: ",").first ?? "")
        return first.hasPrefix("volume=") ? String(first.dropFirst(7)) : first
    }

    static func option(_ key: String, in mount: String) -> String? {
        for part in mount.split(separator: ",") where part.hasPrefix("\(key)=") { return String(part.dropFirst(key.count + 1)) }
        return nil
    }

    static func sizeBytes(_ text: String?) -> Int64 {
        guard let text, let last = text.last else { return 4 << 30 }
        let mult: Double
        switch last {
        case "K": mult = 1024
        case "M": mult = 1024 * 1024
        case "G": mult = 1024 * 1024 * 1024
        case "T": mult = 1024 * 1024 * 1024 * 1024
        default: return Int64(text) ?? (4 << 30)
        }
        return Int64((Double(text.dropLast()) ?? 4) * mult)
    }

    /// Allocates a new container disk on `storageID` (`local-lvm:vm-100-disk-0` or `local:100/vm-100-disk-0.raw`).
    func allocateDisk(storageID: String, vmid: Int, sizeGiB: Double, data: String?, taken: inout Set<String>) throws -> SimVolume {
        let st = try storage(storageID)
        guard st.content.contains("rootdir") else {
            throw SimError(status: 400, message: "storage '\(storageID)' does not support container directories")
        }
        var n = 0
        func name(_ n: Int) -> String {
            st.type == "dir" ? "\(storageID):\(vmid)/vm-\(vmid)-disk-\(n).raw" : "\(storageID):vm-\(vmid)-disk-\(n)"
        }
        while state.volumes.contains(where: { $0.volid == name(n) }) || taken.contains(name(n)) { n += 1 }
        taken.insert(name(n))
        return SimVolume(
            volid: name(n), storage: storageID, content: "rootdir", format: st.type == "dir" ? "raw" : "raw",
            size: Int64(sizeGiB * 1_073_741_824), vmid: vmid, ctime: nowEpoch, data: data)
    }

    static func sizeText(_ bytes: Int64) -> String {
        if bytes % (1 << 30) == 0 { return "\(bytes >> 30)G" }
        if bytes % (1 << 20) == 0 { return "\(bytes >> 20)M" }
        return "\(bytes >> 10)K"
    }

    // MARK: - Reads

    func statusObject(_ c: SimContainer, node: SimNode) -> [String: JSONValue] {
        let memMiB = Int64(c.config["memory"] ?? "512") ?? 512
        let swapMiB = Int64(c.config["swap"] ?? "512") ?? 512
        let maxdisk = Self.sizeBytes(c.config["rootfs"].flatMap { Self.option("size", in: $0) })
        let cpus: JSONValue =
            c.config["cores"].flatMap { Int64($0) }.map(JSONValue.int)
            ?? c.config["cpulimit"].map(JSONValue.string) ?? .int(Int64(node.cpus))
        var o: [String: JSONValue] = [
            "vmid": .int(Int64(c.vmid)), "type": "lxc", "status": .string(c.running ? "running" : "stopped"),
            "name": .string((c.config["hostname"] ?? "CT\(c.vmid)").trimmingCharacters(in: .whitespaces)),
            "cpus": cpus, "maxmem": .int(memMiB << 20), "maxswap": .int(swapMiB << 20), "maxdisk": .int(maxdisk),
            "disk": .int(c.running ? maxdisk / 8 : 0), "mem": .int(c.running ? (memMiB << 20) / 5 : 0), "swap": 0,
            "cpu": c.running ? .double(0.0123) : .int(0),
            "uptime": .int(c.running ? max(0, nowEpoch - Int64(c.startedAt ?? now.timeIntervalSince1970)) : 0),
            "netin": .int(c.running ? 4096 : 0), "netout": .int(c.running ? 2048 : 0), "diskread": 0, "diskwrite": 0,
        ]
        if c.running {
            o["pid"] = .int(Int64(100_000 + c.vmid))
            for k in ["pressurecpusome", "pressurecpufull", "pressureiosome", "pressureiofull", "pressurememorysome", "pressurememoryfull"] {
                o[k] = .double(0)
            }
        }
        if let tags = c.config["tags"] { o["tags"] = .string(tags) }
        if c.config["template"] == "1" { o["template"] = 1 }
        if let l = lock(of: c.vmid) { o["lock"] = .string(l) }
        return o
    }

    func listContainers(_ p: Params, _ authid: String) throws -> Result {
        let node = try self.node(p.str("node") ?? "")
        let items = state.containers.values.filter { $0.node == node.name && has(authid, "/vms/\($0.vmid)", "VM.Audit") }
            .sorted { $0.vmid < $1.vmid }.map { JSONValue.object(statusObject($0, node: node)) }
        return Result(.array(items))
    }

    func containerStatus(_ p: Params, _ authid: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Audit"])
        let c = try container(p.str("node") ?? "", vmid)
        var o = statusObject(c, node: try node(c.node))
        o["ha"] = ["managed": 0]
        return Result(.object(o))
    }

    /// `GET /nodes/{node}/lxc/{vmid}/interfaces`: what `ip --json a` shows in the container's
    /// network namespace (`lo` and `eth0`, `inet` as address/prefix); `null` while it is stopped
    /// (PVE finds no process to enter).
    func interfaces(_ p: Params, _ authid: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Audit"])
        let c = try container(p.str("node") ?? "", vmid)
        guard c.running else { return Result(.null) }
        let net0 = c.config["net0"] ?? ""
        let hwaddr = net0.split(separator: ",").first { $0.hasPrefix("hwaddr=") }.map { String($0.dropFirst(7)).lowercased() } ?? "bc:24:11:00:00:00"
        let staticIP = net0.split(separator: ",").first { $0.hasPrefix("ip=") }.map { String($0.dropFirst(3)) }.flatMap {
            $0.contains("/") ? $0 : nil
        }
        let inet = staticIP ?? "\(c.address ?? "10.0.0.\(vmid % 250 + 2)")/24"
        func iface(_ name: String, _ mac: String, _ v4: String, _ v6: String) -> JSONValue {
            let parts4 = v4.split(separator: "/")
            let parts6 = v6.split(separator: "/")
            return .object([
                "name": .string(name), "hwaddr": .string(mac), "hardware-address": .string(mac), "inet": .string(v4), "inet6": .string(v6),
                "ip-addresses": .array([
                    .object(["ip-address-type": "inet", "ip-address": .string(String(parts4[0])), "prefix": .int(Int64(parts4.last ?? "32") ?? 32)]),
                    .object([
                        "ip-address-type": "inet6", "ip-address": .string(String(parts6[0])), "prefix": .int(Int64(parts6.last ?? "128") ?? 128),
                    ]),
                ]),
            ])
        }
        return Result(
            .array([
                iface("lo", "00:00:00:00:00:00", "127.0.0.1/8", "::1/128"),
                iface("eth0", hwaddr, inet, "fe80::be24:11ff:fe00:\(String(vmid % 65536, radix: 16))/64"),
            ]))
    }

    func configObject(_ cfg: [String: String], digest: String?) -> JSONValue {
        var o: [String: JSONValue] = [:]
        for (k, v) in cfg where !k.hasPrefix("x-sim-") { o[k] = Self.typed(k, v) }
        if let digest { o["digest"] = .string(digest) }
        return .object(o)
    }

    func getConfig(_ p: Params, _ authid: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Audit"])
        let c = try container(p.str("node") ?? "", vmid)
        if let snapname = p.str("snapshot") {
            if p.bool("current") == true {
                throw SimError.param(["current": "can't be combined with snapshot"])
            }
            guard let s = c.snapshots.first(where: { $0.name == snapname }) else {
                throw SimError.die("snapshot '\(snapname)' does not exist")
            }
            var cfg = s.config
            cfg["snaptime"] = String(s.snaptime)
            if !s.description.isEmpty { cfg["description"] = s.description }
            return Result(configObject(cfg, digest: Self.digest(c)))
        }
        var cfg = c.config
        if p.bool("current") != true {
            for (k, v) in c.pending { cfg[k] = v }
            for k in c.pendingDelete { cfg[k] = nil }
        }
        return Result(configObject(cfg, digest: Self.digest(c)))
    }

    func getPending(_ p: Params, _ authid: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Audit"])
        let c = try container(p.str("node") ?? "", vmid)
        var keys = Set(c.config.keys).union(c.pending.keys).union(c.pendingDelete)
        keys = keys.filter { !$0.hasPrefix("x-sim-") }
        let items: [JSONValue] = keys.sorted().map { k in
            var o: [String: JSONValue] = ["key": .string(k)]
            // config_with_pending_array hands out the raw config strings (the schema says string).
            if let v = c.config[k] { o["value"] = .string(v) }
            if let v = c.pending[k] { o["pending"] = .string(v) }
            if c.pendingDelete.contains(k) { o["delete"] = 1 }
            return .object(o)
        }
        return Result(.array(items))
    }

    // MARK: - Config update

    /// Keys applied at once on a running container; all others (besides hotplug ones) go pending.
    static let fastplug: Set<String> = ["description", "onboot", "startup", "protection", "hostname", "hookscript", "cores", "tags", "lock"]
    static let hotplug: Set<String> = ["memory", "swap", "cpulimit", "cpuunits"]
    static let requiredKeys: Set<String> = ["memory", "rootfs", "ostype"]

    /// Per-key privilege checks of `check_ct_modify_config_perm`.
    func checkModifyPermissions(_ authid: String, vmid: Int, keys: [String], values: [String: String], newVolumes: Bool) throws {
        let path = "/vms/\(vmid)"
        for key in keys {
            switch key {
            case "cores", "cpuunits", "cpulimit": try require(authid, path, ["VM.Config.CPU"])
            case "memory", "swap": try require(authid, path, ["VM.Config.Memory"])
            case "hostname", "nameserver", "searchdomain": try require(authid, path, ["VM.Config.Network"])
            case "features":
                let opts = (values["features"] ?? "").split(separator: ",").map { $0.split(separator: "=").first.map(String.init) ?? "" }
                if opts.contains(where: { $0 != "nesting" && !$0.isEmpty }) && authid != "root@pam" {
                    throw SimError.permText("changing feature flags (except nesting) is only allowed for root@pam")
                }
                try require(authid, path, ["VM.Allocate"])
            case "hookscript", "lxc":
                if authid != "root@pam" { throw SimError.permText("user != root@pam") }
            default:
                if key == "rootfs" || key.hasPrefix("mp") {
                    try require(authid, path, ["VM.Config.Disk"])
                    if let v = values[key] {
                        let volid = Self.volid(of: v)
                        if volid.hasPrefix("/") && authid != "root@pam" {
                            throw SimError.permText("mount point type bind is only allowed for root@pam")
                        }
                        if newVolumes, let colon = volid.firstIndex(of: ":") {
                            try require(authid, "/storage/\(volid[..<colon])", ["Datastore.AllocateSpace"])
                        }
                    }
                } else if key.hasPrefix("net") {
                    try require(authid, path, ["VM.Config.Network"])
                } else if key.hasPrefix("dev") {
                    if authid != "root@pam" { throw SimError.permText("user != root@pam") }
                } else {
                    try require(authid, path, ["VM.Config.Options"])
                }
            }
        }
    }

    /// Turns `STORAGE:SIZE` mount point values into allocated volumes; returns the rewritten value.
    func allocateIfNew(_ key: String, _ value: String, vmid: Int, taken: inout Set<String>, data: String? = nil) throws
        -> (String, SimVolume?)
    {
        let volid = Self.volid(of: value)
        let parts = volid.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let gib = Double(parts[1]) else {
            if parts.count == 1, let gib = Double(volid) {
                return try allocateIfNew(
                    key, "local:\(ParamValidator.num(gib))" + value.dropFirst(volid.count), vmid: vmid, taken: &taken, data: data)
            }
            if !volid.hasPrefix("/"), !state.volumes.contains(where: { $0.volid == volid }) {
                throw SimError.param([key: "volume '\(volid)' does not exist"])
            }
            return (value, nil)
        }
        let vol = try allocateDisk(storageID: String(parts[0]), vmid: vmid, sizeGiB: gib, data: data, taken: &taken)
        var rest = value.split(separator: ",").dropFirst().filter { !$0.hasPrefix("size=") }.map(String.init)
        rest.append("size=\(Self.sizeText(vol.size))")
        return (([vol.volid] + Self.sortedOptions(rest)).joined(separator: ","), vol)
    }

    /// `mp=` first, then the other options sorted (pve-common `print_property_string`).
    static func sortedOptions(_ opts: [String]) -> [String] {
        let mp = opts.filter { $0.hasPrefix("mp=") }
        return mp + opts.filter { !$0.hasPrefix("mp=") }.sorted()
    }

    func putConfig(_ p: Params, _ authid: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try requireAny(authid, "/vms/\(vmid)", ["VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options"])
        let nodeName = p.str("node") ?? ""
        var c = try container(nodeName, vmid)
        let reserved: Set<String> = ["node", "vmid", "delete", "revert", "digest"]
        var set: [String: String] = [:]
        for (k, v) in p.values where !reserved.contains(k) { set[k] = ParamValidator.text(v) }
        let deletes = (p.str("delete") ?? "").split(whereSeparator: { ",; \0".contains($0) }).map(String.init)
        if set.isEmpty && deletes.isEmpty && p.str("revert") == nil {
            throw SimError.param(["delete": "no options specified"])
        }
        for d in deletes {
            if set[d] != nil { throw SimError.param(["delete": "you can't use '-\(d)' and -delete \(d)' at the same time"]) }
            if ParamValidator.property(
                d, in: ParamValidator.endpoints["PUT /nodes/{node}/lxc/{vmid}/config"]?["parameters"]?["properties"]?.objectValue ?? [:]) == nil
            {
                throw SimError.param(["delete": "unknown option '\(d)'"])
            }
            if Self.requiredKeys.contains(d) { throw SimError.die("unable to delete required option '\(d)'") }
        }
        if let l = lock(of: vmid) { throw SimError.die("CT is locked (\(l))") }
        if let d = p.str("digest"), !d.isEmpty, d != Self.digest(c) {
            throw SimError.die("detected modified configuration - file changed by other user? Try again.")
        }
        if set["unprivileged"] != nil { throw SimError.die("unable to modify read-only option: 'unprivileged'") }
        try checkModifyPermissions(authid, vmid: vmid, keys: Array(set.keys) + deletes, values: set, newVolumes: true)
        var taken = Set<String>()
        var newVolumes: [SimVolume] = []
        for (k, v) in set {
            if k == "description" {
                set[k] = FelhomSimText.normalizedDescription(v)
            } else if k == "rootfs" || k.hasPrefix("mp") {
                if let existing = c.config[k], Self.volid(of: existing) == Self.volid(of: v) {
                    continue
                }
                let (value, vol) = try allocateIfNew(k, v, vmid: vmid, taken: &taken)
                set[k] = value
                if let vol { newVolumes.append(vol) }
            } else if k == "cpuunits", let u = Int(v) {
                set[k] = String(min(max(u, 1), 10000))
            }
        }
        state.volumes.append(contentsOf: newVolumes)
        for (k, v) in set {
            let isNewMount = k.hasPrefix("mp") && c.config[k] == nil
            if !c.running || Self.fastplug.contains(k) || Self.hotplug.contains(k) || k.hasPrefix("net") || isNewMount {
                if k == "description" && v.isEmpty { c.config[k] = nil } else { c.config[k] = v }
                c.pending[k] = nil
            } else {
                c.pending[k] = v
            }
        }
        for d in deletes {
            if c.config[d] == nil && c.pending[d] == nil { continue }  // PVE only warns
            if !c.running || Self.fastplug.contains(d) || Self.hotplug.contains(d) {
                c.config[d] = nil
                c.pending[d] = nil
            } else if !c.pendingDelete.contains(d) {
                c.pendingDelete.append(d)
            }
        }
        if let revert = p.str("revert") {
            for k in revert.split(separator: ",").map(String.init) {
                c.pending[k] = nil
                c.pendingDelete.removeAll { $0 == k }
            }
        }
        state.containers[vmid] = c
        return Result(.null)
    }

    // MARK: - Power

    func power(_ p: Params, _ authid: String, action: String, path: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.PowerMgmt"])
        if p.has("skiplock") && authid != "root@pam" { throw SimError.param(["skiplock": "Only root may use this option."]) }
        let c = try container(p.str("node") ?? "", vmid)
        var spec = TaskSpec(node: c.node, type: "", id: String(vmid), authid: authid, requestPath: path, vmids: [vmid])
        switch action {
        case "start":
            if c.running { throw SimError.die("CT \(vmid) already running") }
            spec.type = "vzstart"
            spec.effect = .start(vmid: vmid)
            if c.config["template"] == "1" { spec.failure = "you can't start a CT if it's a template" }
        case "stop":
            if !c.running { throw SimError.die("CT \(vmid) not running") }
            spec.type = "vzstop"
            spec.effect = .stop(vmid: vmid)
        case "shutdown":
            if !c.running { throw SimError.die("CT \(vmid) not running") }
            spec.type = "vzshutdown"
            spec.effect = .stop(vmid: vmid)
        default:
            if !c.running { throw SimError.die("VM \(vmid) not running") }
            spec.type = "vzreboot"
            spec.effect = .start(vmid: vmid)
        }
        return Result(.string(startTask(spec)))
    }

    // MARK: - Destroy

    func destroyContainer(_ p: Params, _ authid: String, path: String) throws -> Result {
        let vmid = p.int("vmid") ?? 0
        try require(authid, "/vms/\(vmid)", ["VM.Allocate"])
        let c = try container(p.str("node") ?? "", vmid)
        if c.config["protection"] == "1" { throw SimError.die("can't remove CT \(vmid) - protection mode enabled") }
        if let l = lock(of: vmid) { throw SimError.die("CT is locked (\(l))") }
        if c.running && p.bool("force") != true { throw SimError.die("unable to destroy CT \(vmid) - container is running") }
        var spec = TaskSpec(node: c.node, type: "vzdestroy", id: String(vmid), authid: authid, requestPath: path, vmids: [vmid])
        spec.lockName = "destroyed"
        spec.effect = .destroy(vmid: vmid)
        spec.log = volumesOf(c).map { "Logical volume \"\($0.volume.volid.split(separator: ":").last ?? "")\" successfully removed." }
        if c.running { spec.log.insert("stopping CT \(vmid)", at: 0) }
        return Result(.string(startTask(spec)))
    }
}

/// Text rules shared by simulator handlers. Written independently of the client's
/// `GuestDescription` on purpose: the simulator stands in for Proxmox, so it must not borrow the
/// code it is meant to check.
enum FelhomSimText {
    /// PVE's description round trip: each non-empty line followed by a newline.
    static func normalizedDescription(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        for line in s.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: true) {
            out.append(contentsOf: line)
            out.append("\n")
        }
        return String(out)
    }
}
