import FelhomCore
import Foundation

/// The root commands of a box's set-up (`felhom-agent bootstrap`) as a simulated host answers
/// them: `pveum` on the simulator's users, tokens, roles and ACLs (the same state its API checks),
/// `pvenode cert info` with the certificate the simulator serves, `pveversion`, and `pct create`
/// as root@pam (which may set `keyctl`), waiting for the task as `pct` does.
extension PVESimEngine {
    /// What `pveversion` prints on the simulated host.
    public static let pveVersionLine = "pve-manager/8.2.4/faa83925c9641325 (running kernel: 6.8.12-1-pve)"

    /// `pveum ARGS`: exit code, stdout, stderr as PVE 8's pveum gives them.
    public func execPveum(_ args: [String]) -> (exitCode: Int32, stdout: String, stderr: String) {
        advance()
        func json(_ v: JSONValue) -> (Int32, String, String) { (0, v.serializedString() + "\n", "") }
        func fail(_ message: String) -> (Int32, String, String) { (255, "", message + "\n") }
        func option(_ name: String) -> String? {
            guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
            return args[i + 1]
        }
        let roles = Permissions.builtinRoles.mapValues { Array($0).sorted() }.merging(state.customRoles) { a, _ in a }
        switch Array(args.prefix(2)) {
        case ["role", "list"]:
            return json(
                .array(
                    roles.keys.sorted().map { id in
                        .object([
                            "roleid": .string(id), "privs": .string((roles[id] ?? []).sorted().joined(separator: ",")),
                            "special": .int(Permissions.builtinRoles[id] != nil ? 1 : 0),
                        ])
                    }))
        case ["role", "add"]:
            guard args.count >= 3 else { return fail("400 not enough arguments") }
            guard roles[args[2]] == nil else { return fail("role '\(args[2])' already exists") }
            let privs = (option("--privs") ?? "").split(separator: ",").map(String.init)
            if let bad = privs.first(where: { !Permissions.all.contains($0) }) { return fail("invalid privilege '\(bad)'") }
            state.customRoles[args[2]] = privs
        case ["role", "delete"]:
            guard args.count >= 3, state.customRoles[args[2]] != nil else { return fail("role '\(args.dropFirst(2).first ?? "")' does not exist") }
            state.customRoles[args[2]] = nil
            state.acls.removeAll { $0.role == args[2] }
        case ["user", "list"]:
            return json(.array(state.users.sorted().map { .object(["userid": .string($0), "enable": 1, "expire": 0]) }))
        case ["user", "add"]:
            guard args.count >= 3 else { return fail("400 not enough arguments") }
            guard !state.users.contains(args[2]) else { return fail("create user failed: user '\(args[2])' already exists") }
            state.users.append(args[2])
        case ["user", "delete"]:
            guard args.count >= 3, state.users.contains(args[2]) else {
                return fail("delete user failed: user '\(args.dropFirst(2).first ?? "")' does not exist")
            }
            let user = args[2]
            state.users.removeAll { $0 == user }
            state.tokens.removeAll { $0.userid == user }
            state.acls.removeAll { $0.ugid == user || $0.ugid.hasPrefix(user + "!") }
        case ["user", "token"]:
            return execToken(Array(args.dropFirst(2)), option: option)
        case ["acl", "list"]:
            return json(
                .array(
                    state.acls.map { a in
                        .object([
                            "path": .string(a.path), "roleid": .string(a.role), "type": .string(a.ugid.contains("!") ? "token" : "user"),
                            "ugid": .string(a.ugid), "propagate": .int(a.propagate ? 1 : 0),
                        ])
                    }))
        case ["acl", "modify"]:
            guard args.count >= 3, let role = option("--roles") else { return fail("400 not enough arguments") }
            guard roles[role] != nil else { return fail("role '\(role)' does not exist") }
            let propagate = option("--propagate") != "0"
            if let user = option("--users") {
                guard state.users.contains(user) else { return fail("user '\(user)' does not exist") }
                state.acls.removeAll { $0.path == args[2] && $0.ugid == user && $0.role == role }
                state.acls.append(SimACL(path: args[2], ugid: user, role: role, propagate: propagate))
            } else if let token = option("--tokens") {
                guard state.tokens.contains(where: { $0.tokenid == token }) else { return fail("token '\(token)' does not exist") }
                state.acls.removeAll { $0.path == args[2] && $0.ugid == token && $0.role == role }
                state.acls.append(SimACL(path: args[2], ugid: token, role: role, propagate: propagate))
            } else {
                return fail("400 Parameter verification failed: --users, --groups or --tokens is required")
            }
        default:
            return fail("pveum \(args.prefix(2).joined(separator: " ")): not simulated")
        }
        persist()
        return (0, "", "")
    }

