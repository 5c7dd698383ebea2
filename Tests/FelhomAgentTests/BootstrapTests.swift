import FelhomAPI
import FelhomCore
import FelhomHub
import FelhomHubClient
import FelhomSigning
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Synchronization
import Testing

@testable import FelhomAgent

/// `felhom-agent bootstrap` against the simulator: its root commands through the simulator's
/// `pveum`/`pct`/`pvenode` (a recording `CommandRunner`), its API calls through the real client
/// with the token it made, enrollment and escrow against a real hub on loopback.
@Suite struct BootstrapTests {
    /// Records every command; answers them as the simulated host does (systemctl: exit 0).
    final class Recorder: CommandRunner {
        let inner: SimCommandRunner
        let calls = Mutex<[[String]]>([])
        init(_ engine: PVESimEngine) { inner = SimCommandRunner(engine: engine) }
        func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
            calls.withLock { $0.append([executable] + arguments) }
            if executable == "systemctl" { return CommandResult(exitCode: 0, stdout: "") }
            return try await inner.run(executable, arguments)
        }
        var all: [[String]] { calls.withLock { $0 } }
        /// The commands that change something (`pveum` writes, `pct create`, `systemctl`).
        var writes: [[String]] {
            all.filter { c in
                !(c[0] == "pveum" && (c.contains("list"))) && c[0] != "pvenode" && c[0] != "pveversion"
            }
        }
        func reset() { calls.withLock { $0 = [] } }
    }

    /// A Proxmox VE host as installed: no Felhom user, token, ACL or role, no golden template.
    static func fresh(_ s: inout SimState) {
        s.users = ["root@pam"]
        s.tokens.removeAll { !$0.tokenid.hasPrefix("root@pam") }
        s.acls = []
        s.customRoles = [:]
        s.volumes.removeAll { $0.volid == SimSeed.goldenTemplateVolid || $0.storage == "pbs-felhom" }
        // The PBS storage is added, but no key given to it yet (escrow init does that).
        if let i = s.storages.firstIndex(where: { $0.id == "pbs-felhom" }) { s.storages[i].encryptionKeyFingerprint = nil }
    }

    struct World {
        let sim: SimHarness
        let hub: RunningHub
        let op: HubClient
        let hostID: String
        let dir: String
        let recorder: Recorder
        var options: Bootstrap.Options

        final class Said: Sendable {
            let lines = Mutex<[String]>([])
            func append(_ line: String) { lines.withLock { $0.append(line) } }
            var all: [String] { lines.withLock { $0 } }
        }

        func bootstrap(root: Bool = true, runner: (any CommandRunner)? = nil) -> (Bootstrap, Said) {
            let said = Said()
            let b = Bootstrap(options: options, runner: runner ?? recorder, isRoot: { root }, say: { line in said.append(line) })
            return (b, said)
        }
    }

    func withWorld(_ adjust: @escaping (inout SimState) -> Void = fresh, _ body: (inout World) async throws -> Void) async throws {
        let sim = try await SimHarness.start(adjust)
        defer { Task { await sim.stop() } }
        let withKey: (inout HubConfig) -> Void = { $0.secretsKey = Secret(Self.secretsKey) }
        try await withRunningHub(adjust: withKey) { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let (hostID, _) = try await op.createHost(customerID: customer, name: "nappali")
            let token = try await op.enrollmentToken(hostID: hostID).token
            let dir = NSTemporaryDirectory() + "bootstrap-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir + "/etc/felhom", withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let key = "operator@felhom \(SSHPrivateKey.generateEd25519(comment: "op").publicKey.openSSHLine)\n"
            try key.write(toFile: dir + "/etc/felhom/allowed_signers", atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
            try "#!/bin/sh\necho agent\n".write(toFile: dir + "/bin/felhom-agent", atomically: true, encoding: .utf8)
            try "#!/bin/sh\necho gate\n".write(toFile: dir + "/bin/felhom-agent-gate", atomically: true, encoding: .utf8)
            var options = Bootstrap.Options(hubURL: hub.url, enrollmentToken: Secret(token), node: "pve1")
            options.root = dir
            options.pvePort = sim.port
            options.keyFile = dir + "/pbs-felhom.enc"
            options.agentExecutable = dir + "/bin/felhom-agent"
            var world = World(sim: sim, hub: hub, op: op, hostID: hostID, dir: dir, recorder: Recorder(sim.engine), options: options)
            try await body(&world)
        }
        await sim.stop()
    }

    @Test func theDryRunPrintsEveryCommandAndTouchesNothing() throws {
        var options = Bootstrap.Options(hubURL: "https://hub.example:8443", enrollmentToken: Secret("fh_enroll_x"), node: "pve1")
        options.root = NSTemporaryDirectory() + "bootstrap-dry-\(UUID().uuidString)"
        let lines = try Bootstrap(options: options, runner: SubprocessCommandRunner(), isRoot: { false }, say: { _ in }).dryRun()
        #expect(
            lines.contains(
                "run    pveum role add FelhomAgent --privs VM.Audit,VM.Allocate,VM.Config.CPU,VM.Config.Memory,VM.Config.Disk,VM.Config.Network,VM.Config.Options,VM.PowerMgmt,VM.Snapshot,VM.Snapshot.Rollback,VM.Backup,Datastore.Audit,Datastore.AllocateSpace,Sys.Audit,SDN.Use"
            ), "\(lines.joined(separator: "\n"))")
        #expect(lines.contains("run    pveum role add FelhomStorage --privs Datastore.Allocate"))
        #expect(lines.contains("run    pveum user add felhom@pve --comment 'felhom-agent (felhom-agent bootstrap)'"))
        #expect(lines.contains("run    pveum acl modify /storage --tokens 'felhom@pve!agent' --roles FelhomStorage --propagate 0"))
        #expect(
            lines.contains(
                "run    pct create 9000 local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst --hostname felhom-golden --features keyctl=1,nesting=1 --unprivileged 1 --memory 512 --rootfs local-lvm:4 --net0 name=eth0,bridge=vmbr0,ip=dhcp --description 'felhom golden template'"
            ))
        #expect(lines.contains("run    systemctl enable --now felhom-agent.service felhom-agent-gate.service"))
        #expect(!FileManager.default.fileExists(atPath: options.root), "a dry run writes nothing")
    }

    @Test func aFreshHostIsSetUpAndASecondRunChangesNothing() async throws {
        try await withWorld { w in
            let (b, said) = w.bootstrap()
            let outcome = try await b.run()
            #expect(outcome.hostID == w.hostID && outcome.changed)
            // The root commands that changed something are exactly the dry run's, in order.
            let dry = try b.dryRun().filter { $0.hasPrefix("run    ") && !$0.contains(" list ") && !$0.hasPrefix("run    pve") }
            // (The escrow's `pvesm set` carries the key: the dry run names it in its escrow line.)
            let ran = w.recorder.writes.filter { $0[0] != "pveum" && $0[0] != "pvesm" }.map { "run    " + Bootstrap.shellLine($0) }
            #expect(ran == dry.filter { !$0.hasPrefix("run    pveum") }, "\(ran)")
            #expect(
                w.recorder.writes.filter { $0[0] == "pvesm" }.map { Array($0.prefix(4)) } == [["pvesm", "set", "pbs-felhom", "--encryption-key"]])
            let pveum = w.recorder.writes.filter { $0[0] == "pveum" }
            #expect(pveum == (try b.accessCommands()).filter { !$0.contains("list") }.map { ["pveum"] + $0 })
            // The config: 0600, loads, its token works with exactly the role (the read selftest passes).
            let attrs = try FileManager.default.attributesOfItem(atPath: w.options.configPath)
            #expect((attrs[.posixPermissions] as? Int) == 0o600)
            let cfg = try AgentConfig.load(file: w.options.configPath, environment: [:])
            #expect(cfg.pve.tokenID == "felhom@pve!agent" && cfg.pve.fingerprint == w.sim.sim.fingerprint)
            let report = await Selftest(api: PVEClient(connection: try cfg.pveConnection()), node: "pve1").read(target: "sim")
            #expect(report.passed, "\(report.rendered())")
            // The golden template: a backup of a keyctl container, the container gone.
            let state = await w.sim.engine.snapshot()
            let template = try #require(cfg.provision?.goldenTemplate)
            #expect(state.volumes.contains { $0.volid == template && $0.vmid == 9000 })
            #expect(state.containers[9000] == nil)
            // Escrow: the code was shown here; the hub holds only the wrapped key.
            #expect(outcome.steps.contains { $0.hasPrefix("made: escrow") }, "\(outcome.steps)")
            #expect(said.all.contains { $0.contains("shown only this once") })
            // Units and binaries.
            for unit in SystemdUnits.installed {
                #expect(FileManager.default.contents(atPath: w.options.unitsDir + "/" + unit.name) == Data(unit.text.utf8))
            }
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: w.options.updateRoot + "/current") == "a")
            #expect(FileManager.default.fileExists(atPath: w.options.gatePath))

            // Again: nothing changes, and it says so.
            w.recorder.reset()
            let again = try await w.bootstrap().0.run()
            #expect(!again.changed, "\(again.steps)")
            #expect(w.recorder.writes.filter { $0[0] != "systemctl" }.isEmpty, "\(w.recorder.writes)")
            #expect(await w.sim.engine.snapshot().volumes.filter { $0.vmid == 9000 }.count == 1)
        }
    }

    static let secretsKey = Data((0..<32).map { UInt8($0 * 5 & 0xFF) }).base64EncodedString()

    static func connectorToken(_ secret: String) -> String {
        Data(#"{"a":"0123456789abcdef0123456789abcdef","t":"6ff42ae2-765d-4adf-8112-31c55c1551ef","s":"\#(secret)"}"#.utf8).base64EncodedString()
    }

    @Test func theTunnelRunsOnTheTokenTheHubHands() async throws {
        try await withWorld { w in
            let token = Self.connectorToken("Zmlyc3Qtc2VjcmV0")
            _ = try await w.op.send(
                "PUT", "/api/v1/hosts/\(w.hostID)/tunnel-token", body: TunnelTokenUpload(connectorToken: token), as: TunnelTokenView.self)
            let tokenFile = w.options.stateDir + "/" + TunnelTokenFile.name
            let unit = w.options.unitsDir + "/" + SystemdUnits.tunnel.name

            // Without cloudflared: the box is set up, the token kept, and a line says what is missing.
            let (b, said) = w.bootstrap()
            let first = try await b.run()
            #expect(first.steps.contains("made: \(tokenFile) (0600, the tunnel connector token)"), "\(first.steps)")
            #expect(try String(contentsOfFile: tokenFile, encoding: .utf8) == "TUNNEL_TOKEN=\(token)\n")
            #expect((try FileManager.default.attributesOfItem(atPath: tokenFile)[.posixPermissions] as? Int) == 0o600)
            #expect(try AgentConfig.load(file: w.options.configPath, environment: [:]).tunnel?.enabled == true)
            #expect(first.failed.contains { $0.contains("cloudflared is not installed") }, "\(first.steps)")
            #expect(!FileManager.default.fileExists(atPath: unit))
            #expect(!said.all.joined().contains(token) && !first.steps.joined().contains(token), "the token is never printed")

            // cloudflared installed: the unit is written, enabled and started.
            try FileManager.default.createDirectory(
                atPath: (w.options.cloudflaredPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try "#!/bin/sh\n".write(toFile: w.options.cloudflaredPath, atomically: true, encoding: .utf8)
            chmod(w.options.cloudflaredPath, 0o755)
            w.recorder.reset()
            let second = try await w.bootstrap().0.run()
            #expect(FileManager.default.contents(atPath: unit) == Data(SystemdUnits.tunnel.text.utf8))
            #expect(w.recorder.writes.contains(["systemctl", "enable", "--now", "felhom-cloudflared.service"]), "\(w.recorder.writes)")
            #expect(second.failed.isEmpty, "\(second.steps)")

            // The operator replaced the token on the hub: the next run brings it to the box.
            let rotated = Self.connectorToken("c2Vjb25kLXNlY3JldA")
            _ = try await w.op.send(
                "PUT", "/api/v1/hosts/\(w.hostID)/tunnel-token", body: TunnelTokenUpload(connectorToken: rotated), as: TunnelTokenView.self)
            let third = try await w.bootstrap().0.run()
            #expect(TunnelTokenFile.read(stateDir: w.options.stateDir) == rotated && third.steps.contains { $0.hasPrefix("made: \(tokenFile)") })
            #expect(third.steps.contains("made: felhom-cloudflared.service restarted with the new connector token"), "\(third.steps)")
            #expect(w.recorder.writes.contains(["systemctl", "restart", "felhom-cloudflared.service"]))
            // Once more: nothing changes, nothing restarts.
            w.recorder.reset()
            let fourth = try await w.bootstrap().0.run()
            #expect(!fourth.changed && !w.recorder.writes.contains(["systemctl", "restart", "felhom-cloudflared.service"]), "\(fourth.steps)")
        }
    }

    @Test func aUserWithOtherPrivilegesIsRefusedBeforeAnythingIsMade() async throws {
        let adminUser: (inout SimState) -> Void = { s in
            BootstrapTests.fresh(&s)
            s.users.append("felhom@pve")
            s.acls.append(SimACL(path: "/", ugid: "felhom@pve", role: "PVEAdmin"))
        }
        try await withWorld(adminUser) { w in
            await #expect(throws: Bootstrap.Failure.self) { try await w.bootstrap().0.run() }
            do throws(Bootstrap.Failure) { _ = try await w.bootstrap().0.run() } catch {
                #expect(error.message.contains("felhom@pve exists with other privileges (PVEAdmin on / for felhom@pve)"), "\(error)")
            }
            #expect(w.recorder.writes.isEmpty, "\(w.recorder.writes)")
            #expect(!FileManager.default.fileExists(atPath: w.options.stateDir + "/host.json"), "the enrollment token was not used")
        }
    }

    @Test func aUsedEnrollmentTokenIsAClearErrorAndNothingIsMade() async throws {
        try await withWorld { w in
            _ = try await HubClient.enrollment(url: w.hub.url, token: w.options.enrollmentToken)
            do throws(Bootstrap.Failure) {
                _ = try await w.bootstrap().0.run()
                Issue.record("a used token was accepted")
            } catch {
                #expect(error.message.contains("enrollment with") && error.message.contains("nothing was made on this host"), "\(error)")
            }
            #expect(w.recorder.writes.isEmpty && !FileManager.default.fileExists(atPath: w.options.configPath))
        }
    }

    @Test func noSpaceForTheTemplateIsRefusedAndNoContainerIsMade() async throws {
        let smallDisk: (inout SimState) -> Void = { s in
            BootstrapTests.fresh(&s)
            if let i = s.storages.firstIndex(where: { $0.id == "local-lvm" }) { s.storages[i].totalBytes = 1 << 30 }
        }
        try await withWorld(smallDisk) { w in
            do throws(Bootstrap.Failure) {
                _ = try await w.bootstrap().0.run()
                Issue.record("bootstrap went on without space")
            } catch {
                #expect(error.message.contains("no space for the golden template on local-lvm"), "\(error)")
            }
            #expect(!w.recorder.all.contains { $0.starts(with: ["pct", "create"]) })
            #expect(await w.sim.engine.snapshot().containers[9000] == nil)
        }
    }

    @Test func notRootOrNotProxmoxIsRefused() async throws {
        try await withWorld { w in
            do throws(Bootstrap.Failure) { _ = try await w.bootstrap(root: false).0.run() } catch {
                #expect(error.message.contains("must run as root"))
            }
            struct NoPVE: CommandRunner {
                func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
                    CommandResult(exitCode: 127, stdout: "", stderr: "\(executable): command not found")
                }
            }
            do throws(Bootstrap.Failure) { _ = try await w.bootstrap(runner: NoPVE()).0.run() } catch {
                #expect(error.message.contains("not Proxmox VE"))
            }
            #expect(w.recorder.writes.isEmpty)
        }
    }

    @Test func theEmbeddedUnitsAreTheFilesInDeploy() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for unit in SystemdUnits.installed + [SystemdUnits.tunnel] {
            let file = try String(contentsOf: repo.appendingPathComponent("deploy/systemd/\(unit.name)"), encoding: .utf8)
            #expect(file == unit.text, "\(unit.name) differs from deploy/systemd: regenerate Sources/FelhomAgent/Bootstrap/SystemdUnits.swift")
        }
    }
}
