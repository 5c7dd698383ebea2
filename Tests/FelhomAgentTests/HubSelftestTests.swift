import FelhomAPI
import FelhomCore
import FelhomHubClient
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

@testable import FelhomAgent

/// `felhom-agent selftest hub` against a real hub on loopback and the simulator.
@Suite struct HubSelftestTests {
    func config(hub url: String, sim: SimHarness, stateDir: String, hostID: String? = nil, key: String? = nil, token: String? = nil) throws
        -> AgentConfig
    {
        var env = [
            "FELHOM_AGENT_PVE_HOST": "127.0.0.1", "FELHOM_AGENT_PVE_PORT": String(sim.port), "FELHOM_AGENT_PVE_NODE": "pve1",
            "FELHOM_AGENT_PVE_TOKEN_ID": SimSeed.agentTokenID, "FELHOM_AGENT_PVE_TOKEN_SECRET": sim.sim.secret(for: SimSeed.agentTokenID) ?? "",
            "FELHOM_AGENT_PVE_FINGERPRINT": sim.sim.fingerprint ?? "", "FELHOM_AGENT_HUB_URL": url, "FELHOM_AGENT_STATE_DIR": stateDir,
        ]
        if let hostID, let key {
            env["FELHOM_AGENT_HUB_HOST_ID"] = hostID
            env["FELHOM_AGENT_HUB_HOST_KEY"] = key
        }
        if let token { env["FELHOM_AGENT_HUB_ENROLLMENT_TOKEN"] = token }
        return try AgentConfig.load(file: nil, environment: env)
    }

    @Test func anEnrolledBoxPassesEveryCheck() async throws {
        let sim = try await SimHarness.start()
        try await withRunningHub { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let (hostID, key) = try await op.createHost(customerID: customer, name: "nappali")
            let dir = NSTemporaryDirectory() + "hub-selftest-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let cfg = try config(hub: hub.url, sim: sim, stateDir: dir, hostID: hostID, key: key.reveal())
            var selftest = HubSelftest(config: cfg, pve: try sim.client())
            selftest.pollSeconds = 2
            let report = await selftest.run()
            #expect(report.passed, "\(report.rendered())")
            #expect(report.checks.map(\.name) == ["enrolled", "TLS", "report round trip", "long poll", "clock skew"])
            #expect(report.checks.first { $0.name == "report round trip" }?.detail.contains("POST /api/v1/host-report") == true)
            #expect(report.checks.first { $0.name == "long poll" }?.detail.hasPrefix("held ") == true)
            // The hub saw the report.
            #expect(try await op.host(hostID).lastReportAt != nil)
            #expect(!report.rendered().contains(key.reveal()), "no secret is printed")
            // While an agent runs (it holds state_dir), its reports stay the hub's view: a control call instead.
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let lock = try StateDirLock(stateDir: dir)
            let running = await selftest.run()
            lock.release()
            #expect(running.passed, "\(running.rendered())")
            #expect(running.checks.first { $0.name == "report round trip" }?.detail.contains("the running agent reports") == true)
        }
        await sim.stop()
    }

    @Test func anUnenrolledBoxFailsWithoutSpendingItsToken() async throws {
        let sim = try await SimHarness.start()
        try await withRunningHub { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let (hostID, _) = try await op.createHost(customerID: customer, name: "nappali")
            let token = try await op.enrollmentToken(hostID: hostID).token
            let dir = NSTemporaryDirectory() + "hub-selftest-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let report = await HubSelftest(config: try config(hub: hub.url, sim: sim, stateDir: dir, token: token), pve: try sim.client()).run()
            #expect(!report.passed)
            #expect(report.checks.first?.detail.contains("not yet: the enrollment token is used by the first") == true, "\(report.rendered())")
            #expect(report.checks.first { $0.name == "report round trip" }?.detail.hasPrefix("skipped") == true)
            // The token still works.
            #expect(try await HubClient.enrollment(url: hub.url, token: Secret(token)).hostID == hostID)
        }
        await sim.stop()
    }

    @Test func anUnreachableHubIsNamed() async throws {
        let sim = try await SimHarness.start()
        let dir = NSTemporaryDirectory() + "hub-selftest-\(UUID().uuidString)"
        let report = await HubSelftest(
            config: try config(hub: "http://127.0.0.1:9", sim: sim, stateDir: dir, hostID: "hst_x", key: "k"), pve: try sim.client()
        ).run()
        #expect(report.checks.first { $0.name == "TLS" }?.ok == false)
        #expect(report.checks.first { $0.name == "TLS" }?.detail.contains("GET /healthz") == true, "\(report.rendered())")
        #expect(report.checks.first { $0.name == "clock skew" }?.detail.contains("skipped") == true)
        await sim.stop()
    }

    @Test func aSkewedClockFailsWithTheFix() {
        let cfg = try? AgentConfig.load(
            file: nil,
            environment: [
                "FELHOM_AGENT_PVE_HOST": "h", "FELHOM_AGENT_PVE_NODE": "n",
                "FELHOM_AGENT_PVE_TOKEN_ID": "a@pve!t", "FELHOM_AGENT_PVE_TOKEN_SECRET": "s",
            ])
        guard let cfg else {
            Issue.record("config")
            return
        }
        let now = Date()
        var report = Selftest.Report(mode: "hub", target: "x")
        HubSelftest(config: cfg, pve: nil).addSkew(
            (Health(status: "ok", store: "ok"), now.addingTimeInterval(-120), now, now.addingTimeInterval(0.2)), to: &report)
        #expect(report.checks.first?.ok == false)
        #expect(report.checks.first?.detail.contains("this box is 120 s ahead of the hub") == true, "\(report.rendered())")
        report = Selftest.Report(mode: "hub", target: "x")
        HubSelftest(config: cfg, pve: nil).addSkew((Health(status: "ok", store: "ok"), now, now, now.addingTimeInterval(0.2)), to: &report)
        #expect(report.checks.first?.ok == true)
    }
}