    private func execToken(_ args: [String], option: (String) -> String?) -> (exitCode: Int32, stdout: String, stderr: String) {
        guard args.count >= 2 else { return (255, "", "400 not enough arguments\n") }
        let user = args[1]
        guard state.users.contains(user) else { return (255, "", "no such user ('\(user)')\n") }
        switch args[0] {
        case "list":
            let list: [JSONValue] = state.tokens.filter { $0.userid == user }.map { t in
                .object([
                    "tokenid": .string(String(t.tokenid.split(separator: "!").last ?? "")), "privsep": .int(t.privsep ? 1 : 0),
                    "expire": .int(t.expire), "comment": .string(t.comment ?? ""),
                ])
            }
            return (0, JSONValue.array(list).serializedString() + "\n", "")
        case "add":
            guard args.count >= 3 else { return (255, "", "400 not enough arguments\n") }
            let id = user + "!" + args[2]
            guard !state.tokens.contains(where: { $0.tokenid == id }) else { return (255, "", "Token already exists.\n") }
            let secret = UUID().uuidString.lowercased()
            state.tokens.append(SimToken(tokenid: id, secret: secret, privsep: option("--privsep") != "0", comment: option("--comment") ?? ""))
            persist()
            let out: JSONValue = .object([
                "full-tokenid": .string(id), "info": .object(["privsep": .string(option("--privsep") ?? "1")]), "value": .string(secret),
            ])
            return (0, out.serializedString() + "\n", "")
        case "remove":
            guard args.count >= 3 else { return (255, "", "400 not enough arguments\n") }
            let id = user + "!" + args[2]
            guard state.tokens.contains(where: { $0.tokenid == id }) else { return (255, "", "no such token '\(args[2])' for user '\(user)'\n") }
            state.tokens.removeAll { $0.tokenid == id }
            state.acls.removeAll { $0.ugid == id }
            persist()
            return (0, "", "")
        default:
            return (255, "", "pveum user token \(args[0]): not simulated\n")
        }
    }

    /// `pvenode cert info --output-format json`: the simulator's own certificate as `pve-ssl.pem`.
    public func execCertInfo() -> (exitCode: Int32, stdout: String, stderr: String) {
        guard let fp = serverFingerprint else { return (255, "", "unable to read certificate\n") }
        let list: JSONValue = .array([
            .object([
                "filename": "pve-ssl.pem", "fingerprint": .string(fp), "issuer": "/CN=Proxmox Virtual Environment/OU=sim/O=PVE Cluster Manager CA",
                "subject": "/OU=PVE Cluster Node/O=Proxmox Virtual Environment/CN=pve1.local",
            ])
        ])
        return (0, list.serializedString() + "\n", "")
    }

    /// `pct create VMID OSTEMPLATE --key value …` as root@pam, waiting for the task like pct does.
    public func execPctCreate(_ args: [String]) async -> (exitCode: Int32, stderr: String) {
        guard args.count >= 3, args[0] == "create", Int(args[1]) != nil, (args.count - 3) % 2 == 0 else { return (255, "400 wrong arguments\n") }
        var params: [String: JSONValue] = ["vmid": .string(args[1]), "ostemplate": .string(args[2])]
        var i = 3
        while i + 1 < args.count {
            params[String(args[i].dropFirst(2))] = .string(args[i + 1])
            i += 2
        }
        let node = state.nodes.first?.name ?? "pve1"
        params["node"] = .string(node)
        let upid: String
        do {
            let r = try route(method: "POST", path: "/nodes/\(node)/lxc", params: params, authid: "root@pam")
            guard let u = r.data.stringValue else { return (255, "no task\n") }
            upid = u
            persist()
        } catch let e as SimError {
            return (255, e.message + "\n")
        } catch {
            return (255, "\(error)\n")
        }
        for _ in 0..<6000 {
            advance()
            if let t = state.tasks.first(where: { $0.upid == upid }), t.finished {
                return t.exitStatus == "OK" ? (0, "") : (255, "TASK ERROR: \(t.exitStatus)\n")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return (255, "timed out waiting for \(upid)\n")
    }
}
