import FelhomAPI
import FelhomCore
import FelhomHubClient
import FelhomSigning
import Foundation
import Logging
import Proxmox

#if canImport(Glibc)
    import Glibc
#endif

/// `felhom-agent bootstrap`: a fresh Proxmox VE host to an enrolled, reporting box, once, as root
/// (docs/install.md). Idempotent: what exists and matches is left alone and said so; what exists
/// and does not match is refused before anything is made.
///
/// Steps, each whole or undone: 1. checks (root, Proxmox VE, the operator's signers file, what
/// exists); 2. enrollment with the hub (the token is one-time: the identity is written to
/// `state_dir/host.json` first); 3. the `FelhomAgent` and `FelhomStorage` roles, the
/// `felhom@pve` user, its privilege-separated token `felhom@pve!agent` and their ACLs (through
/// `pveum`, the fenced root backend), the node's certificate fingerprint, the agent config (0600) —
/// undone together if any fails, since the token's secret is shown only once; 4. the golden
/// template (`pct create` with `keyctl` as root, vzdump through the API with the new token); 5. the
/// escrow of the backup key; 6. the binaries and systemd units.
public struct Bootstrap: Sendable {
    public struct Options: Sendable {
        public var hubURL: String
        public var enrollmentToken: Secret
        public var node: String
        /// The hub certificate's SHA-256 fingerprint to pin (else the system's CAs).
        public var hubFingerprint: String?
        /// A prefix for every path this writes (tests; `/` on a box).
        public var root: String = "/"
        public var pveHost = "127.0.0.1"
        public var pvePort = 8006
        public var ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
        public var templateVMID = 9000
        /// Where the golden template's backup is kept (vzdump storage).
        public var templateStorage = "local"
        /// Where guests' disks go.
        public var guestStorage = "local-lvm"
        /// The PBS storage whose key the escrow holds; skipped (and said so) when the host has none.
        public var backupStorage = "pbs-felhom"
        /// `backup.key_file`: PVE keeps a PBS storage's key in `/etc/pve/priv/storage/<storage>.enc`.
        public var keyFile: String?
        /// The running executable, copied into the A/B root (nil: not installed).
        public var agentExecutable: String?
        public var installUnits = true

        public init(hubURL: String, enrollmentToken: Secret, node: String) {
            self.hubURL = hubURL
            self.enrollmentToken = enrollmentToken
            self.node = node
        }

        func path(_ p: String) -> String { root == "/" ? p : (root.hasSuffix("/") ? String(root.dropLast()) : root) + p }
        public var configPath: String { path("/etc/felhom/agent.json") }
        public var signersFile: String { path("/etc/felhom/allowed_signers") }
        public var stateDir: String { path("/var/lib/felhom-agent") }
        public var updateRoot: String { path("/opt/felhom/agent") }
        public var gatePath: String { path("/usr/local/lib/felhom/felhom-agent-gate") }
        /// cloudflared as Cloudflare's Debian package installs it (the tunnel unit runs it).
        public var cloudflaredPath: String { path("/usr/bin/cloudflared") }
        public var unitsDir: String { path("/etc/systemd/system") }
        var keyFilePath: String { keyFile ?? "/etc/pve/priv/storage/\(backupStorage).enc" }
    }

    /// A refusal or failure, with what is left behind when anything is.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    let options: Options
    let backend: PrivilegedBackend
    let runner: any CommandRunner
    let isRoot: @Sendable () -> Bool
    let say: @Sendable (String) -> Void
    let logger: Logger

    public init(
        options: Options, runner: any CommandRunner, isRoot: @escaping @Sendable () -> Bool = { geteuid() == 0 },
        logger: Logger = Logger(label: "felhom.agent.bootstrap"), say: @escaping @Sendable (String) -> Void
    ) {
        self.options = options
        self.runner = runner
        self.backend = PrivilegedBackend(runner: runner)
        self.isRoot = isRoot
        self.logger = logger
        self.say = say
    }

    // MARK: - The plan a fresh host gets (--dry-run)

