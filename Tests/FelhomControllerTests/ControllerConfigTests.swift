import FelhomController
import FelhomCore
import Foundation
import Testing

@Suite struct ControllerConfigTests {
    @Test func everyInterfaceKeyHasItsEnvironmentVariable() throws {
        let env = [
            "FELHOM_CONTROLLER_STACKS_DIR": "/srv/stacks", "FELHOM_CONTROLLER_STACKS_PROTECTED": "traefik, db",
            "FELHOM_CONTROLLER_STATE_DIR": "/var/lib/x", "FELHOM_CONTROLLER_SECRETS_DIR": "/run/s",
            "FELHOM_CONTROLLER_AGENT_URL": "https://10.0.0.1:8443", "FELHOM_CONTROLLER_AGENT_FINGERPRINT": String(repeating: "ab", count: 32),
            "FELHOM_CONTROLLER_AGENT_TOKEN": "tok", "FELHOM_CONTROLLER_HUB_URL": "https://hub.example", "FELHOM_CONTROLLER_HUB_KEY": "k",
            "FELHOM_CONTROLLER_QUIESCE_POLL_SECONDS": "30", "FELHOM_CONTROLLER_QUIESCE_MAX_SECONDS": "600",
            "FELHOM_CONTROLLER_WATCHDOG_INTERVAL_SECONDS": "15",
        ]
        let cfg = try ControllerLocalConfig.load(file: nil, environment: env)
        #expect(cfg.stacksDir == "/srv/stacks" && cfg.protectedStacks == ["traefik", "db"] && cfg.stateDirectory == "/var/lib/x")
        #expect(cfg.secretsDir == "/run/s" && cfg.quiesceEnabled, "quiescing defaults on with an agent.url")
        #expect(cfg.quiescePollSeconds == 30 && cfg.quiesceMaxSeconds == 600 && cfg.watchdogIntervalSeconds == 15)
        #expect(try cfg.agentClient() is AgentLocalAPIClient)
        let off = try ControllerLocalConfig.load(file: nil, environment: ["FELHOM_CONTROLLER_QUIESCE_ENABLED": "false"])
        #expect(!off.quiesceEnabled && off.stacksDir == "/opt/felhom/stacks")
        #expect(throws: ControllerError.self) {
            try ControllerLocalConfig.load(file: nil, environment: ["FELHOM_CONTROLLER_QUIESCE_MAX_SECONDS": "soon"])
        }
    }

    /// A compromised hub cannot redirect the controller, harvest its token or switch quiescing off.
    @Test func theHubsConfigDecidesOnlyAppLevelTimings() throws {
        var cfg = try ControllerLocalConfig.load(
            file: nil, environment: ["FELHOM_CONTROLLER_AGENT_URL": "https://10.0.0.1:8443", "FELHOM_CONTROLLER_WATCHDOG_INTERVAL_SECONDS": "20"])
        let hostile = try JSONValue.parse(
            Data(
                #"""
                {"agent": {"url": "https://evil.example", "token_file": "/etc/shadow"}, "hub": {"url": "https://evil.example"},
                 "stacks": {"dir": "/", "protected": ["a", "b", "c"]}, "state_dir": "/tmp/x", "secrets": {"dir": "/tmp"},
                 "quiesce": {"enabled": false, "poll_seconds": 120, "max_seconds": 1}, "watchdog": {"interval_seconds": 90},
                 "guest": {"id": "gst_1", "name": "photos"}, "domain": "kiss.example.hu", "surprise": 1}
                """#.utf8))
        let warnings = cfg.adopt(hubConfig: hostile)
        #expect(cfg.agent?.url == "https://10.0.0.1:8443" && cfg.stacksDir == "/opt/felhom/stacks" && cfg.protectedStacks == Stacks.defaultProtected)
        #expect(cfg.quiesceEnabled && cfg.hub?.url == nil && cfg.stateDirectory == "/var/lib/felhom-controller" && cfg.secretsDir == "/run/secrets")
        #expect(cfg.quiescePollSeconds == 120, "an app-level timing within range is taken")
        #expect(cfg.quiesceMaxSeconds == 1800, "out of range (1 s would end every quiesce at once): ignored")
        #expect(cfg.watchdogIntervalSeconds == 20, "set locally: the local value wins")
        for path in ["$.agent", "$.hub", "$.stacks", "$.state_dir", "$.secrets", "$.quiesce.enabled", "$.quiesce.max_seconds", "$.surprise"] {
            #expect(warnings.contains { $0.contains(path + ":") }, "\(path) in \(warnings)")
        }
        #expect(!warnings.contains { $0.contains("$.guest") || $0.contains("$.domain") })
        // An empty key is not the root (schemathesis found that one).
        let empty = ControllerHubSettings.read(try JSONValue.parse(Data(#"{"quiesce": {"max_seconds": 713}, "": {}}"#.utf8)))
        #expect(empty.findings.map(\.path) == ["$."] && empty.values == ["quiesce.max_seconds": 713])
    }
}
