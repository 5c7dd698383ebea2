import FelhomCore
import Foundation

/// The roles `felhom-agent bootstrap` gives the agent's API token, with why each privilege is
/// needed (docs/install.md prints this table). Derived from the calls the agent makes and PVE's
/// permission checks (`shared/reference/pve/perms-table.md`, pve-container's per-key checks).
public enum FelhomRoles {
    /// The operator-tier role for guests and backups, granted on ``agentPaths``.
    public static let agentRole = "FelhomAgent"
    /// `Datastore.Allocate` on `/storage` only, **not propagated** (storage definitions for the
    /// disks the operator assigns; every check on `/storage/{id}` — pruning, full config — fails).
    public static let storageRole = "FelhomStorage"
    /// The PVE user the token belongs to.
    public static let user = "felhom@pve"
    /// The token's name: the agent authenticates as `felhom@pve!agent`.
    public static let tokenName = "agent"
    public static var tokenID: String { user + "!" + tokenName }

    /// Each privilege of ``agentRole`` and the agent's calls that need it.
    public static let agentPrivileges: [(privilege: String, why: String)] = [
        ("VM.Audit", "read guests: GET …/lxc, …/status/current, …/config, …/pending, …/snapshot"),
        (
            "VM.Allocate",
            "create guests (restore from the golden template), destroy on a signed guest.destroy or a scratch restore-test guest, features nesting"
        ),
        ("VM.Config.CPU", "set cores, cpuunits, cpulimit"),
        ("VM.Config.Memory", "set memory and swap"),
        ("VM.Config.Disk", "resize rootfs, add mount points (mpN) for assigned disks"),
        ("VM.Config.Network", "set net0 (the guest's address, a public IPv4)"),
        ("VM.Config.Options", "set description, onboot, tags"),
        ("VM.PowerMgmt", "start, stop, shutdown guests"),
        ("VM.Snapshot", "snapshots before updates and restores; delete them"),
        ("VM.Snapshot.Rollback", "roll a guest back on a signed guest.rollback"),
        ("VM.Backup", "vzdump, restore a guest from its backup, restore tests"),
        ("Datastore.Audit", "read storages, their status and content (backups, templates)"),
        ("Datastore.AllocateSpace", "volumes for new guests and mount points, backups into a storage"),
        ("Sys.Audit", "node status (the host report), tasks"),
        ("SDN.Use", "attach guests to the bridge vmbr0 (PVE 8 checks SDN.Use on /sdn/zones/localnetwork)"),
    ]

    public static var agentRolePrivileges: [String] { agentPrivileges.map(\.privilege) }
    public static let storageRolePrivileges = ["Datastore.Allocate"]

    /// Where ``agentRole`` is granted (to the user and to its privilege-separated token, which
    /// gets the intersection of both): guests, storages, this node, the local SDN zone.
    public static func agentPaths(node: String) -> [String] { ["/vms", "/storage", "/nodes/\(node)", "/sdn/zones/localnetwork"] }
}

/// A role as `pveum role list --output-format json` shows it.
public struct PVERole: Sendable, Equatable {
    public var id: String
    public var privileges: [String]
    public var special: Bool
}

/// An ACL entry as `pveum acl list --output-format json` shows it.
public struct PVEACLEntry: Sendable, Equatable {
    public var path: String
    public var role: String
    /// `user`, `token` or `group`.
    public var type: String
    public var ugid: String
    public var propagate: Bool
    public init(path: String, role: String, type: String, ugid: String, propagate: Bool) {
        self.path = path
        self.role = role
        self.type = type
        self.ugid = ugid
        self.propagate = propagate
    }
}

extension PrivilegedBackend {
    // MARK: 13. The agent's role, user and token (`pveum`, bootstrap only)

    static func checkRole(_ name: String) throws {
        guard name == FelhomRoles.agentRole || name == FelhomRoles.storageRole else {
            throw invalid("role '\(name)' is not one of Felhom's roles (\(FelhomRoles.agentRole), \(FelhomRoles.storageRole))")
        }
    }

    static func checkUser(_ user: String) throws {
        guard user == FelhomRoles.user else { throw invalid("user '\(user)' is not \(FelhomRoles.user)") }
    }

