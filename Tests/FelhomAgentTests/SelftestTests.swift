import FelhomCore
import Foundation
import PVESimulator
import Proxmox
import Testing

@testable import FelhomAgent

/// The selftest against a simulated host, through the real HTTPS client with a pinned certificate.
@Suite struct SelftestTests {
    func withSim(_ adjust: (inout SimState) -> Void = { _ in }, _ body: (PVESimulator.Running, PVEClient) async throws -> Void) async throws {
        var state = SimSeed.defaultState()
        state.settings.taskDurations = ["default": 0.05]
        adjust(&state)
        var options = PVESimulator.Options()
        options.port = 0
        options.seed = state
        let sim = try await PVESimulator.start(options)
        let env = [
            "FELHOM_AGENT_PVE_HOST": "127.0.0.1", "FELHOM_AGENT_PVE_PORT": String(sim.port), "FELHOM_AGENT_PVE_NODE": "pve1",
            "FELHOM_AGENT_PVE_TOKEN_ID": SimSeed.agentTokenID, "FELHOM_AGENT_PVE_TOKEN_SECRET": sim.secret(for: SimSeed.agentTokenID) ?? "",
            "FELHOM_AGENT_PVE_FINGERPRINT": sim.fingerprint ?? "",
        ]
        let client = PVEClient(connection: try AgentConfig.load(file: nil, environment: env).pveConnection())
        do { try await body(sim, client) } catch {
            await sim.shutdown()
            throw error
        }
        await sim.shutdown()
    }

    @Test func readModePasses() async throws {
        try await withSim { _, client in
            let r = await Selftest(api: client, node: "pve1").read(target: "sim")
            #expect(r.passed, "\(r.rendered())")
            #expect(r.checks.count == 8)
            #expect(r.rendered().contains("all 8 checks passed"))
        }
    }

    @Test func readModeReportsAPlaintextPBSBackup() async throws {
        let plaintextPBS: (inout SimState) -> Void = { s in
            if let i = s.volumes.firstIndex(where: { $0.storage == "pbs-felhom" }) { s.volumes[i].encrypted = nil }
        }
        try await withSim(plaintextPBS) { _, client in
            let r = await Selftest(api: client, node: "pve1").read(target: "sim")
            #expect(r.checks.first { $0.name == "backup content" }?.detail.contains("1 NOT encrypted") == true)
        }
    }

    @Test func readModeFailsOnAWrongNode() async throws {
        try await withSim { _, client in
            let r = await Selftest(api: client, node: "pve7").read(target: "sim")
            #expect(!r.passed)
            #expect(r.rendered().contains("FAIL  node listed and online"))
        }
    }

    @Test func taskModeIsReversible() async throws {
        try await withSim { sim, client in
            let before = await sim.engine.snapshot().containers[SimSeed.selftestVmid]
            let r = await Selftest(api: client, node: "pve1").task(vmid: SimSeed.selftestVmid, target: "sim")
            #expect(r.passed, "\(r.rendered())")
            #expect(r.checks.map(\.name).contains("snapshot rollback (task)"))
            let after = await sim.engine.snapshot().containers[SimSeed.selftestVmid]
            #expect(after?.config["description"] == before?.config["description"])
            #expect(after?.snapshots.isEmpty == true)
            #expect(after?.config["lock"] == nil)
        }
    }

    @Test func taskModeStopsOnALockedGuestWithoutChangingIt() async throws {
        let lockedGuest: (inout SimState) -> Void = { s in s.faults.forcedLocks[SimSeed.selftestVmid] = "backup" }
        try await withSim(lockedGuest) { sim, client in
            let r = await Selftest(api: client, node: "pve1").task(vmid: SimSeed.selftestVmid, target: "sim")
            #expect(!r.passed)
            #expect(r.checks.count == 1)
            #expect(r.checks[0].detail.contains("locked (backup)"))
            #expect(await sim.engine.snapshot().containers[SimSeed.selftestVmid]?.snapshots.isEmpty == true)
        }
    }

    /// Issue 10 item 16: task mode refuses a guest not created for testing (a customer's guest).
    @Test func taskModeRefusesACustomersGuest() async throws {
        try await withSim { sim, client in
            let before = await sim.engine.snapshot().containers[100]
            let r = await Selftest(api: client, node: "pve1").task(vmid: 100, target: "sim")
            #expect(!r.passed)
            #expect(r.checks.count == 1)
            #expect(r.checks[0].detail.contains("not a scratch guest"))
            let after = await sim.engine.snapshot().containers[100]
            #expect(after?.config == before?.config && after?.snapshots.isEmpty == true)
        }
    }

    @Test func readOnlyTokenCannotRunTaskMode() async throws {
        try await withSim { sim, _ in
            let ro = PVEClient(
                connection: try PVEConnection(
                    host: "127.0.0.1", port: sim.port, tokenID: SimSeed.auditorTokenID,
                    tokenSecret: Secret(sim.secret(for: SimSeed.auditorTokenID) ?? ""),
                    trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: sim.fingerprint ?? ""))))
            let r = await Selftest(api: ro, node: "pve1").task(vmid: SimSeed.selftestVmid, target: "sim")
            #expect(!r.passed)
            let text = r.rendered()
            #expect(
                text.contains("Permission check failed (/vms/199, VM.Config.Disk|VM.Config.CPU|VM.Config.Memory|VM.Config.Network|VM.Config.Options)")
            )
            #expect(text.contains("Permission check failed (/vms/199, VM.Snapshot)"))
        }
    }
}