    /// Every command and call a first run on a fresh Proxmox VE host makes, in order; touches nothing.
    public func dryRun() throws -> [String] {
        let o = options
        func run(_ exe: String, _ args: [String]) -> String { "run    " + Self.shellLine([exe] + args) }
        var lines = [
            "check  running as root", run("pveversion", []), "check  \(o.signersFile) lists the operator's signing keys",
            run("pveum", PrivilegedBackend.roleListArguments), run("pveum", PrivilegedBackend.userListArguments),
            run("pveum", PrivilegedBackend.aclListArguments),
            "hub    POST \(o.hubURL)/api/v1/enroll (the enrollment token, used once) → \(o.stateDir)/host.json (0600)",
            "write  \(o.stateDir)/\(TunnelTokenFile.name) (0600) when the hub hands the host's tunnel connector token "
                + "(in the enrollment answer, else GET \(o.hubURL)/api/v1/hosts/{id}/tunnel-token)",
        ]
        lines += try accessCommands().map { run("pveum", $0) }
        lines += [
            run("pvenode", PrivilegedBackend.certInfoArguments),
            "write  \(o.configPath) (0600: the token's secret, the node's certificate fingerprint \(o.pveHost):\(o.pvePort))",
            "api    GET /api2/json/nodes/\(o.node)/storage/\(o.templateStorage)/content?content=backup&vmid=\(o.templateVMID)",
            "api    GET /api2/json/nodes/\(o.node)/storage/\(o.ostemplate.split(separator: ":")[0])/content?content=vztmpl",
            "api    GET /api2/json/nodes/\(o.node)/storage (free space on \(o.guestStorage) and \(o.templateStorage))",
            run("pct", try PrivilegedBackend.goldenTemplateArguments(templateSpec)),
            "api    POST /api2/json/nodes/\(o.node)/vzdump vmid=\(o.templateVMID) storage=\(o.templateStorage) mode=stop compress=zstd",
            "api    GET /api2/json/nodes/\(o.node)/tasks/{upid}/status (until the backup ends)",
            "api    DELETE /api2/json/nodes/\(o.node)/lxc/\(o.templateVMID) (the container; its backup is the golden template)",
            "write  \(o.configPath) (provision.golden_template = the new backup)",
            "api    GET /api2/json/storage (is there a \(o.backupStorage) storage?)",
            "escrow felhom-agent escrow init: a PBS key made on this box, given to \(o.backupStorage) with "
                + Self.shellLine(["pvesm", "set", o.backupStorage, "--encryption-key", "<key>"])
                + ", the hub keeps it wrapped under a recovery code shown here once",
        ]
        if o.installUnits {
            if let exe = o.agentExecutable {
                lines.append("write  \(o.updateRoot)/a/felhom-agent (from \(exe)), \(o.updateRoot)/current → a")
                lines.append("write  \(o.gatePath) (from \((exe as NSString).deletingLastPathComponent)/felhom-agent-gate)")
            }
            lines.append("write  " + SystemdUnits.installed.map { "\(o.unitsDir)/\($0.name)" }.joined(separator: ", "))
            lines.append(run("systemctl", PrivilegedBackend.daemonReloadArguments))
            lines.append(run("systemctl", try PrivilegedBackend.enableUnitsArguments(SystemdUnits.installed.map(\.name))))
            lines.append(
                "tunnel with \(o.stateDir)/\(TunnelTokenFile.name) and \(o.cloudflaredPath): write \(o.unitsDir)/\(SystemdUnits.tunnel.name), "
                    + Self.shellLine(["systemctl"] + PrivilegedBackend.daemonReloadArguments) + ", "
                    + Self.shellLine(["systemctl"] + (try PrivilegedBackend.enableUnitsArguments([SystemdUnits.tunnel.name]))))
        }
        return lines
    }

    var templateSpec: PrivilegedBackend.GoldenTemplateSpec {
        .init(vmid: options.templateVMID, ostemplate: options.ostemplate, storage: options.guestStorage)
    }

    /// The ACL entries the user and its token get.
    var expectedACLs: [PVEACLEntry] {
        var out: [PVEACLEntry] = []
        for path in FelhomRoles.agentPaths(node: options.node) {
            out.append(.init(path: path, role: FelhomRoles.agentRole, type: "user", ugid: FelhomRoles.user, propagate: true))
        }
        out.append(.init(path: "/storage", role: FelhomRoles.storageRole, type: "user", ugid: FelhomRoles.user, propagate: false))
        for path in FelhomRoles.agentPaths(node: options.node) {
            out.append(.init(path: path, role: FelhomRoles.agentRole, type: "token", ugid: FelhomRoles.tokenID, propagate: true))
        }
        out.append(.init(path: "/storage", role: FelhomRoles.storageRole, type: "token", ugid: FelhomRoles.tokenID, propagate: false))
        return out
    }