    /// `pveum role add NAME --privs P1,P2,…` — only Felhom's two roles, privileges `Word.Word…`.
    public static func roleAddArguments(name: String, privileges: [String]) throws -> [String] {
        try checkRole(name)
        guard !privileges.isEmpty, privileges.allSatisfy({ Pattern.whole($0, #"[A-Z][A-Za-z]+(\.[A-Z][A-Za-z]+)+"#) }) else {
            throw invalid("privileges must be PVE privilege names like VM.Audit")
        }
        return ["role", "add", name, "--privs", privileges.joined(separator: ",")]
    }

    public static func roleDeleteArguments(name: String) throws -> [String] {
        try checkRole(name)
        return ["role", "delete", name]
    }

    public static func userAddArguments(user: String) throws -> [String] {
        try checkUser(user)
        return ["user", "add", user, "--comment", "felhom-agent (felhom-agent bootstrap)"]
    }

    public static func userDeleteArguments(user: String) throws -> [String] {
        try checkUser(user)
        return ["user", "delete", user]
    }

    /// `pveum acl modify PATH --users|--tokens ID --roles ROLE --propagate 0|1`.
    public static func aclModifyArguments(path: String, token: Bool, role: String, propagate: Bool) throws -> [String] {
        try checkRole(role)
        guard Pattern.whole(path, #"/[A-Za-z0-9/_.\-]*"#), !path.contains("..") else { throw invalid("ACL path '\(path)' is not a PVE path") }
        return [
            "acl", "modify", path, token ? "--tokens" : "--users", token ? FelhomRoles.tokenID : FelhomRoles.user, "--roles", role,
            "--propagate", propagate ? "1" : "0",
        ]
    }

    /// `pveum user token add felhom@pve agent --privsep 1 …` (privilege-separated, never expires).
    public static var tokenAddArguments: [String] {
        ["user", "token", "add", FelhomRoles.user, FelhomRoles.tokenName, "--privsep", "1", "--comment", "felhom-agent", "--output-format", "json"]
    }
    public static var tokenRemoveArguments: [String] { ["user", "token", "remove", FelhomRoles.user, FelhomRoles.tokenName] }
    public static var tokenListArguments: [String] { ["user", "token", "list", FelhomRoles.user, "--output-format", "json"] }
    public static let roleListArguments = ["role", "list", "--output-format", "json"]
    public static let userListArguments = ["user", "list", "--output-format", "json"]
    public static let aclListArguments = ["acl", "list", "--output-format", "json"]
    public static let certInfoArguments = ["cert", "info", "--output-format", "json"]

    public func roles() async throws -> [PVERole] {
        let r = try await runner.run("pveum", Self.roleListArguments)
        try check(r, what: "pveum role list")
        return try Self.jsonList(r.stdout, what: "pveum role list").map { item in
            guard let id = item["roleid"]?.stringValue else {
                throw PrivilegedError(code: .badOutput, message: "pveum role list: an entry without roleid")
            }
            let privs = (item["privs"]?.stringValue ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            return PVERole(id: id, privileges: privs.filter { !$0.isEmpty }.sorted(), special: item["special"]?.lenientBool ?? false)
        }
    }

    public func addRole(_ name: String, privileges: [String]) async throws {
        try check(try await runner.run("pveum", try Self.roleAddArguments(name: name, privileges: privileges)), what: "pveum role add \(name)")
    }

    public func deleteRole(_ name: String) async throws {
        try check(try await runner.run("pveum", try Self.roleDeleteArguments(name: name)), what: "pveum role delete \(name)")
    }

    public func users() async throws -> [String] {
        let r = try await runner.run("pveum", Self.userListArguments)
        try check(r, what: "pveum user list")
        return try Self.jsonList(r.stdout, what: "pveum user list").compactMap { $0["userid"]?.stringValue }
    }

    public func addUser(_ user: String) async throws {
        try check(try await runner.run("pveum", try Self.userAddArguments(user: user)), what: "pveum user add \(user)")
    }

    public func deleteUser(_ user: String) async throws {
        try check(try await runner.run("pveum", try Self.userDeleteArguments(user: user)), what: "pveum user delete \(user)")
    }

    public func acls() async throws -> [PVEACLEntry] {
        let r = try await runner.run("pveum", Self.aclListArguments)
        try check(r, what: "pveum acl list")
        return try Self.jsonList(r.stdout, what: "pveum acl list").map { item in
            guard let path = item["path"]?.stringValue, let role = item["roleid"]?.stringValue, let ugid = item["ugid"]?.stringValue else {
                throw PrivilegedError(code: .badOutput, message: "pveum acl list: an entry without path, roleid or ugid")
            }
            return PVEACLEntry(
                path: path, role: role, type: item["type"]?.stringValue ?? "user", ugid: ugid, propagate: item["propagate"]?.lenientBool ?? true)
        }
    }

    public func setACL(path: String, token: Bool, role: String, propagate: Bool) async throws {
        let args = try Self.aclModifyArguments(path: path, token: token, role: role, propagate: propagate)
        try check(try await runner.run("pveum", args), what: "pveum acl modify \(path)")
    }

    /// The token names of felhom@pve.
    public func tokens() async throws -> [String] {
        let r = try await runner.run("pveum", Self.tokenListArguments)
        try check(r, what: "pveum user token list")
        return try Self.jsonList(r.stdout, what: "pveum user token list").compactMap { $0["tokenid"]?.stringValue }
    }

    /// Creates `felhom@pve!agent` and returns its secret (PVE shows it only this once).
    public func addToken() async throws -> Secret {
        let r = try await runner.run("pveum", Self.tokenAddArguments)
        try check(r, what: "pveum user token add \(FelhomRoles.user) \(FelhomRoles.tokenName)")
        guard let doc = try? JSONValue.parse(Data(r.stdout.utf8)), let value = doc["value"]?.stringValue,
            Pattern.whole(value, #"[A-Za-z0-9\-]{8,128}"#)
        else { throw PrivilegedError(code: .badOutput, message: "pveum user token add did not print the token's value as JSON") }
        return Secret(value)
    }

    public func removeToken() async throws {
        try check(try await runner.run("pveum", Self.tokenRemoveArguments), what: "pveum user token remove")
    }

    // MARK: 14. The node's certificate and version (bootstrap only)

    /// The SHA-256 fingerprint of the certificate pveproxy serves: `pveproxy-ssl.pem` when there
    /// is one (a custom or ACME certificate), else `pve-ssl.pem` (`pvenode cert info`).
    public func nodeCertificateFingerprint() async throws -> String {
        let r = try await runner.run("pvenode", Self.certInfoArguments)
        try check(r, what: "pvenode cert info")
        let certs = try Self.jsonList(r.stdout, what: "pvenode cert info")
        let pick = certs.first { $0["filename"]?.stringValue == "pveproxy-ssl.pem" } ?? certs.first { $0["filename"]?.stringValue == "pve-ssl.pem" }
        guard let fp = pick?["fingerprint"]?.stringValue, Pattern.whole(fp, #"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}"#) else {
            throw PrivilegedError(code: .badOutput, message: "pvenode cert info shows no pveproxy-ssl.pem or pve-ssl.pem with a SHA-256 fingerprint")
        }
        return fp.uppercased()
    }

    /// `pveversion`: `pve-manager/8.2.4/…`; a host without it is not Proxmox VE.
    public func pveVersion() async throws -> String {
        let r: CommandResult
        do { r = try await runner.run("pveversion", []) } catch {
            throw PrivilegedError(code: .commandFailed, message: "pveversion cannot be run: this is not a Proxmox VE host")
        }
        try check(r, what: "pveversion")
        let line = Self.firstLine(r.stdout)
        guard line.hasPrefix("pve-manager/") else { throw PrivilegedError(code: .badOutput, message: "pveversion did not print pve-manager/…") }
        return String(line.prefix(120))
    }

    // MARK: 15. Felhom's own systemd units (bootstrap only)

    public static let daemonReloadArguments = ["daemon-reload"]

    /// `systemctl enable --now felhom-….service …` — only Felhom's units.
    public static func enableUnitsArguments(_ units: [String]) throws -> [String] {
        guard !units.isEmpty, units.allSatisfy({ Pattern.whole($0, #"felhom-[a-z\-]+\.(service|timer|path)"#) }) else {
            throw invalid("only felhom-*.service units can be enabled")
        }
        return ["enable", "--now"] + units
    }

    /// `systemctl restart felhom-….service` — only Felhom's units (the tunnel's supervision).
    public static func restartUnitArguments(_ unit: String) throws -> [String] {
        guard Pattern.whole(unit, #"felhom-[a-z\-]+\.service"#) else { throw invalid("only felhom-*.service units can be restarted") }
        return ["restart", unit]
    }

    public func restartUnit(_ unit: String) async throws {
        try check(try await runner.run("systemctl", try Self.restartUnitArguments(unit)), what: "systemctl restart \(unit)")
    }

    static func jsonList(_ text: String, what: String) throws -> [JSONValue] {
        guard text.utf8.count <= 4 << 20, let doc = try? JSONValue.parse(Data(text.utf8)), let list = doc.arrayValue else {
            throw PrivilegedError(code: .badOutput, message: "\(what) did not print a JSON list")
        }
        return list
    }
}
