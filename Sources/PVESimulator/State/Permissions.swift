import Proxmox

/// Proxmox VE's privilege model: built-in roles, ACLs on paths, and privilege-separated tokens.
///
/// Source: pve-access-control `AccessControl.pm` (`$privgroups`, `create_roles`) and
/// `RPCEnvironment.pm` (`permissions`): a privsep token gets the intersection of its own ACLs and
/// its user's; `root@pam` itself bypasses every check, its tokens do not.
public enum Permissions {
    static let vmAdmin = [
        "VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.HWType",
        "VM.Config.Options", "VM.Allocate", "VM.Clone", "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.Replicate",
        "VM.Snapshot", "VM.Snapshot.Rollback",
    ]
    static let vmUser = [
        "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.GuestAgent.FileRead",
        "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite", "VM.PowerMgmt",
    ]
    static let vmAudit = ["VM.Audit", "VM.GuestAgent.Audit"]
    static let sysRoot = ["Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"]
    static let sysAdmin = ["Sys.Console", "Sys.Syslog"]
    static let sysAudit = ["Sys.Audit"]
    static let dsAdmin = ["Datastore.Allocate", "Datastore.AllocateTemplate"]
    static let dsUser = ["Datastore.AllocateSpace"]
    static let dsAudit = ["Datastore.Audit"]
    static let others = [
        "SDN.Allocate", "SDN.Audit", "SDN.Use", "User.Modify", "Group.Allocate", "Realm.Allocate", "Realm.AllocateUser",
        "Pool.Allocate", "Pool.Audit", "Mapping.Audit", "Mapping.Use", "Mapping.Modify", "Permissions.Modify",
    ]

    /// Every privilege.
    public static let all: Set<String> = Set(
        vmAdmin + vmUser + vmAudit + sysRoot + sysAdmin + sysAudit + dsAdmin + dsUser + dsAudit + others)

    /// The role Felhom's agent token gets (``FelhomRoles``, what `felhom-agent bootstrap`
    /// creates): operator tier for guests and backups, read-only for the node, nothing on users,
    /// permissions, node power or storage definitions.
    public static var felhomAgentRole: [String] { FelhomRoles.agentRolePrivileges }

    /// The second role of Felhom's agent token, granted on `/storage` only and **not propagated**:
    /// `Datastore.Allocate` there lets the agent add, update and remove storage definitions
    /// (`POST /storage`, `PUT`/`DELETE /storage/{id}` check `/storage` itself) for the disks the
    /// operator assigns, while every check on `/storage/{id}` — `prune-backups`, reading a
    /// storage's full config — still fails: the box's token cannot prune its own backups.
    public static var felhomStorageRole: [String] { FelhomRoles.storageRolePrivileges }

    /// PVE's built-in roles (Felhom's roles are custom roles of the state: `pveum role add`).
    public static let builtinRoles: [String: Set<String>] = [
        "Administrator": all,
        "NoAccess": [],
        "PVEAuditor": Set(vmAudit + sysAudit + dsAudit + ["SDN.Audit", "Pool.Audit", "Mapping.Audit"]),
        "PVEVMAdmin": Set(vmAdmin + vmUser + vmAudit),
        "PVEVMUser": Set(vmUser + vmAudit),
        "PVEDatastoreAdmin": Set(dsAdmin + dsUser + dsAudit),
        "PVEDatastoreUser": Set(dsUser + dsAudit),
        "PVESysAdmin": Set(sysAdmin + sysAudit),
        "PVETemplateUser": ["VM.Clone", "VM.Audit"],
        "PVEAdmin": all.subtracting(sysRoot).subtracting(["Permissions.Modify", "Mapping.Modify"]),
    ]

    /// `/vms/100` → `["/", "/vms", "/vms/100"]`.
    static func ancestry(_ path: String) -> [String] {
        var out = ["/"]
        var cur = ""
        for part in path.split(separator: "/") {
            cur += "/" + part
            out.append(cur)
        }
        return out
    }

    /// The privileges `ugid` holds on `path` from ACL entries naming it directly: the deepest path
    /// with an entry wins (a non-propagating entry counts only on its own path); `NoAccess` wins at its level.
    static func aclPrivileges(ugid: String, path: String, acls: [SimACL], roles: [String: Set<String>]) -> Set<String> {
        var result: Set<String> = []
        let chain = ancestry(path)
        for (i, p) in chain.enumerated() {
            let entries = acls.filter { $0.ugid == ugid && $0.path == p && ($0.propagate || i == chain.count - 1) }
            guard !entries.isEmpty else { continue }
            if entries.contains(where: { $0.role == "NoAccess" }) {
                result = []
                continue
            }
            result = entries.reduce(into: Set<String>()) { $0.formUnion(roles[$1.role] ?? []) }
        }
        return result
    }

    /// Effective privileges of an authenticated id (user or token) on `path`.
    static func privileges(authid: String, path: String, state: SimState) -> Set<String> {
        let roles = builtinRoles.merging(state.customRoles.mapValues(Set.init)) { a, _ in a }
        func userPrivs(_ user: String) -> Set<String> {
            user == "root@pam" ? all : aclPrivileges(ugid: user, path: path, acls: state.acls, roles: roles)
        }
        guard authid.contains("!") else { return userPrivs(authid) }
        guard let token = state.tokens.first(where: { $0.tokenid == authid }) else { return [] }
        let user = userPrivs(token.userid)
        if !token.privsep { return user }
        return user.intersection(aclPrivileges(ugid: authid, path: path, acls: state.acls, roles: roles))
    }
}
