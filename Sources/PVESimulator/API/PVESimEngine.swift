import Crypto
import FelhomCore
import Foundation

/// The simulated Proxmox VE API: authentication, routing, parameter checks, privileges, tasks and
/// state, independent of the network (``PVESimServer`` puts it on HTTPS).
///
/// Task effects are applied lazily: every call first completes the tasks whose time has come, so an
/// injected ``WallClock`` fully controls task progress in tests.
public actor PVESimEngine {
    var state: SimState
    let clock: WallClock
    let stateFile: URL?
    /// The TLS certificate's SHA-256 fingerprint, reported as `ssl_fingerprint` in `GET /nodes`.
    var serverFingerprint: String?
    private var rng: SystemRandomNumberGenerator = SystemRandomNumberGenerator()
    /// Test hook: deterministic fault draws.
    var faultDraw: @Sendable () -> Double = { Double.random(in: 0..<1) }

    /// - Parameters:
    ///   - state: the initial state (seed or loaded).
    ///   - clock: the wall clock (tests inject a ``ManualClock``).
    ///   - stateFile: where to persist the state after each change (`nil`: memory only).
    ///   - sharedPBS: a PBS datastore shared with other simulated hosts: this host's `pbs`
    ///     storages with its name keep their backups there (by namespace).
    public init(state: SimState, clock: WallClock = SystemWallClock(), stateFile: URL? = nil, sharedPBS: SimPBSDatastore? = nil) {
        self.state = state
        self.clock = clock
        self.stateFile = stateFile
        self.sharedPBS = sharedPBS
    }

    /// The shared PBS datastore, if any.
    let sharedPBS: SimPBSDatastore?
    /// Per bound storage: the snapshots as last read from the shared datastore (path → encoded
    /// volume), so only this host's own changes are written back.
    var pulledPBS: [String: [String: Data]] = [:]
    /// Whether the seed's backups were put into the shared datastore yet.
    var seededPBS = false

    /// A copy of the current state (after completing due tasks).
    public func snapshot() -> SimState {
        advance()
        return state
    }

    /// Sets the fingerprint reported in `GET /nodes`.
    public func setServerFingerprint(_ fp: String?) { serverFingerprint = fp }

    /// Changes faults at run time.
    public func setFaults(_ faults: SimFaults) {
        state.faults = faults
        persist()
    }

    /// Changes behaviour switches at run time.
    public func setSettings(_ settings: SimSettings) {
        state.settings = settings
        persist()
    }

    /// Sets what guest `vmid`'s controller answers to `felhom-controller stacks list --json`.
    public func setAppHealth(vmid: Int, json: String?) {
        advance()
        state.containers[vmid]?.appHealth = json
        persist()
    }

    /// `pct exec VMID -- felhom-controller stacks list --json` as root on the host would run it: the
    /// guest's app-health payload when it runs, else PVE's and the shell's errors.
    public func execStacksList(vmid: Int) -> (exitCode: Int32, stdout: String, stderr: String) {
        advance()
        guard let c = state.containers[vmid] else {
            return (2, "", "Configuration file 'nodes/\(state.nodes.first?.name ?? "pve1")/lxc/\(vmid).conf' does not exist\n")
        }
        guard c.running else { return (255, "", "container '\(vmid)' not running!\n") }
        guard let json = c.appHealth else { return (127, "", "sh: 1: felhom-controller: not found\n") }
        return (0, json, "")
    }

    /// Plugs a disk in (or replaces the one with the same UUID).
    public func attachDisk(_ disk: SimDisk) {
        var disks = state.disks ?? []
        disks.removeAll { $0.uuid == disk.uuid }
        disks.append(disk)
        state.disks = disks
        persist()
    }

    /// Unplugs the disk with `uuid` (its mount goes with it).
    public func detachDisk(uuid: String) {
        state.disks?.removeAll { $0.uuid == uuid }
        persist()
    }

    /// `lsblk --json --bytes --list --output PATH,UUID,LABEL,FSTYPE,SIZE,FSAVAIL,MOUNTPOINT` as
    /// util-linux 2.38 prints it: the system disk (mounted at `/`, no filesystem UUID of its own as a
    /// whole disk) and every attached disk.
    public func execLsblk() -> String {
        advance()
        var devices: [JSONValue] = [
            [
                "path": "/dev/nvme0n1", "uuid": .null, "label": .null, "fstype": .null, "size": .int(512 << 30), "fsavail": .null,
                "mountpoint": .null,
            ],
            [
                "path": "/dev/nvme0n1p3", "uuid": "3f1c8a2e-5b7d-4e19-9c60-2d8b7a41e0f5", "label": .null, "fstype": "LVM2_member",
                "size": .int(511 << 30), "fsavail": .null, "mountpoint": .null,
            ],
            [
                "path": "/dev/mapper/pve-root", "uuid": "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d", "label": .null, "fstype": "ext4",
                "size": .int(96 << 30), "fsavail": .int(60 << 30), "mountpoint": "/",
            ],
        ]
        for d in state.disks ?? [] {
            devices.append([
                "path": .string(d.device), "uuid": .string(d.uuid), "label": d.label.map { .string($0) } ?? .null, "fstype": .string(d.fstype),
                "size": .int(d.sizeBytes), "fsavail": d.mountPoint == nil ? .null : .int(d.sizeBytes - d.usedBytes),
                "mountpoint": d.mountPoint.map { .string($0) } ?? .null,
            ])
        }
        return String(decoding: JSONValue.object(["blockdevices": .array(devices)]).serialized(), as: UTF8.self)
    }

    /// `mount UUID=… MOUNTPOINT -o …` as root runs it: the disk must be attached and not mounted
    /// elsewhere.
    public func execMount(uuid: String, mountPoint: String) -> (exitCode: Int32, stderr: String) {
        advance()
        guard let i = state.disks?.firstIndex(where: { $0.uuid == uuid }) else {
            return (32, "mount: \(mountPoint): can't find UUID=\(uuid).\n")
        }
        if let at = state.disks?[i].mountPoint, at != mountPoint {
            return (32, "mount: \(mountPoint): UUID=\(uuid) already mounted on \(at).\n")
        }
        state.disks?[i].mountPoint = mountPoint
        persist()
        return (0, "")
    }

    /// How often each guest's controller was restarted through `pct exec … systemctl restart
    /// felhom-controller` (healing), since the engine started.
    public private(set) var controllerRestarts: [Int: Int] = [:]

    /// `pct exec VMID -- systemctl restart felhom-controller`: succeeds in a running guest that has
    /// a controller (an app-health payload), fails as PVE and systemd would otherwise.
    /// OOM kills injected per guest (``injectOOMKill(vmid:count:)``), as `memory.events` counts
    /// them; cleared when the guest stops (its cgroup goes away).
    var oomKills: [Int: Int] = [:]

    /// The kernel killed `count` processes of guest `vmid` for its memory cap.
    public func injectOOMKill(vmid: Int, count: Int = 1) { oomKills[vmid, default: 0] += count }

    /// `cat /sys/fs/cgroup/lxc/VMID/memory.events` on the host: the counters of a running guest's
    /// cgroup (cgroup v2's flat-keyed format, newer kernels' `oom_group_kill` included).
    public func execMemoryEvents(vmid: Int) -> (exitCode: Int32, stdout: String, stderr: String) {
        advance()
        guard let c = state.containers[vmid], c.running else {
            oomKills[vmid] = nil
            return (1, "", "cat: /sys/fs/cgroup/lxc/\(vmid)/memory.events: No such file or directory\n")
        }
        let kills = oomKills[vmid] ?? 0
        return (0, "low 0\nhigh 0\nmax \(kills * 24)\noom \(kills)\noom_kill \(kills)\noom_group_kill 0\n", "")
    }

    public func execRestartController(vmid: Int) -> (exitCode: Int32, stderr: String) {
        advance()
        guard let c = state.containers[vmid] else {
            return (2, "Configuration file 'nodes/\(state.nodes.first?.name ?? "pve1")/lxc/\(vmid).conf' does not exist\n")
        }
        guard c.running else { return (255, "container '\(vmid)' not running!\n") }
        guard c.appHealth != nil else { return (5, "Failed to restart felhom-controller.service: Unit felhom-controller.service not found.\n") }
        controllerRestarts[vmid, default: 0] += 1
        return (0, "")
    }

    /// Replaces the storage with the same id (or adds it): an encryption key removed, a PBS server
    /// made unreachable (`active = false`), as an operator or an outage would.
    public func setStorage(_ storage: SimStorage) {
        if let i = state.storages.firstIndex(where: { $0.id == storage.id }) {
            state.storages[i] = storage
        } else {
            state.storages.append(storage)
        }
        persist()
    }

    /// Writes opaque data onto a container volume (tests use it to follow data through backup/restore).
    public func writeVolumeData(volid: String, data: String) {
        if let i = state.volumes.firstIndex(where: { $0.volid == volid }) {
            state.volumes[i].data = data
            persist()
        }
    }

    var now: Date { clock.now() }
    var nowEpoch: Int64 { Int64(now.timeIntervalSince1970) }

    // MARK: - Entry point

    /// Answers one API call.
    public func handle(_ request: SimRequest) async -> SimResponse {
        advance()
        let faults = state.faults
        if faults.latencyMilliseconds > 0 {
            try? await Task.sleep(for: .milliseconds(faults.latencyMilliseconds))
            advance()
        }
        // Transport-level: formatter.
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, parts[1] == "api2" else {
            return .text("no such uri", status: 501, reason: "no such uri")
        }
        guard parts[2] == "json" else {
            return .text("no such uri", status: 501, reason: "no such uri")
        }
        if (request.method == "GET" || request.method == "DELETE") && !request.body.isEmpty {
            let msg = "Unexpected content for method '\(request.method)'"
            return .text(msg, status: 501, reason: msg)
        }
        // Authentication.
        let authid: String
        switch authenticate(request) {
        case .success(let id): authid = id
        case .failure(let reason):
            if state.settings.authFailureDelaySeconds > 0 {
                try? await Task.sleep(for: .milliseconds(Int(state.settings.authFailureDelaySeconds * 1000)))
            }
            return errorResponse(SimError(status: 401, message: reason))
        }
        if faults.serverErrorRate > 0, faultDraw() < faults.serverErrorRate {
            return .text("", status: 596, reason: "Connection timed out")
        }
        let subpath = "/" + parts.dropFirst(3).joined(separator: "/")
        do {
            let params = try decodeParams(request)
            let result = try route(method: request.method, path: subpath, params: params, authid: authid)
            if request.method != "GET" { persist() }
            var envelope: [String: JSONValue] = ["data": result.data]
            if let total = result.total { envelope["total"] = .int(Int64(total)) }
            return .json(.object(envelope))
        } catch let e as SimError {
            if request.method != "GET" { persist() }
            return errorResponse(e)
        } catch {
            return errorResponse(SimError.die("\(error)"))
        }
    }

    struct Result {
        var data: JSONValue
        var total: Int?
        init(_ data: JSONValue, total: Int? = nil) {
            self.data = data
            self.total = total
        }
    }

    /// PVE's error answer: status line = first line of the message; JSON body with `errors`, and
    /// (modern servers) `message` keeping its trailing newline.
    func errorResponse(_ e: SimError) -> SimResponse {
        let firstLine = e.message.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if firstLine.contains("\r") {
            return SimResponse(status: 400, reason: "Bad Request", contentType: "application/json;charset=UTF-8", body: [])
        }
        var body: [String: JSONValue] = ["data": .null]
        if !e.errors.isEmpty { body["errors"] = .object(e.errors.mapValues { .string($0) }) }
        if state.settings.errorBodyStyle != "legacy", e.status != 401 {
            body["message"] = .string(e.message.hasSuffix("\n") ? e.message : e.message + "\n")
        }
        return .json(.object(body), status: e.status, reason: firstLine)
    }

    // MARK: - Authentication

    enum AuthResult {
        case success(String)
        case failure(String)
    }

    /// `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET` (a space instead of the first `=` is
    /// accepted too). Every failure is `401 Authentication failed!`; no header at all is `401 No ticket`.
    func authenticate(_ request: SimRequest) -> AuthResult {
        guard let header = request.header("Authorization") else { return .failure("No ticket") }
        guard let r = header.range(of: "PVEAPIToken"), r.lowerBound == header.startIndex || header[header.index(before: r.lowerBound)] == " " else {
            return .failure(header.contains("PVEAuthCookie") ? "Authentication failed!" : "No ticket")
        }
        var value = header[r.upperBound...]
        guard let sep = value.first, sep == "=" || sep == " " else { return .failure("Authentication failed!") }
        value = value.dropFirst()
        if let semi = value.firstIndex(of: ";") { value = value[..<semi] }
        let decoded = String(value).removingPercentEncoding ?? String(value)
        guard let lastEq = decoded.lastIndex(of: "=") else { return .failure("Authentication failed!") }
        let tokenid = String(decoded[..<lastEq])
        let secret = String(decoded[decoded.index(after: lastEq)...])
        guard let token = state.tokens.first(where: { $0.tokenid == tokenid }) else {
            return .failure("Authentication failed!")
        }
        if token.expire > 0, token.expire < nowEpoch { return .failure("Authentication failed!") }
        let a = Array(SHA256.hash(data: Data(secret.utf8)))
        let b = Array(SHA256.hash(data: Data(token.secret.utf8)))
        guard a == b else { return .failure("Authentication failed!") }
        return .success(token.tokenid)
    }

    // MARK: - Parameters

    /// Query and body parameters as PVE merges them: JSON bodies keep their types, form bodies are
    /// strings, a repeated form key joins with NUL, the query overrides the body, `_dc` is dropped.
    func decodeParams(_ request: SimRequest) throws -> [String: JSONValue] {
        var params: [String: JSONValue] = [:]
        if !request.body.isEmpty {
            let ct = request.header("Content-Type") ?? ""
            if ct.lowercased().hasPrefix("application/json") {
                guard let doc = try? JSONValue.parse(Data(request.body)), let obj = doc.objectValue else {
                    throw SimError(status: 400, message: "malformed JSON body")
                }
                params = obj
            } else {
                params = Self.formDecode(String(decoding: request.body, as: UTF8.self))
            }
        }
        for (k, v) in Self.formDecode(request.query) { params[k] = v }
        params["_dc"] = nil
        return params
    }

    static func formDecode(_ text: String) -> [String: JSONValue] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func dec(_ s: Substring) -> String {
                (String(s).replacingOccurrences(of: "+", with: " ")).removingPercentEncoding ?? String(s)
            }
            let k = dec(kv[0])
            let v = kv.count > 1 ? dec(kv[1]) : ""
            out[k] = out[k].map { $0 + "\0" + v } ?? v
        }
        return out.mapValues { .string($0) }
    }

    // MARK: - Persistence

    /// Saves the state atomically (write to a temporary file, then rename).
    func persist() {
        pushSharedPBS()
        guard let stateFile else { return }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        guard let data = try? enc.encode(state) else { return }
        try? data.write(to: stateFile, options: .atomic)
    }

    // MARK: - Privileges

    func privs(_ authid: String, _ path: String) -> Set<String> {
        Permissions.privileges(authid: authid, path: path, state: state)
    }

    func has(_ authid: String, _ path: String, _ priv: String) -> Bool { privs(authid, path).contains(priv) }

    /// `check(["perm", path, [privs]])`: all listed privileges.
    func require(_ authid: String, _ path: String, _ needed: [String]) throws {
        let have = privs(authid, path)
        for p in needed where !have.contains(p) { throw SimError.perm(path, [p]) }
    }

    /// `check(["perm", path, [privs], "any", 1])`.
    func requireAny(_ authid: String, _ path: String, _ needed: [String]) throws {
        let have = privs(authid, path)
        guard needed.contains(where: have.contains) else { throw SimError.perm(path, needed) }
    }

    // MARK: - Helpers

    func node(_ name: String) throws -> SimNode {
        guard let n = state.nodes.first(where: { $0.name == name }) else {
            throw SimError(status: 595, message: "no such cluster node '\(name)'")
        }
        return n
    }

    func container(_ node: String, _ vmid: Int) throws -> SimContainer {
        guard let c = state.containers[vmid], c.node == node else {
            throw SimError.die("Configuration file 'nodes/\(node)/lxc/\(vmid).conf' does not exist")
        }
        return c
    }

    /// The config lock in effect (config `lock` or an injected one).
    func lock(of vmid: Int) -> String? {
        state.containers[vmid]?.config["lock"] ?? state.faults.forcedLocks[vmid]
    }

    func storage(_ id: String) throws -> SimStorage {
        guard let s = state.storages.first(where: { $0.id == id }) else {
            throw SimError.die("storage '\(id)' does not exist")
        }
        return s
    }
}
