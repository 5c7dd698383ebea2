import FelhomCore
import Foundation
import PVESimulator
import Testing

/// Privilege separation and ACLs (PVE-FACTS §5).
@Suite struct PermissionTests {
    static func withScopedTokens(_ s: inout SimState) {
        s.users += ["ops@pve"]
        s.tokens += [
            SimToken(tokenid: "ops@pve!scoped", secret: "scoped-secret", privsep: true),
            SimToken(tokenid: "ops@pve!same", secret: "same-secret", privsep: false),
            SimToken(tokenid: "ops@pve!fresh", secret: "fresh-secret", privsep: true),
        ]
        s.acls += [
            SimACL(path: "/", ugid: "ops@pve", role: "PVEAuditor"),
            SimACL(path: "/vms/100", ugid: "ops@pve", role: "PVEVMAdmin"),
            SimACL(path: "/vms/100", ugid: "ops@pve!scoped", role: "PVEVMAdmin"),
        ]
    }

    @Test func listsAreFilteredByVMAudit() async {
        let h = EngineHarness(Self.withScopedTokens)
        let list = await h.call("GET", "/nodes/pve1/lxc", token: "ops@pve!scoped")
        #expect(list.status == 200)
        #expect(list.data?.arrayValue?.compactMap { $0["vmid"]?.lenientInt } == [100])
        let other = await h.call("GET", "/nodes/pve1/lxc/101/config", token: "ops@pve!scoped")
        #expect(other.status == 403 && other.reason == "Permission check failed (/vms/101, VM.Audit)")
    }

    @Test func privsepTokenGetsTheIntersection() async {
        let h = EngineHarness(Self.withScopedTokens)
        // User: Auditor on / + VMAdmin on /vms/100; token: VMAdmin on /vms/100 → can power 100 only.
        #expect(await h.call("POST", "/nodes/pve1/lxc/100/status/stop", token: "ops@pve!scoped").status == 200)
        let refused = await h.call("POST", "/nodes/pve1/lxc/101/status/start", token: "ops@pve!scoped")
        #expect(refused.status == 403)
        // A fresh privsep token has no privileges at all: empty lists, 403 on reads.
        #expect(await h.call("GET", "/nodes/pve1/lxc", token: "ops@pve!fresh").data == [])
        #expect(await h.call("GET", "/nodes/pve1/status", token: "ops@pve!fresh").status == 403)
        // privsep=0 inherits the user's privileges.
        #expect(await h.call("GET", "/nodes/pve1/lxc", token: "ops@pve!same").data?.arrayValue?.count == 3)
    }

    @Test func rootTokensAreNotRootAtPam() async {
        let h = EngineHarness()
        let a = await h.call("PUT", "/nodes/pve1/lxc/101/config", token: SimSeed.rootTokenID, form: "features=keyctl%3D1")
        #expect(a.status == 403)
        #expect(a.reason == "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)")
        let bind = await h.call("PUT", "/nodes/pve1/lxc/101/config", token: SimSeed.rootTokenID, form: "mp5=%2Fsrv%2Fx%2Cmp%3D%2Fx")
        #expect(bind.reason == "Permission check failed (mount point type bind is only allowed for root@pam)")
        let skip = await h.call("POST", "/nodes/pve1/lxc/101/status/start", token: SimSeed.rootTokenID, form: "skiplock=1")
        #expect(skip.json?["errors"]?["skiplock"] == "Only root may use this option.")
        // Nesting alone is allowed with VM.Allocate.
        #expect(await h.call("PUT", "/nodes/pve1/lxc/101/config", form: "features=nesting%3D1").status == 200)
    }

    @Test func felhomAgentRoleIsOperatorTierNotAdmin() async {
        let h = EngineHarness()
        let perms = await h.call("GET", "/access/permissions", query: "path=/")
        let root = perms.data?["/"]?.objectValue ?? [:]
        #expect(root["VM.PowerMgmt"] == 1)
        #expect(root["VM.Backup"] == 1)
        #expect(root["Datastore.AllocateSpace"] == 1)
        #expect(root["Sys.Modify"] == nil)
        #expect(root["Datastore.Allocate"] == nil)
        #expect(root["Permissions.Modify"] == nil)
        // Storage definitions: Datastore.Allocate on /storage itself (FelhomStorage, not
        // propagated) adds and removes them; anything checked on /storage/{id} is refused, so the
        // box can neither read a storage's full config nor prune its backups.
        let storagePerms = await h.call("GET", "/access/permissions", query: "path=/storage")
        #expect(storagePerms.data?["/storage"]?["Datastore.Allocate"] != nil)
        #expect(await h.call("GET", "/storage/pbs-felhom").reason == "Permission check failed (/storage/pbs-felhom, Datastore.Allocate)")
        let prune = await h.call("POST", "/nodes/pve1/vzdump", form: "vmid=101&storage=pbs-felhom&prune-backups=keep-last%3D1")
        #expect(prune.reason == "Permission check failed (/storage/pbs-felhom, Datastore.Allocate)")
        #expect(await h.call("POST", "/storage", form: "storage=usb&type=dir&path=/mnt/usb").status == 200)
        #expect(await h.call("DELETE", "/storage/usb").status == 200)
        // The read-only token sees everything and changes nothing.
        #expect(await h.call("GET", "/nodes/pve1/lxc", token: SimSeed.auditorTokenID).data?.arrayValue?.count == 3)
        let vz = await h.call("POST", "/nodes/pve1/vzdump", token: SimSeed.auditorTokenID, form: "vmid=101&storage=local")
        #expect(vz.reason == "Permission check failed (/storage/local, Datastore.AllocateSpace)")
    }

    @Test func backupPermissionIsCheckedInsideTheTask() async throws {
        let h = EngineHarness(taskSeconds: 1) { s in
            s.users += ["bk@pve"]
            s.tokens += [SimToken(tokenid: "bk@pve!t", secret: "bk", privsep: false)]
            s.acls += [SimACL(path: "/storage/local", ugid: "bk@pve", role: "PVEDatastoreUser")]
        }
        let r = await h.call("POST", "/nodes/pve1/vzdump", token: "bk@pve!t", form: "vmid=101&storage=local")
        let upid = try #require(r.data?.stringValue)
        h.clock.advance(by: 2)
        let st = await h.call("GET", "/nodes/pve1/tasks/\(upid)/status", token: "bk@pve!t")
        #expect(st.data?["exitstatus"] == "Permission check failed (/vms/101, VM.Backup)")
    }
}