    /// The `pveum` commands that make the access on a fresh host, in order.
    func accessCommands() throws -> [[String]] {
        var out = [
            try PrivilegedBackend.roleAddArguments(name: FelhomRoles.agentRole, privileges: FelhomRoles.agentRolePrivileges),
            try PrivilegedBackend.roleAddArguments(name: FelhomRoles.storageRole, privileges: FelhomRoles.storageRolePrivileges),
            try PrivilegedBackend.userAddArguments(user: FelhomRoles.user),
            PrivilegedBackend.tokenListArguments,
            PrivilegedBackend.tokenAddArguments,
        ]
        for a in expectedACLs {
            out.append(try PrivilegedBackend.aclModifyArguments(path: a.path, token: a.type == "token", role: a.role, propagate: a.propagate))
        }
        return out
    }

    // MARK: - The run

    /// What one run did.
    public struct Outcome: Sendable {
        public var hostID: String
        /// One line per step: `made …` or `unchanged: …`.
        public var steps: [String] = []
        public var changed: Bool { steps.contains { $0.hasPrefix("made") } }
        /// Steps that failed without undoing the others (escrow): say what to run later.
        public var failed: [String] { steps.filter { $0.hasPrefix("failed") } }
    }

    public func run() async throws(Failure) -> Outcome {
        let o = options
        // 1. Checks: nothing is made before all of them pass.
        guard isRoot() else { throw Failure(message: "bootstrap must run as root (it creates a PVE user and token and the golden template)") }
        do { say("Proxmox VE: " + (try await backend.pveVersion())) } catch {
            throw Failure(message: "this host is not Proxmox VE (\(Self.reason(error))): bootstrap sets up a Proxmox VE host")
        }
        guard let signersText = try? String(contentsOfFile: o.signersFile, encoding: .utf8) else {
            throw Failure(
                message: "\(o.signersFile) is missing: copy the operator's allowed_signers there first (docs/install.md), then run again")
        }
        do {
            guard !(try AllowedSigners.parse(signersText)).isEmpty else { throw Failure(message: "\(o.signersFile) lists no keys") }
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure(message: "\(o.signersFile): \(error)")
        }
        let existing = try existingConfig()
        let observed: Observed
        do { observed = try await observe() } catch let f as Failure { throw f } catch { throw Failure(message: Self.reason(error)) }
        if observed.tokenExists, existing?.pveTokenSecret == nil {
            throw Failure(
                message:
                    "the token \(FelhomRoles.tokenID) exists but its secret is not in \(o.configPath) (PVE shows it only once): remove it with `pveum user token remove \(FelhomRoles.user) \(FelhomRoles.tokenName)` and run again"
            )
        }
        var outcome = Outcome(hostID: "")
        let tunnelBefore = TunnelTokenFile.read(stateDir: o.stateDir)

        // 2. Enrollment (the token is used once; the identity is durable before anything else).
        if let id = Agent.storedIdentity(stateDir: o.stateDir) {
            outcome.hostID = id.hostID
            outcome.steps.append("unchanged: enrolled as host \(id.hostID) (\(o.stateDir)/host.json)")
        } else {
            let trust: TLSTrust
            do { trust = try o.hubFingerprint.map { .pinnedLeafSHA256(try CertificateFingerprint(parsing: $0)) } ?? .systemDefault } catch {
                throw Failure(message: "--hub-fingerprint: \(Self.reason(error))")
            }
            do {
                let id = try await Agent.enroll(url: o.hubURL, token: o.enrollmentToken, trust: trust, stateDir: o.stateDir, logger: logger)
                outcome.hostID = id.hostID
                outcome.steps.append("made: enrolled as host \(id.hostID)")
            } catch {
                throw Failure(message: "enrollment with \(o.hubURL) failed: \(Self.reason(error)); nothing was made on this host")
            }
        }
        say(outcome.steps.last ?? "")
        let tunnelLine = await tunnelToken(hostID: outcome.hostID, before: tunnelBefore)
        outcome.steps.append(tunnelLine)
        say(tunnelLine)

        // 3. Access, fingerprint, config: one unit (the token's secret exists only in memory until written).
        var made: [Made] = []
        let secret: Secret
        let fingerprint: String
        do {
            for (name, privs) in [
                (FelhomRoles.agentRole, FelhomRoles.agentRolePrivileges), (FelhomRoles.storageRole, FelhomRoles.storageRolePrivileges),
            ] where observed.roles[name] == nil {
                try await backend.addRole(name, privileges: privs)
                made.append(.role(name))
                outcome.steps.append("made: role \(name) (\(privs.joined(separator: ",")))")
            }
            if !observed.userExists {
                try await backend.addUser(FelhomRoles.user)
                made.append(.user)
                outcome.steps.append("made: user \(FelhomRoles.user)")
            }
            if observed.tokenExists, let s = existing?.pveTokenSecret {
                secret = s
            } else {
                _ = try await backend.tokens()
                secret = try await backend.addToken()
                made.append(.token)
                outcome.steps.append("made: privilege-separated token \(FelhomRoles.tokenID)")
            }
            for a in expectedACLs where !observed.acls.contains(a) {
                try await backend.setACL(path: a.path, token: a.type == "token", role: a.role, propagate: a.propagate)
                outcome.steps.append("made: ACL \(a.role) on \(a.path) for \(a.ugid)\(a.propagate ? "" : " (not propagated)")")
            }
            if made.isEmpty && observed.acls.count >= expectedACLs.count {
                outcome.steps.append("unchanged: roles, user \(FelhomRoles.user), token and ACLs")
            }
            fingerprint = try await backend.nodeCertificateFingerprint()
            if try writeConfig(secret: secret, fingerprint: fingerprint, goldenTemplate: existing?.goldenTemplate) {
                made.append(.config)
                outcome.steps.append("made: \(o.configPath) (0600)")
            } else {
                outcome.steps.append("unchanged: \(o.configPath)")
            }
        } catch {
            let left = await undo(made)
            throw Failure(message: "setting up the agent's access failed: \(Self.reason(error)); \(left)")
        }
        for line in outcome.steps.dropFirst(2) { say(line) }

        // 4. The golden template.
        let pve: PVEClient
        do { pve = PVEClient(connection: try AgentConfig.load(file: o.configPath, environment: [:]).pveConnection()) } catch {
            throw Failure(message: "\(o.configPath): \(Self.reason(error))")
        }
        let template = try await goldenTemplate(pve: pve, secret: secret, fingerprint: fingerprint, configured: existing?.goldenTemplate)
        outcome.steps.append(template)
        say(template)

        // 5. Escrow of the backup key (its recovery code is shown here, on the box).
        let escrow = await escrowInit(pve: pve)
        outcome.steps.append(escrow)
        say(escrow)

        // 6. Binaries and units.
        if o.installUnits {
            do {
                for line in try await installUnits(tunnelTokenChanged: tunnelLine.hasPrefix("made")) {
                    outcome.steps.append(line)
                    say(line)
                }
            } catch {
                throw Failure(
                    message:
                        "installing the systemd units failed: \(Self.reason(error)); everything before is in place (enrolled, access, config, template): fix it and run again"
                )
            }
        }
        return outcome
    }

