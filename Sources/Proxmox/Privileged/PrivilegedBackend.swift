import FelhomCore
import Foundation

/// The fenced list of things the agent does as root because the Proxmox API cannot.
///
/// Exactly twelve operations, each building a fixed argument vector from validated input and running
/// it through a ``CommandRunner`` (no shell, so no injection through values): create the golden
/// template container with `keyctl` (a feature only `root@pam` may set, which API tokens never are),
/// mount a USB disk by filesystem UUID, read SMART data, read sensors, push the controller's
/// config file into a guest (`pct push`, a fixed destination only), and ask a guest's controller
/// for its stacks (`pct exec … felhom-controller stacks list --json`, a fixed command only), and
/// restart a silent controller (`pct exec … systemctl restart felhom-controller`), and give a PBS
/// storage its encryption key (`pvesm set STORAGE --encryption-key KEY-JSON`), and list the
/// filesystems of the attached disks with their UUIDs (`lsblk --json`, libblkid's view: the UUIDs
/// `blkid` prints), and for volume snapshots list the logical volumes (`lvs`), create a read-only thin
/// snapshot named `felhom-snap-*` (`lvcreate -s`) and remove one (`lvremove`, only that prefix).
/// It makes no HTTP calls, and
/// the API client runs no commands.
public struct PrivilegedBackend: Sendable {
    let runner: CommandRunner

    public init(runner: CommandRunner) { self.runner = runner }

    // MARK: 1. Golden template

    /// What the golden template container is created from.
    public struct GoldenTemplateSpec: Sendable, Equatable {
        public var vmid: Int
        /// A `vztmpl` volid, e.g. `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`.
        public var ostemplate: String
        public var hostname: String
        public var storage: String
        public var memoryMiB: Int
        public var diskGiB: Int

        public init(
            vmid: Int, ostemplate: String, hostname: String = "felhom-golden", storage: String = "local",
            memoryMiB: Int = 512, diskGiB: Int = 4
        ) {
            self.vmid = vmid
            self.ostemplate = ostemplate
            self.hostname = hostname
            self.storage = storage
            self.memoryMiB = memoryMiB
            self.diskGiB = diskGiB
        }
    }

