import FelhomAPI
import FelhomCore
import FelhomHubClient
import FelhomSigning
import FelhomTestSupport
import Foundation
import PVESimulator
import Testing

@testable import FelhomAgent

/// `felhom-agent check` against a real hub and a simulated host: a good box passes every check;
/// each broken piece is named.
@Suite struct AgentCheckTests {
    @Test func aGoodBoxPassesAndEachBrokenPieceIsNamed() async throws {
        try await withAgentWorld { w in
            let dir = NSTemporaryDirectory() + "felhom-check-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let signers = dir + "/allowed_signers"
            try "operator@felhom namespaces=\"felhom-op-v1\" \(w.pinned.publicKey.openSSHLine) role=operational\n"
                .write(toFile: signers, atomically: true, encoding: .utf8)
            var env = [
                "FELHOM_AGENT_PVE_HOST": "127.0.0.1", "FELHOM_AGENT_PVE_PORT": String(w.sim.port), "FELHOM_AGENT_PVE_NODE": "pve1",
                "FELHOM_AGENT_PVE_TOKEN_ID": SimSeed.agentTokenID, "FELHOM_AGENT_PVE_TOKEN_SECRET": w.sim.sim.secret(for: SimSeed.agentTokenID) ?? "",
                "FELHOM_AGENT_PVE_FINGERPRINT": w.sim.sim.fingerprint ?? "", "FELHOM_AGENT_HUB_URL": w.hubURL,
                "FELHOM_AGENT_HUB_HOST_KEY": w.hostKey.reveal(), "FELHOM_AGENT_HUB_HOST_ID": w.hostID, "FELHOM_AGENT_STATE_DIR": dir + "/state",
                "FELHOM_AGENT_SIGNERS_FILE": signers, "FELHOM_AGENT_PROVISION_GOLDEN_TEMPLATE": SimSeed.goldenTemplateVolid,
            ]
            func check(_ overrides: [String: String] = [:]) async throws -> [String: AgentCheck.Item] {
                let cfg = try AgentConfig.load(file: nil, environment: env.merging(overrides) { $1 })
                let items = await AgentCheck.run(config: cfg)
                return Dictionary(items.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            }
            let good = try await check()
            let allPassed = good.values.allSatisfy { $0.ok }
            #expect(allPassed, "\(AgentCheck.rendered(Array(good.values)))")
            #expect(good.count == 6)

            // Another agent holds the state directory.
            let lock = try StateDirLock(stateDir: dir + "/state")
            #expect(try await check()["state_dir"]?.ok == false)
            lock.release()

            // A missing template, an empty signers file, a wrong hub pin: each named.
            #expect(
                try await check(["FELHOM_AGENT_PROVISION_GOLDEN_TEMPLATE": "pbs:backup/ct/9999/2026-01-01T00:00:00Z"])["golden template"]?.ok == false
            )
            try "".write(toFile: dir + "/empty", atomically: true, encoding: .utf8)
            #expect(try await check(["FELHOM_AGENT_SIGNERS_FILE": dir + "/empty"])["signers_file"]?.detail.contains("no keys") == true)
            let wrongPVE = try await check(["FELHOM_AGENT_PVE_TOKEN_SECRET": "wrong-secret"])["proxmox token and privileges"]
            #expect(wrongPVE?.ok == false && wrongPVE?.detail.contains("wrong-secret") == false)

            // A revoked host key: refused, with what to do.
            env["FELHOM_AGENT_HUB_HOST_KEY"] = w.hostKey.reveal()
            _ = try await w.op.send("DELETE", "/api/v1/keys/\(w.hostID)", as: Revoked.self)
            let refused = try await check()["hub key"]
            #expect(refused?.ok == false && refused?.detail.contains("re-enroll") == true, "\(String(describing: refused))")
        }
    }
}