    // MARK: - Steps

    struct Observed {
        var roles: [String: PVERole] = [:]
        var userExists = false
        var tokenExists = false
        var acls: [PVEACLEntry] = []
    }

    struct Existing {
        var pveTokenSecret: Secret?
        var goldenTemplate: String?
    }

    enum Made {
        case role(String)
        case user, token, config
    }

    /// Reads what exists; refuses what does not match (before anything is made).
    func observe() async throws -> Observed {
        var o = Observed()
        let roles = try await backend.roles()
        for (name, privs) in [
            (FelhomRoles.agentRole, FelhomRoles.agentRolePrivileges), (FelhomRoles.storageRole, FelhomRoles.storageRolePrivileges),
        ] {
            guard let r = roles.first(where: { $0.id == name }) else { continue }
            let want = Set(privs)
            let have = Set(r.privileges)
            guard want == have else {
                let extra = have.subtracting(want).sorted()
                let missing = want.subtracting(have).sorted()
                throw Failure(
                    message:
                        "the role \(name) exists with other privileges (extra: \(extra.isEmpty ? "none" : extra.joined(separator: ",")); missing: \(missing.isEmpty ? "none" : missing.joined(separator: ","))): make it match with `pveum role modify \(name) --privs \(privs.joined(separator: ","))` or delete it, then run again; nothing was changed"
                )
            }
            o.roles[name] = r
        }
        o.userExists = try await backend.users().contains(FelhomRoles.user)
        let acls = try await backend.acls()
        let mine = acls.filter { $0.ugid == FelhomRoles.user || $0.ugid.hasPrefix(FelhomRoles.user + "!") }
        let expected = expectedACLs
        let foreign = mine.filter { !expected.contains($0) }
        guard foreign.isEmpty else {
            let list = foreign.map { "\($0.role) on \($0.path) for \($0.ugid)" }.joined(separator: ", ")
            throw Failure(
                message:
                    "\(FelhomRoles.user) exists with other privileges (\(list)): the agent's user must hold exactly the Felhom roles; remove those ACLs (pveum acl delete …) or the user, then run again; nothing was changed"
            )
        }
        o.acls = mine
        if o.userExists { o.tokenExists = try await backend.tokens().contains(FelhomRoles.tokenName) }
        return o
    }