    /// The argv of `pct create` for the golden template (unprivileged, `nesting=1,keyctl=1`).
    public static func goldenTemplateArguments(_ spec: GoldenTemplateSpec) throws -> [String] {
        guard (100...999_999_999).contains(spec.vmid) else { throw invalid("vmid \(spec.vmid) is outside 100…999999999") }
        guard Pattern.whole(spec.ostemplate, #"[A-Za-z][A-Za-z0-9\-_.]*:vztmpl/[A-Za-z0-9._+\-]+"#)
        else { throw invalid("ostemplate '\(spec.ostemplate)' is not a STORAGE:vztmpl/FILE volid") }
        guard Pattern.whole(spec.hostname, #"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?"#) else {
            throw invalid("hostname '\(spec.hostname)' is not a DNS label")
        }
        guard Pattern.whole(spec.storage, #"[A-Za-z][A-Za-z0-9\-_.]*"#) else {
            throw invalid("storage '\(spec.storage)' is not a storage id")
        }
        guard spec.memoryMiB >= 16, spec.diskGiB >= 1 else { throw invalid("memory must be ≥16 MiB and disk ≥1 GiB") }
        return [
            "create", String(spec.vmid), spec.ostemplate,
            "--hostname", spec.hostname,
            "--features", "keyctl=1,nesting=1",
            "--unprivileged", "1",
            "--memory", String(spec.memoryMiB),
            "--rootfs", "\(spec.storage):\(spec.diskGiB)",
            "--net0", "name=eth0,bridge=vmbr0,ip=dhcp",
            "--description", "felhom golden template",
        ]
    }

    /// Runs `pct create …` for the golden template.
    public func createGoldenTemplate(_ spec: GoldenTemplateSpec) async throws {
        let args = try Self.goldenTemplateArguments(spec)
        try check(try await runner.run("pct", args), what: "pct create \(spec.vmid)")
    }

    // MARK: 2. Mount a USB disk by filesystem UUID

    /// The argv of `mount` for a disk by filesystem UUID under `/mnt/felhom/`.
    public static func mountArguments(filesystemUUID: String, mountPoint: String) throws -> [String] {
        // ext4/xfs/btrfs UUIDs (8-4-4-4-12) or vfat/exfat serials (XXXX-XXXX).
        let uuidPattern = #"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}"#
        guard Pattern.whole(filesystemUUID, uuidPattern) else {
            throw invalid("'\(filesystemUUID)' is not a filesystem UUID")
        }
        guard Pattern.whole(mountPoint, #"/mnt/felhom/[A-Za-z0-9][A-Za-z0-9._\-]*"#) else {
            throw invalid("mount point '\(mountPoint)' must be /mnt/felhom/NAME")
        }
        return ["UUID=\(filesystemUUID)", mountPoint, "-o", "nosuid,nodev,noexec"]
    }

    /// Mounts the filesystem with `filesystemUUID` at `mountPoint` (`/mnt/felhom/NAME`).
    public func mountDisk(filesystemUUID: String, mountPoint: String) async throws {
        let args = try Self.mountArguments(filesystemUUID: filesystemUUID, mountPoint: mountPoint)
        try check(try await runner.run("mount", args), what: "mount UUID=\(filesystemUUID)")
    }

    // MARK: 3. SMART

    /// The health summary of one disk, from `smartctl --json`.
    public struct SMARTReport: Sendable, Equatable {
        public var device: String
        public var model: String?
        public var serial: String?
        /// `smart_status.passed`; `nil` when the drive did not report it.
        public var passed: Bool?
        public var temperatureCelsius: Int?
        public var powerOnHours: Int?
        /// ATA attribute 5 (`Reallocated_Sector_Ct`) raw value, or NVMe `media_errors`.
        public var reallocatedSectors: Int64?
        /// ATA attribute 197 (`Current_Pending_Sector`) raw value.
        public var pendingSectors: Int64?
        /// NVMe `critical_warning` ≠ 0 or spare below its threshold: failing even when `passed`.
        public var nvmeCritical: Bool = false
        /// smartctl's exit status bitmask (bits 2–7 are warnings about the disk, not failures to run).
        public var exitStatus: Int32
    }

    /// The argv of `smartctl` for one device (`/dev/sdX`, `/dev/nvmeN`, `/dev/disk/by-id/…`).
    public static func smartArguments(device: String) throws -> [String] {
        guard Pattern.whole(device, #"/dev/(sd[a-z]{1,2}|nvme[0-9]+(n[0-9]+)?|disk/by-id/[A-Za-z0-9_.:\-]+)"#)
        else { throw invalid("'\(device)' is not a disk device path") }
        return ["--json=c", "--all", device]
    }

    /// Reads SMART data of `device`.
    public func smart(device: String) async throws -> SMARTReport {
        let r = try await runner.run("smartctl", try Self.smartArguments(device: device))
        // Bits 0 and 1: command line or device open failed. Other bits describe the disk.
        if r.exitCode & 0b11 != 0 {
            throw PrivilegedError(
                code: .commandFailed,
                message: "smartctl \(device) failed (exit \(r.exitCode)): \(Self.firstLine(r.stderr.isEmpty ? r.stdout : r.stderr))")
        }
        return try Self.parseSMART(r.stdout, device: device, exitStatus: r.exitCode)
    }

    /// Parses `smartctl --json` output.
    public static func parseSMART(_ text: String, device: String, exitStatus: Int32 = 0) throws -> SMARTReport {
        let json: JSONValue
        do { json = try JSONValue.parse(text) } catch {
            throw PrivilegedError(code: .badOutput, message: "smartctl output for \(device) is not JSON")
        }
        guard json["json_format_version"] != nil else {
            throw PrivilegedError(code: .badOutput, message: "smartctl output for \(device) has no json_format_version")
        }
        func attribute(_ id: Int64) -> Int64? {
            json["ata_smart_attributes"]?["table"]?.arrayValue?.first { $0["id"]?.lenientInt == id }?["raw"]?["value"]?.lenientInt
        }
        let nvme = json["nvme_smart_health_information_log"]
        var nvmeCritical = false
        if let nvme {
            let warning = nvme["critical_warning"]?.lenientInt ?? 0
            let spare = nvme["available_spare"]?.lenientInt
            let threshold = nvme["available_spare_threshold"]?.lenientInt
            nvmeCritical = warning != 0 || (spare != nil && threshold != nil && spare! < threshold!)
        }
        return SMARTReport(
            device: json["device"]?["name"]?.stringValue ?? device,
            model: json["model_name"]?.stringValue ?? json["model_family"]?.stringValue,
            serial: json["serial_number"]?.stringValue,
            passed: json["smart_status"]?["passed"]?.lenientBool,
            temperatureCelsius: json["temperature"]?["current"]?.lenientInt.map { Int($0) },
            powerOnHours: json["power_on_time"]?["hours"]?.lenientInt.map { Int($0) },
            reallocatedSectors: attribute(5) ?? nvme?["media_errors"]?.lenientInt,
            pendingSectors: attribute(197),
            nvmeCritical: nvmeCritical,
            exitStatus: exitStatus)
    }

    /// `smartctl --scan --json=c`: the devices smartctl can address (no `devices` key when none).
    public static let smartScanArguments = ["--scan", "--json=c"]

    public func smartDevices() async throws -> [String] {
        let r = try await runner.run("smartctl", Self.smartScanArguments)
        if r.exitCode & 0b11 != 0 {
            throw PrivilegedError(code: .commandFailed, message: "smartctl --scan failed (exit \(r.exitCode)): \(Self.firstLine(r.stderr))")
        }
        return try Self.parseSMARTScan(r.stdout)
    }

    /// The device names of a scan, each a path ``smartArguments(device:)`` accepts (others are skipped).
    public static func parseSMARTScan(_ text: String) throws -> [String] {
        guard let json = try? JSONValue.parse(text), json["json_format_version"] != nil else {
            throw PrivilegedError(code: .badOutput, message: "smartctl --scan output is not smartctl JSON")
        }
        return (json["devices"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }.filter { (try? smartArguments(device: $0)) != nil }
    }

    // MARK: 4. Sensors

    /// One temperature/fan/voltage reading from `sensors -j`.
    public struct SensorReading: Sendable, Equatable {
        public var chip: String
        public var label: String
        /// The `*_input` key, e.g. `temp1_input`.
        public var key: String
        public var value: Double
    }

    /// Reads all sensor inputs.
    public func sensors() async throws -> [SensorReading] {
        let r = try await runner.run("sensors", ["-j"])
        guard r.exitCode == 0 else {
            throw PrivilegedError(code: .commandFailed, message: "sensors -j failed (exit \(r.exitCode)): \(Self.firstLine(r.stderr))")
        }
        return try Self.parseSensors(r.stdout)
    }

    /// Parses `sensors -j` output: chip → feature label → `*_input` values.
    public static func parseSensors(_ text: String) throws -> [SensorReading] {
        guard let chips = (try? JSONValue.parse(text))?.objectValue else {
            throw PrivilegedError(code: .badOutput, message: "sensors output is not a JSON object")
        }
        var out: [SensorReading] = []
        for (chip, features) in chips {
            for (label, values) in features.objectValue ?? [:] {
                for (key, v) in values.objectValue ?? [:] where key.hasSuffix("_input") {
                    if let d = v.lenientDouble { out.append(SensorReading(chip: chip, label: label, key: key, value: d)) }
                }
            }
        }
        return out.sorted { ($0.chip, $0.label, $0.key) < ($1.chip, $1.label, $1.key) }
    }

    // MARK: 5. The controller's config into a guest

    /// The only paths a file may be pushed to inside a guest.
    public static let pushDestinations: Set<String> = ["/etc/felhom/controller.json"]

    /// The argv of `pct push`: `source` must be an absolute path without `..` (a file the agent
    /// wrote, 0600), `destination` one of ``pushDestinations``; the file lands root-owned 0600.
    public static func pushArguments(vmid: Int, source: String, destination: String) throws -> [String] {
        guard (100...999_999_999).contains(vmid) else { throw invalid("vmid \(vmid) is outside 100…999999999") }
        guard source.hasPrefix("/"), !source.split(separator: "/").contains(".."),
            Pattern.whole(source, #"/[A-Za-z0-9._/\-]+"#)
        else { throw invalid("source '\(source)' must be an absolute path of [A-Za-z0-9._/-] without ..") }
        guard pushDestinations.contains(destination) else {
            throw invalid("destination '\(destination)' is not one of \(pushDestinations.sorted().joined(separator: ", "))")
        }
        return ["push", String(vmid), source, destination, "--perms", "0600", "--user", "0", "--group", "0"]
    }

    /// Runs `pct push VMID SOURCE DESTINATION` (root 0600 in the guest).
    public func push(vmid: Int, source: String, destination: String) async throws {
        let args = try Self.pushArguments(vmid: vmid, source: source, destination: destination)
        try check(try await runner.run("pct", args), what: "pct push \(vmid) \(destination)")
    }

    // MARK: 6. A guest's stacks, from its controller

    /// One stack as `felhom-controller stacks list --json` reports it.
    public struct GuestStack: Sendable, Equatable {
        public var name: String
        /// `running`, `partial`, `stopped` or `not_deployed`.
        public var state: String
        public init(name: String, state: String) {
            self.name = name
            self.state = state
        }
    }

    /// The argv of `pct exec VMID -- felhom-controller stacks list --json` (nothing else can be run).
    public static func stacksListArguments(vmid: Int) throws -> [String] {
        guard (100...999_999_999).contains(vmid) else { throw invalid("vmid \(vmid) is outside 100…999999999") }
        return ["exec", String(vmid), "--", "felhom-controller", "stacks", "list", "--json"]
    }

    /// Asks the controller inside guest `vmid` for its stacks; the guest's answer is untrusted
    /// text: anything but the documented JSON array is `badOutput`.
    public func stacks(vmid: Int) async throws -> [GuestStack] {
        let r = try await runner.run("pct", try Self.stacksListArguments(vmid: vmid))
        try check(r, what: "pct exec \(vmid) -- felhom-controller stacks list")
        return try Self.parseStacks(r.stdout)
    }

    /// Parses `stacks list --json`: `[{"name", "state", …}]`, at most 1 MiB and 1,000 stacks.
    public static func parseStacks(_ text: String) throws -> [GuestStack] {
        guard text.utf8.count <= 1 << 20, let doc = try? JSONValue.parse(Data(text.utf8)), let list = doc.arrayValue, list.count <= 1000 else {
            throw PrivilegedError(code: .badOutput, message: "the controller's stack list is not a JSON array")
        }
        return try list.map { item in
            guard let name = item["name"]?.stringValue, let state = item["state"]?.stringValue, name.utf8.count <= 128,
                ["running", "partial", "stopped", "not_deployed"].contains(state)
            else { throw PrivilegedError(code: .badOutput, message: "the controller's stack list has an entry without a name and a known state") }
            return GuestStack(name: name, state: state)
        }
    }

    // MARK: 6b. The guest's controller binary (controller.update, docs/updates.md)

    /// Where the controller binary lives in every guest (the golden template puts it there).
    public static let controllerBinary = "/usr/local/bin/felhom-controller"
    /// Where a new binary is pushed before it is renamed over the old one (same file system).
    public static let controllerStaging = "/usr/local/bin/felhom-controller.new"

    static func checkLocalFile(_ path: String) throws {
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(".."), Pattern.whole(path, #"/[A-Za-z0-9._/\-]+"#) else {
            throw invalid("'\(path)' must be an absolute path of [A-Za-z0-9._/-] without ..")
        }
    }

    /// `pct exec VMID -- felhom-controller --version` (nothing else can be run).
    public static func controllerVersionArguments(vmid: Int) throws -> [String] {
        guard (100...999_999_999).contains(vmid) else { throw invalid("vmid \(vmid) is outside 100…999999999") }
        return ["exec", String(vmid), "--", controllerBinary, "--version"]
    }

    /// The version the guest's controller says it is: one line, a release version; anything else
    /// from the guest (untrusted text) is `badOutput`.
    public func controllerVersion(vmid: Int) async throws -> String {
        let r = try await runner.run("pct", try Self.controllerVersionArguments(vmid: vmid))
        try check(r, what: "pct exec \(vmid) -- felhom-controller --version")
        let line = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.utf8.count <= 80, ReleaseVersion(line) != nil else {
            throw PrivilegedError(code: .badOutput, message: "guest \(vmid)'s controller did not answer --version with a release version")
        }
        return line
    }

    /// `pct pull VMID /usr/local/bin/felhom-controller DEST` (the binary in use, kept for a roll-back).
    public static func pullControllerArguments(vmid: Int, destination: String) throws -> [String] {
        guard (100...999_999_999).contains(vmid) else { throw invalid("vmid \(vmid) is outside 100…999999999") }
        try checkLocalFile(destination)
        return ["pull", String(vmid), controllerBinary, destination]
    }

    public func pullController(vmid: Int, to destination: String) async throws {
        try check(try await runner.run("pct", try Self.pullControllerArguments(vmid: vmid, destination: destination)), what: "pct pull \(vmid)")
    }

    /// `pct push VMID SRC /usr/local/bin/felhom-controller.new --perms 0755 --user 0 --group 0`.
    public static func pushControllerArguments(vmid: Int, source: String) throws -> [String] {
        guard (100...999_999_999).contains(vmid) else { throw invalid("vmid \(vmid) is outside 100…999999999") }
        try checkLocalFile(source)
        return ["push", String(vmid), source, controllerStaging, "--perms", "0755", "--user", "0", "--group", "0"]
    }

    public func pushController(vmid: Int, source: String) async throws {
        try check(try await runner.run("pct", try Self.pushControllerArguments(vmid: vmid, source: source)), what: "pct push \(vmid) controller")
    }

    /// `pct exec VMID -- mv -f …/felhom-controller.new …/felhom-controller` (an atomic rename in the guest).
    public static func installControllerArguments(vmid: Int) throws -> [String] {
        guard (100...999_999_999).contains(vmid) else { throw invalid("vmid \(vmid) is outside 100…999999999") }
        return ["exec", String(vmid), "--", "mv", "-f", controllerStaging, controllerBinary]
    }

    public func installController(vmid: Int) async throws {
        try check(try await runner.run("pct", try Self.installControllerArguments(vmid: vmid)), what: "pct exec \(vmid) -- mv controller")
    }

    // MARK: 7. Restart a guest's controller (healing)

    /// The argv of `pct exec VMID -- systemctl restart felhom-controller` (nothing else can be run).
    public static func restartControllerArguments(vmid: Int) throws -> [String] {
        guard (100...999_999_999).contains(vmid) else { throw invalid("vmid \(vmid) is outside 100…999999999") }
        return ["exec", String(vmid), "--", "systemctl", "restart", "felhom-controller"]
    }

    /// Restarts the controller service inside guest `vmid` (the first step of healing a silent controller).
    public func restartController(vmid: Int) async throws {
        let r = try await runner.run("pct", try Self.restartControllerArguments(vmid: vmid))
        try check(r, what: "pct exec \(vmid) -- systemctl restart felhom-controller")
    }

    // MARK: 8. A PBS storage's encryption key (escrow set-up, disaster recovery)

    /// The argv of `pvesm set STORAGE --encryption-key KEY-JSON`: the storage id is a PVE id, the
    /// key a `--kdf none` PBS key file (JSON with 44 characters of base64 `data`), nothing else.
    /// PVE writes it to `/etc/pve/priv/storage/STORAGE.enc` and shows only its fingerprint. The key
    /// is in this short-lived root process's argv (PVE has no other way outside its API); it never
    /// appears in an error.
    public static func setEncryptionKeyArguments(storage: String, keyJSON: String) throws -> [String] {
        guard Pattern.whole(storage, #"[A-Za-z][A-Za-z0-9_.-]{1,63}"#) else {
            throw invalid("storage '\(storage.prefix(64))' is not a PVE storage id")
        }
        guard keyJSON.utf8.count <= 1024, let doc = try? JSONValue.parse(Data(keyJSON.utf8)), doc["kdf"] == .null,
            let data = doc["data"]?.stringValue, Data(base64Encoded: data)?.count == 32
        else { throw invalid("the encryption key must be a PBS key file made with --kdf none") }
        return ["set", storage, "--encryption-key", keyJSON]
    }

    /// Sets `storage`'s PBS encryption key.
    public func setEncryptionKey(storage: String, keyJSON: String) async throws {
        let r = try await runner.run("pvesm", try Self.setEncryptionKeyArguments(storage: storage, keyJSON: keyJSON))
        try check(r, what: "pvesm set \(storage) --encryption-key …")
    }

    // MARK: 9. Filesystems of the attached disks

    /// One filesystem as `lsblk --json --bytes --list` shows it.
    public struct BlockFilesystem: Sendable, Equatable {
        public var device: String
        public var uuid: String?
        public var label: String?
        public var fstype: String?
        public var size: Int64
        /// Free bytes, when mounted.
        public var available: Int64?
        public var mountPoint: String?
        public init(
            device: String, uuid: String?, label: String?, fstype: String?, size: Int64, available: Int64? = nil, mountPoint: String? = nil
        ) {
            self.device = device
            self.uuid = uuid
            self.label = label
            self.fstype = fstype
            self.size = size
            self.available = available
            self.mountPoint = mountPoint
        }
    }

    /// The fixed argv of `lsblk` (nothing of it comes from outside).
    public static let lsblkArguments = ["--json", "--bytes", "--list", "--output", "PATH,UUID,LABEL,FSTYPE,SIZE,FSAVAIL,MOUNTPOINT"]

    /// Every block device's filesystem (`lsblk --json --bytes --list --output PATH,UUID,…`).
    public func filesystems() async throws -> [BlockFilesystem] {
        let r = try await runner.run("lsblk", Self.lsblkArguments)
        try check(r, what: "lsblk")
        return try Self.parseFilesystems(r.stdout)
    }

    /// Parses lsblk's JSON (util-linux 2.38: numbers in bytes, `null` for what is not there); at
    /// most 4 MiB and 4,096 devices; a label or UUID is kept only when printable and short.
    public static func parseFilesystems(_ text: String) throws -> [BlockFilesystem] {
        guard text.utf8.count <= 4 << 20, let doc = try? JSONValue.parse(Data(text.utf8)), let list = doc["blockdevices"]?.arrayValue,
            list.count <= 4096
        else { throw PrivilegedError(code: .badOutput, message: "lsblk did not print its JSON device list") }
        func field(_ v: JSONValue?, max: Int = 128) -> String? {
            guard let s = v?.stringValue, !s.isEmpty, s.utf8.count <= max, s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
            else { return nil }
            return s
        }
        func number(_ v: JSONValue?) -> Int64? {
            switch v {
            case .int(let n)?: return n
            case .string(let s)?: return Int64(s)
            default: return nil
            }
        }
        return try list.map { item in
            guard let device = field(item["path"], max: 256) else {
                throw PrivilegedError(code: .badOutput, message: "lsblk listed a device without a path")
            }
            return BlockFilesystem(
                device: device, uuid: field(item["uuid"], max: 64), label: field(item["label"], max: 80), fstype: field(item["fstype"], max: 32),
                size: number(item["size"]) ?? 0, available: number(item["fsavail"]), mountPoint: field(item["mountpoint"], max: 256))
        }
    }

    // MARK: 10–12. LVM-thin snapshots of volumes (issue 17)

    /// One logical volume as `lvs --reportformat json` shows it.
    public struct LogicalVolume: Sendable, Equatable {
        public var name: String
        public var volumeGroup: String
        /// The 10-character `lv_attr` (`V` thin volume, `k` activation skip…).
        public var attributes: String
        /// The thin pool it lives in (empty when not thin).
        public var pool: String
        public var origin: String
        public var size: Int64
        public init(name: String, volumeGroup: String, attributes: String, pool: String, origin: String, size: Int64) {
            self.name = name
            self.volumeGroup = volumeGroup
            self.attributes = attributes
            self.pool = pool
            self.origin = origin
            self.size = size
        }
        /// A thin volume (`lv_attr` starts with `V`).
        public var isThin: Bool { attributes.hasPrefix("V") }
    }

    /// The prefix of every snapshot LV the agent makes. Never PVE's `snap_`: Proxmox deletes
    /// `snap_<volume>_*` LVs when a volume is freed (WAVE2-FACTS §8.2).
    public static let snapshotPrefix = "felhom-snap-"

    /// The fixed argv of `lvs`.
    public static let lvsArguments = [
        "--reportformat", "json", "-o", "lv_name,vg_name,lv_attr,pool_lv,origin,lv_size", "--units", "b", "--nosuffix",
    ]

    static let lvmName = #"[A-Za-z0-9+_][A-Za-z0-9+_.\-]{0,126}"#

    /// The argv of `lvcreate` for a read-only thin snapshot `name` of `vg/origin`, created without
    /// the activation-skip flag (`-kn`) so it is active and its device exists at once.
    public static func thinSnapshotArguments(volumeGroup: String, origin: String, name: String) throws -> [String] {
        guard Pattern.whole(volumeGroup, lvmName), Pattern.whole(origin, lvmName) else {
            throw invalid("'\(volumeGroup)/\(origin)' is not an LVM volume name")
        }
        guard name.hasPrefix(snapshotPrefix), Pattern.whole(name, lvmName) else {
            throw invalid("snapshot name '\(name)' must start with \(snapshotPrefix)")
        }
        return ["--snapshot", "--setactivationskip", "n", "--permission", "r", "--name", name, "\(volumeGroup)/\(origin)"]
    }

    /// The argv of `lvremove` for one of the agent's own snapshots (any other name is refused).
    public static func removeSnapshotArguments(volumeGroup: String, name: String) throws -> [String] {
        guard Pattern.whole(volumeGroup, lvmName), name.hasPrefix(snapshotPrefix), Pattern.whole(name, lvmName) else {
            throw invalid("only the agent's own snapshots (\(snapshotPrefix)*) are removed, not '\(volumeGroup)/\(name)'")
        }
        return ["--yes", "\(volumeGroup)/\(name)"]
    }

    /// The path of a guest's cgroup v2 memory events (PVE puts a container in `lxc/<vmid>`; the
    /// file is hierarchical, so it counts the container's `ns/` too; WAVE2-FACTS §8.1).
    public static func memoryEventsPath(vmid: Int) -> String { "/sys/fs/cgroup/lxc/\(vmid)/memory.events" }

    /// The vmid of a ``memoryEventsPath(vmid:)``, nil for any other path.
    public static func memoryEventsVMID(_ path: String) -> Int? {
        let prefix = "/sys/fs/cgroup/lxc/"
        let suffix = "/memory.events"
        guard path.hasPrefix(prefix), path.hasSuffix(suffix) else { return nil }
        let middle = path.dropFirst(prefix.count).dropLast(suffix.count)
        guard let vmid = Int(middle), (100...999_999_999).contains(vmid), String(vmid) == middle else { return nil }
        return vmid
    }

    /// A guest's cgroup v2 `memory.events` counters, parsed by key (unknown keys kept, lines that
    /// are not `key value` skipped). Fails when the guest runs no cgroup (stopped).
    public func memoryEvents(vmid: Int) async throws -> [String: Int64] {
        guard (100...999_999_999).contains(vmid) else { throw Self.invalid("vmid \(vmid) is out of range") }
        let r = try await runner.run("cat", [Self.memoryEventsPath(vmid: vmid)])
        try check(r, what: "reading the memory events of \(vmid)")
        return Self.parseMemoryEvents(r.stdout)
    }

    /// `key value` per line → counters (at most 64 keys; a malformed line is skipped).
    public static func parseMemoryEvents(_ text: String) -> [String: Int64] {
        var out: [String: Int64] = [:]
        for line in text.split(separator: "\n").prefix(64) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let value = Int64(parts[1]), value >= 0 else { continue }
            out[String(parts[0])] = value
        }
        return out
    }

    /// Every logical volume.
    public func logicalVolumes() async throws -> [LogicalVolume] {
        let r = try await runner.run("lvs", Self.lvsArguments)
        try check(r, what: "lvs")
        return try Self.parseLogicalVolumes(r.stdout)
    }

    /// Creates the read-only thin snapshot `name` of `vg/origin`; its device is `/dev/VG/NAME`.
    public func createThinSnapshot(volumeGroup: String, origin: String, name: String) async throws {
        let args = try Self.thinSnapshotArguments(volumeGroup: volumeGroup, origin: origin, name: name)
        try check(try await runner.run("lvcreate", args), what: "lvcreate snapshot of \(volumeGroup)/\(origin)")
    }

    /// Removes one of the agent's snapshots.
    public func removeSnapshot(volumeGroup: String, name: String) async throws {
        let args = try Self.removeSnapshotArguments(volumeGroup: volumeGroup, name: name)
        try check(try await runner.run("lvremove", args), what: "lvremove \(volumeGroup)/\(name)")
    }

    /// Parses `lvs --reportformat json` (every value a string; sizes in bytes with `--units b
    /// --nosuffix`); at most 4 MiB and 65,536 volumes; names are checked against LVM's rules.
    public static func parseLogicalVolumes(_ text: String) throws -> [LogicalVolume] {
        guard text.utf8.count <= 4 << 20, let doc = try? JSONValue.parse(Data(text.utf8)), let reports = doc["report"]?.arrayValue else {
            throw PrivilegedError(code: .badOutput, message: "lvs did not print its JSON report")
        }
        var out: [LogicalVolume] = []
        for report in reports {
            for item in report["lv"]?.arrayValue ?? [] {
                guard let name = item["lv_name"]?.stringValue, Pattern.whole(name, lvmName), let vg = item["vg_name"]?.stringValue,
                    Pattern.whole(vg, lvmName)
                else { throw PrivilegedError(code: .badOutput, message: "lvs listed a volume without a valid name") }
                let attr = item["lv_attr"]?.stringValue ?? ""
                out.append(
                    LogicalVolume(
                        name: name, volumeGroup: vg, attributes: String(attr.prefix(10)), pool: item["pool_lv"]?.stringValue ?? "",
                        origin: item["origin"]?.stringValue ?? "", size: Int64(item["lv_size"]?.stringValue ?? "") ?? 0))
                guard out.count <= 65536 else { throw PrivilegedError(code: .badOutput, message: "lvs listed more than 65,536 volumes") }
            }
        }
        return out
    }

    // MARK: -

    func check(_ r: CommandResult, what: String) throws {
        guard r.exitCode == 0 else {
            throw PrivilegedError(code: .commandFailed, message: "\(what) failed (exit \(r.exitCode)): \(Self.firstLine(r.stderr))")
        }
    }

    static func firstLine(_ s: String) -> String {
        String(s.split(separator: "\n").first ?? "").trimmingCharacters(in: .whitespaces)
    }

    static func invalid(_ message: String) -> PrivilegedError {
        PrivilegedError(code: .invalidArgument, message: message)
    }
}

/// A root operation that was refused or failed.
public struct PrivilegedError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case invalidArgument, commandFailed, badOutput }
    public var code: Code
    public var message: String
    public var description: String { "privileged \(code.rawValue): \(message)" }
}
