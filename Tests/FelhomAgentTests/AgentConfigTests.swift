import FelhomCore
import Foundation
import Proxmox
import Testing

@testable import FelhomAgent

@Suite struct AgentConfigTests {
    let base: [String: String] = [
        "FELHOM_AGENT_PVE_HOST": "pve1.lan", "FELHOM_AGENT_PVE_NODE": "pve1",
        "FELHOM_AGENT_PVE_TOKEN_ID": "felhom@pve!agent", "FELHOM_AGENT_PVE_TOKEN_SECRET": "very-secret-uuid",
    ]

    @Test func fileAndEnvironmentCombine() throws {
        let path = NSTemporaryDirectory() + "agent-\(UUID().uuidString).json"
        try
            #"{"pve": {"host": "file-host", "node": "pve1", "token_id": "felhom@pve!agent", "token_secret": "from-file", "port": 8006}, "selftest": {"vmid": 199}}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let cfg = try AgentConfig.load(file: path, environment: ["FELHOM_AGENT_PVE_HOST": "env-host", "FELHOM_AGENT_PVE_PORT": "18006"])
        #expect(cfg.pve.host == "env-host")
        #expect(cfg.pve.port == 18006)
        #expect(cfg.pve.tokenSecret.reveal() == "from-file")
        #expect(cfg.selftest?.vmid == 199)
    }

    @Test func routesAllowedPortsIsCheckedWhenLoaded() throws {
        var env = base
        #expect(try AgentConfig.load(file: nil, environment: env).routesAllowedPorts() == nil)
        env["FELHOM_AGENT_ROUTES_ALLOWED_PORTS"] = "443,8000-8099"
        #expect(try AgentConfig.load(file: nil, environment: env).routesAllowedPorts()?.contains(8050) == true)
        env["FELHOM_AGENT_ROUTES_ALLOWED_PORTS"] = "443,99999"
        let e = #expect(throws: ConfigError.self) { try AgentConfig.load(file: nil, environment: env).routesAllowedPorts() }
        #expect(e?.message.hasPrefix("routes.allowed_ports: '99999'") == true)
    }

    /// Issue 10 item 16: the API token never crosses the network in clear text.
    @Test func plainHTTPOnlyOnLoopback() throws {
        var env = base
        env["FELHOM_AGENT_PVE_PLAIN_HTTP"] = "true"
        let e = #expect(throws: ConfigError.self) { try AgentConfig.load(file: nil, environment: env).pveConnection() }
        #expect(e?.message.contains("pve1.lan") == true)
        env["FELHOM_AGENT_PVE_HOST"] = "127.0.0.1"
        #expect(try !AgentConfig.load(file: nil, environment: env).pveConnection().useTLS)
    }

    /// Sizes from PVE are input: NaN, infinity or huge values are nil, never a trap.
    @Test func hostileSizesDoNotTrap() {
        #expect(HostObserver.gib("8G") == 8 && HostObserver.gib("512M") == 1 && HostObserver.gib("1T") == 1024)
        for bad in ["nanG", "infG", "1e300T", "-infM", "9e18G", "G"] { #expect(HostObserver.gib(bad) == nil, "\(bad)") }
    }

    /// Issue 10 item 6: the agent sends reasons the hub accepts (escaped, at most 900 characters).
    @Test func reasonsAreEscapedAndBounded() {
        #expect(Agent.reportable("failed: PVE said \"no\"") == "failed: PVE said \"no\"")
        #expect(Agent.reportable("a\nb\u{1B}c\u{202E}") == "a\\nb\\u{1B}c\\u{202E}")
        let long = Agent.reportable(String(repeating: "y", count: 10_000))
        #expect(long.count == 900 && long.hasSuffix("..."))
    }

    @Test func trustModes() throws {
        var env = base
        #expect(try AgentConfig.load(file: nil, environment: env).pveConnection().trust == .systemDefault)
        env["FELHOM_AGENT_PVE_INSECURE_SKIP_VERIFY"] = "true"
        #expect(try AgentConfig.load(file: nil, environment: env).pveConnection().trust == .insecureSkipVerification)
        env["FELHOM_AGENT_PVE_CA_FILE"] = "/etc/felhom/pve-ca.pem"
        #expect(try AgentConfig.load(file: nil, environment: env).pveConnection().trust == .caFile("/etc/felhom/pve-ca.pem"))
        env["FELHOM_AGENT_PVE_FINGERPRINT"] = String(repeating: "AB:", count: 31) + "AB"
        if case .pinnedLeafSHA256 = try AgentConfig.load(file: nil, environment: env).pveConnection().trust {
        } else {
            Issue.record("fingerprint should win")
        }
    }

    @Test func badValuesAreNamedAndTheSecretIsNeverPrinted() throws {
        var env = base
        env["FELHOM_AGENT_PVE_FINGERPRINT"] = "not-a-fingerprint"
        let e = #expect(throws: HTTPClientError.self) { try AgentConfig.load(file: nil, environment: env).pveConnection() }
        #expect(e?.message.contains("fingerprint") == true)
        let cfg = try AgentConfig.load(file: nil, environment: base)
        #expect(!"\(cfg)".contains("very-secret-uuid"))
        #expect(!String(reflecting: cfg).contains("very-secret-uuid"))
        var missing = base
        missing["FELHOM_AGENT_PVE_TOKEN_ID"] = nil
        let m = #expect(throws: ConfigError.self) { try AgentConfig.load(file: nil, environment: missing) }
        #expect(m?.message.contains("token_id") == true)
        var badToken = base
        badToken["FELHOM_AGENT_PVE_TOKEN_ID"] = "felhom@pve"
        #expect(throws: PVEError.self) { try AgentConfig.load(file: nil, environment: badToken).pveConnection() }
    }
}