    func existingConfig() throws(Failure) -> Existing? {
        guard FileManager.default.fileExists(atPath: options.configPath) else { return nil }
        guard let data = FileManager.default.contents(atPath: options.configPath), let doc = try? JSONValue.parse(data) else {
            throw Failure(message: "\(options.configPath) exists but is not JSON: move it away and run again")
        }
        let secret = doc["pve"]?["token_id"]?.stringValue == FelhomRoles.tokenID ? doc["pve"]?["token_secret"]?.stringValue.map(Secret.init) : nil
        return Existing(pveTokenSecret: secret, goldenTemplate: doc["provision"]?["golden_template"]?.stringValue)
    }

    /// Writes the agent config (0600, atomically); false when it already says exactly this.
    func writeConfig(secret: Secret, fingerprint: String, goldenTemplate: String?) throws -> Bool {
        let o = options
        var hub: [String: JSONValue] = ["url": .string(o.hubURL)]
        if let fp = o.hubFingerprint { hub["fingerprint"] = .string(fp) }
        var doc: [String: JSONValue] = [
            "pve": .object([
                "host": .string(o.pveHost), "port": .int(Int64(o.pvePort)), "node": .string(o.node), "token_id": .string(FelhomRoles.tokenID),
                "token_secret": .string(secret.reveal()), "fingerprint": .string(fingerprint),
            ]),
            "hub": .object(hub),
            "state_dir": .string(o.stateDir),
            "signers_file": .string(o.signersFile),
            "backup": .object(["key_file": .string(o.keyFilePath)]),
            "escrow": .object(["storage": .string(o.backupStorage)]),
        ]
        // `provision` once the golden template exists (the agent's loader requires it in that section).
        if let goldenTemplate { doc["provision"] = .object(["golden_template": .string(goldenTemplate), "storage": .string(o.guestStorage)]) }
        // The tunnel is supervised once the box holds its connector token.
        if TunnelTokenFile.read(stateDir: o.stateDir) != nil { doc["tunnel"] = .object(["enabled": true]) }
        let bytes = Array(JSONValue.object(doc).serialized()) + [0x0A]
        if let old = FileManager.default.contents(atPath: o.configPath), [UInt8](old) == bytes { return false }
        try FileManager.default.createDirectory(
            atPath: (o.configPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        do throws(AppendLogError) { try DurableFile.write(bytes, to: o.configPath, mode: 0o600) } catch { throw Failure(message: error.message) }
        return true
    }

    /// Undoes what this run made in step 3, newest first; says what remains.
    func undo(_ made: [Made]) async -> String {
        var failed: [String] = []
        for m in made.reversed() {
            do {
                switch m {
                case .config: if unlink(options.configPath) != 0 { throw Failure(message: "cannot remove \(options.configPath)") }
                case .token: try await backend.removeToken()
                case .user: try await backend.deleteUser(FelhomRoles.user)
                case .role(let name): try await backend.deleteRole(name)
                }
            } catch {
                failed.append("\(m) (\(Self.reason(error)))")
            }
        }
        let enrolled = "the enrollment stays (\(options.stateDir)/host.json): running bootstrap again uses it"
        return failed.isEmpty
            ? "what this run made was removed; \(enrolled)" : "could not remove: \(failed.joined(separator: ", ")); \(enrolled)"
    }

    /// The golden template: kept when configured or found, else made (and the container removed).
    func goldenTemplate(pve: PVEClient, secret: Secret, fingerprint: String, configured: String?) async throws(Failure) -> String {
        let o = options
        do {
            let backups = try await pve.storageContent(node: o.node, storage: o.templateStorage, content: "backup", vmid: o.templateVMID)
            if let configured,
                backups.contains(where: { $0.volid == configured }) || configured.split(separator: ":").first != Substring(o.templateStorage)
            {
                return "unchanged: golden template \(configured)"
            }
            if let newest = backups.max(by: { ($0.ctime ?? 0) < ($1.ctime ?? 0) }) {
                _ = try writeConfig(secret: secret, fingerprint: fingerprint, goldenTemplate: newest.volid)
                return "unchanged: golden template \(newest.volid) (found on \(o.templateStorage))"
            }
            let osStorage = String(o.ostemplate.split(separator: ":")[0])
            let templates = try await pve.storageContent(node: o.node, storage: osStorage, content: "vztmpl", vmid: nil)
            guard templates.contains(where: { $0.volid == o.ostemplate }) else {
                let file = o.ostemplate.split(separator: "/").last.map(String.init) ?? o.ostemplate
                throw Failure(
                    message:
                        "the Debian template \(o.ostemplate) is not on \(osStorage): `pveam update && pveam download \(osStorage) \(file)`, then run again"
                )
            }
            let storages = try await pve.nodeStorages(node: o.node)
            let needs: [(String, Int64)] = [(o.guestStorage, Int64(templateSpec.diskGiB) << 30), (o.templateStorage, 1 << 30)]
            for (id, bytes) in needs {
                guard let s = storages.first(where: { $0.storage == id }) else { throw Failure(message: "storage \(id) does not exist on \(o.node)") }
                guard s.avail >= bytes else {
                    throw Failure(
                        message:
                            "no space for the golden template on \(id): \(s.avail >> 20) MiB free, \(bytes >> 20) MiB needed; free some, then run again (nothing was made)"
                    )
                }
            }
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure(message: "golden template: \(Self.reason(error))")
        }
        // Made: the container (root: keyctl), then its backup through the API, then the container goes.
        do { try await backend.createGoldenTemplate(templateSpec) } catch {
            throw Failure(message: "pct create \(o.templateVMID) failed: \(Self.reason(error)); no golden template was made")
        }
        do {
            var dump = VzdumpOptions(vmids: [o.templateVMID], storage: o.templateStorage)
            dump.mode = "stop"
            guard let upid = try await pve.vzdump(node: o.node, dump).upid else {
                throw Failure(message: "vzdump of \(o.templateVMID) started no task")
            }
            let status = try await pve.waitTask(upid, timeout: .seconds(1800))
            guard status.succeeded else { throw Failure(message: "vzdump of \(o.templateVMID): \(status.exitStatus ?? "failed")") }
            let backups = try await pve.storageContent(node: o.node, storage: o.templateStorage, content: "backup", vmid: o.templateVMID)
            guard let newest = backups.max(by: { ($0.ctime ?? 0) < ($1.ctime ?? 0) }) else {
                throw Failure(message: "vzdump of \(o.templateVMID) left no backup on \(o.templateStorage)")
            }
            _ = try writeConfig(secret: secret, fingerprint: fingerprint, goldenTemplate: newest.volid)
            _ = try await pve.waitTask(try await pve.destroyContainer(node: o.node, vmid: o.templateVMID, purge: true, force: true))
            return "made: golden template \(newest.volid) (container \(o.templateVMID) with nesting=1,keyctl=1, backed up, removed)"
        } catch {
            let removed =
                (try? await pve.waitTask(try await pve.destroyContainer(node: o.node, vmid: o.templateVMID, purge: true, force: true))) != nil
            throw Failure(
                message:
                    "golden template: \(Self.reason(error)); \(removed ? "the container \(o.templateVMID) was removed" : "the container \(o.templateVMID) remains: `pct destroy \(o.templateVMID)`"); run again"
            )
        }
    }

    /// `escrow init` when the host has the PBS storage; otherwise says how to do it later.
    func escrowInit(pve: PVEClient) async -> String {
        let o = options
        do {
            guard try await pve.storages().contains(where: { $0.storage == o.backupStorage }) else {
                return
                    "later: escrow — there is no \(o.backupStorage) storage yet; add it (docs/install.md), then run `felhom-agent escrow init --config \(o.configPath)`"
            }
            let cfg = try AgentConfig.load(file: o.configPath, environment: [:])
            let keeper = try await Agent.escrowKeeper(config: cfg, logger: logger, commandRunner: runner)
            let outcome = try await keeper.initialize(rotate: false)
            if let code = outcome.code {
                say(
                    """

                    The hub holds the backup key wrapped under this recovery code. Write it down now:
                    it is shown only this once and never leaves this box.

                        \(code.printed)

                    Without it, the backups of a lost box cannot be decrypted.

                    """)
                return "made: escrow of the PBS key \(outcome.fingerprint) (recovery code shown above)"
            }
            return "unchanged: escrow (the hub holds the wrapped key of \(outcome.fingerprint))"
        } catch {
            return "failed: escrow — \(Self.reason(error)); run `felhom-agent escrow init --config \(o.configPath)` once it is fixed"
        }
    }

    /// The agent into the A/B root, the gate beside it, the units, enabled and started.
    func installUnits(tunnelTokenChanged: Bool = false) async throws -> [String] {
        let o = options
        var lines: [String] = []
        if let exe = o.agentExecutable {
            let slot = o.updateRoot + "/a"
            let current = o.updateRoot + "/current"
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: current)) == nil {
                try FileManager.default.createDirectory(atPath: slot, withIntermediateDirectories: true)
                try Self.copyExecutable(exe, to: slot + "/felhom-agent")
                let tmp = o.updateRoot + "/.current.tmp"
                unlink(tmp)
                guard symlink("a", tmp) == 0, rename(tmp, current) == 0 else { throw Failure(message: "cannot link \(current) → a") }
                lines.append("made: \(slot)/felhom-agent, \(current) → a")
            } else {
                lines.append("unchanged: \(current) (an A/B root exists; updates replace the agent)")
            }
            let gate = (exe as NSString).deletingLastPathComponent + "/felhom-agent-gate"
            if FileManager.default.fileExists(atPath: gate) {
                try FileManager.default.createDirectory(atPath: (o.gatePath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                if FileManager.default.contents(atPath: gate) != FileManager.default.contents(atPath: o.gatePath) {
                    try Self.copyExecutable(gate, to: o.gatePath)
                    lines.append("made: \(o.gatePath)")
                }
            }
        }
        try FileManager.default.createDirectory(atPath: o.unitsDir, withIntermediateDirectories: true)
        var wrote = false
        for unit in SystemdUnits.installed {
            let path = o.unitsDir + "/" + unit.name
            if FileManager.default.contents(atPath: path) == Data(unit.text.utf8) { continue }
            do throws(AppendLogError) { try DurableFile.write(Array(unit.text.utf8), to: path, mode: 0o644) } catch {
                throw Failure(message: error.message)
            }
            wrote = true
        }
        if wrote {
            try await runChecked("systemctl", PrivilegedBackend.daemonReloadArguments)
            lines.append("made: " + SystemdUnits.installed.map(\.name).joined(separator: ", ") + " in \(o.unitsDir)")
        }
        try await runChecked("systemctl", try PrivilegedBackend.enableUnitsArguments(SystemdUnits.installed.map(\.name)))
        lines.append(wrote ? "made: units enabled and started" : "unchanged: units (enabled and started)")
        if let line = try await installTunnelUnit(tokenChanged: tunnelTokenChanged) { lines.append(line) }
        return lines
    }

    /// `felhom-cloudflared.service`, when the box holds its connector token; nil without one (the
    /// tunnel step said so). Without cloudflared a `failed:` line says how to get it; the rest stands.
    func installTunnelUnit(tokenChanged: Bool) async throws -> String? {
        let o = options
        guard TunnelTokenFile.read(stateDir: o.stateDir) != nil else { return nil }
        guard FileManager.default.isExecutableFile(atPath: o.cloudflaredPath) else {
            return "failed: tunnel — cloudflared is not installed (\(o.cloudflaredPath)): install it from Cloudflare's apt repository "
                + "(docs/install.md, \"The tunnel\"), then run bootstrap again"
        }
        let unit = SystemdUnits.tunnel
        let path = o.unitsDir + "/" + unit.name
        let wrote = FileManager.default.contents(atPath: path) != Data(unit.text.utf8)
        if wrote {
            do throws(AppendLogError) { try DurableFile.write(Array(unit.text.utf8), to: path, mode: 0o644) } catch {
                throw Failure(message: error.message)
            }
            try await runChecked("systemctl", PrivilegedBackend.daemonReloadArguments)
        }
        try await runChecked("systemctl", try PrivilegedBackend.enableUnitsArguments([unit.name]))
        if wrote { return "made: \(path), enabled and started (the agent supervises it)" }
        guard tokenChanged else { return "unchanged: \(unit.name) (enabled and started)" }
        // Running on the old token: `enable --now` leaves a running service alone.
        try await backend.restartUnit(unit.name)
        return "made: \(unit.name) restarted with the new connector token"
    }

    /// The host's tunnel connector token in `state_dir/tunnel.env`: written by the enrollment when
    /// the hub handed it, else asked of the hub with the host's key (the operator may set it after
    /// the box enrolled). Never fails the run: the agent asks again every 15 minutes.
    func tunnelToken(hostID: String, before: String?) async -> String {
        let o = options
        let file = "\(o.stateDir)/\(TunnelTokenFile.name)"
        let had = TunnelTokenFile.read(stateDir: o.stateDir)
        let fetched: String?
        do {
            guard let id = Agent.storedIdentity(stateDir: o.stateDir) else { return "failed: tunnel — no identity in \(o.stateDir)/host.json" }
            let trust: TLSTrust = try o.hubFingerprint.map { .pinnedLeafSHA256(try CertificateFingerprint(parsing: $0)) } ?? .systemDefault
            let hub = try HubClient(url: o.hubURL, key: Secret(id.key), trust: trust)
            fetched = try await hub.send("GET", "/api/v1/hosts/\(hostID)/tunnel-token", as: TunnelTokenView.self).connectorToken
        } catch {
            if had != nil { return "unchanged: \(file) (the hub could not be asked for a newer token: \(Self.reason(error)))" }
            return "failed: tunnel — cannot read the connector token from the hub: \(Self.reason(error)); run bootstrap again later"
        }
        guard let fetched else {
            if had != nil { return "unchanged: \(file) (the hub holds no token now; the box keeps its own)" }
            return "unchanged: no tunnel — the hub holds no connector token for \(hostID) "
                + "(set one with PUT /api/v1/hosts/\(hostID)/tunnel-token, then run bootstrap again)"
        }
        do {
            let wrote = try TunnelTokenFile.store(fetched, stateDir: o.stateDir)
            return wrote || before != fetched ? "made: \(file) (0600, the tunnel connector token)" : "unchanged: \(file)"
        } catch {
            return "failed: tunnel — \(error.message)"
        }
    }

    func runChecked(_ exe: String, _ args: [String]) async throws {
        let r = try await runner.run(exe, args)
        guard r.exitCode == 0 else { throw Failure(message: "\(Self.shellLine([exe] + args)) failed (exit \(r.exitCode)): \(r.stderr.prefix(300))") }
    }

    static func copyExecutable(_ from: String, to: String) throws {
        let tmp = to + ".tmp"
        unlink(tmp)
        try FileManager.default.copyItem(atPath: from, toPath: tmp)
        guard chmod(tmp, 0o755) == 0, rename(tmp, to) == 0 else { throw Failure(message: "cannot install \(to)") }
    }

    /// A command line as a shell would need it typed (single quotes where needed; `!` too, for
    /// bash's history expansion).
    public static func shellLine(_ argv: [String]) -> String {
        argv.map { a in
            a.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:,@+%".contains($0)) }) && !a.isEmpty
                ? a : "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    static func reason(_ error: any Error) -> String {
        if let e = error as? Failure { return e.message }
        if let e = error as? PrivilegedError { return e.message }
        return "\(error)"
    }
}
