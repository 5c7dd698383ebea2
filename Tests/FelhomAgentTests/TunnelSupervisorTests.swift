import FelhomCore
import Foundation
import Proxmox
import Synchronization
import Testing

@testable import FelhomAgent

/// The tunnel's supervision against a fake `cloudflared` (scripts/interop/fake_cloudflared.py: its
/// `/ready` endpoint over real HTTP); `systemctl restart` starts it again, as systemd would.
@Suite struct TunnelSupervisorTests {
    /// `systemctl restart felhom-cloudflared.service`: stops the fake (if it runs) and starts it.
    final class Systemd: CommandRunner {
        let metrics: String
        let control: String
        let process = Mutex<Process?>(nil)
        let restarts = Mutex(0)
        init(metrics: String, control: String) {
            self.metrics = metrics
            self.control = control
        }
        func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
            guard executable == "systemctl", arguments == ["restart", "felhom-cloudflared.service"] else {
                return CommandResult(exitCode: 1, stdout: "", stderr: "not here")
            }
            stop()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("scripts/interop/fake_cloudflared.py").path
            p.arguments = [script, metrics, control]
            try p.run()
            process.withLock { $0 = p }
            restarts.withLock { $0 += 1 }
            // Until it listens (systemd's Type=simple does not wait either; the next probe would).
            // Up to 120 s: Python starting on a loaded 2-core machine took more than 5 s in CI, and
            // beside a build and a soak on the same cores more than 30 s.
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline {
                // Answered (running or degraded): a probe that timed out says `unknown`, not "up".
                let status = await TunnelSupervisor.probe(metrics: metrics, timeout: 5).status
                if status == .running || status == .degraded { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            return CommandResult(exitCode: 0, stdout: "")
        }
        func stop() {
            guard
                let p = process.withLock({ p -> Process? in
                    defer { p = nil }
                    return p
                })
            else { return }
            // SIGKILL: a child of this test process may inherit a signal mask that blocks SIGTERM.
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            for _ in 0..<100 where p.isRunning { usleep(50_000) }
        }
    }

    static func freePort() -> Int { Int.random(in: 30000...60000) }

    /// Records `systemctl` calls without running anything.
    final class Recorded: CommandRunner {
        let calls = Mutex<[[String]]>([])
        func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
            calls.withLock { $0.append([executable] + arguments) }
            return CommandResult(exitCode: 0, stdout: "")
        }
    }

    @Test func theHubsTokenIsWritten0600AndHostileTextIsRefused() async throws {
        let dir = NSTemporaryDirectory() + "tunnel-token-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let systemd = Recorded()
        let tunnel = TunnelSupervisor(settings: .init(), backend: PrivilegedBackend(runner: systemd))
        let token = Data(#"{"a":"0123456789abcdef","t":"6ff42ae2-765d-4adf-8112-31c55c1551ef","s":"c2VjcmV0"}"#.utf8).base64EncodedString()
        let path = dir + "/" + TunnelTokenFile.name

        // Due at start, then not again for 15 minutes.
        let t0 = Date()
        #expect(tunnel.tokenCheckDue(now: t0) && !tunnel.tokenCheckDue(now: t0.addingTimeInterval(60)))
        #expect(tunnel.tokenCheckDue(now: t0.addingTimeInterval(TunnelSupervisor.tokenCheckSeconds)))

        // A new token: written 0600, the service restarted.
        let line = await tunnel.syncToken(stateDir: dir) { token }
        #expect(line?.contains("restarted") == true && !(line ?? "").contains(token))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "TUNNEL_TOKEN=\(token)\n")
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o600)
        #expect(systemd.calls.withLock { $0 } == [["systemctl", "restart", "felhom-cloudflared.service"]])
        // The same token, or none on the hub: nothing changes.
        #expect(await tunnel.syncToken(stateDir: dir) { token } == nil)
        #expect(await tunnel.syncToken(stateDir: dir) { nil } == nil)
        // A hostile hub adds a line to the service's environment: refused, the file as it was.
        let hostile = await tunnel.syncToken(stateDir: dir) { "x\nExecStart=/bin/sh" }
        #expect(hostile?.contains("characters a connector token does not have") == true, "\(hostile ?? "")")
        #expect(TunnelTokenFile.read(stateDir: dir) == token && systemd.calls.withLock { $0.count } == 1)
        // The hub unreachable: said, nothing touched.
        struct Down: Error {}
        #expect(await tunnel.syncToken(stateDir: dir) { throw Down() }?.contains("cannot read the connector token") == true)
        #expect(TunnelTokenFile.read(stateDir: dir) == token)
    }

    @Test func downRestartedRecoveredDegradedWithBackoff() async throws {
        let port = Self.freePort()
        let control = NSTemporaryDirectory() + "cloudflared-\(UUID().uuidString)"
        try "ready".write(toFile: control, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: control) }
        let systemd = Systemd(metrics: "127.0.0.1:\(port)", control: control)
        defer { systemd.stop() }
        var settings = TunnelSupervisor.Settings()
        settings.metrics = "127.0.0.1:\(port)"
        // The fake cloudflared is Python: on a loaded CI machine its answer took longer than the
        // default 5 s, the probe said `unknown` (no restart) and the restart count came out one short.
        settings.probeTimeoutSeconds = 60
        let tunnel = TunnelSupervisor(settings: settings, backend: PrivilegedBackend(runner: systemd))
        let t0 = Date()

        // Nothing listens: stopped, tunnel_down, restarted.
        var (probe, events) = await tunnel.check(now: t0)
        #expect(probe.status == .stopped && probe.reason.contains("cloudflared is not running"))
        #expect(events.map(\.type) == ["tunnel_down"] && systemd.restarts.withLock { $0 } == 1)
        // It came up: running, tunnel_recovered.
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(5))
        #expect(probe.status == .running && probe.reason == "4 connection(s) to Cloudflare")
        #expect(events.map(\.type) == ["tunnel_recovered"])
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(10))
        #expect(events.isEmpty, "no event without a transition")

        // Degraded (no edge connection): down once, restarted at once, then with back-off.
        try "degraded".write(toFile: control, atomically: true, encoding: .utf8)
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(20))
        #expect(probe.status == .degraded && events.map(\.type) == ["tunnel_down"] && systemd.restarts.withLock { $0 } == 2)
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(40))
        #expect(events.isEmpty && systemd.restarts.withLock { $0 } == 2, "within 30 s of the last restart: none")
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(51))
        #expect(systemd.restarts.withLock { $0 } == 3, "after the 30 s back-off: \(probe)")
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(100))
        #expect(systemd.restarts.withLock { $0 } == 3, "the back-off doubled to 60 s")
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(112))
        #expect(systemd.restarts.withLock { $0 } == 4, "\(probe)")

        // Connected again.
        try "ready".write(toFile: control, atomically: true, encoding: .utf8)
        (probe, events) = await tunnel.check(now: t0.addingTimeInterval(120))
        #expect(probe.status == .running && events.map(\.type) == ["tunnel_recovered"])
        #expect(events.first?.data["restarts"] == .int(3))
    }

    @Test func aMetricsAddressThatIsNotLoopbackIsRefused() async {
        let probe = await TunnelSupervisor.probe(metrics: "10.0.0.1:20241", timeout: 1)
        #expect(probe.status == .unknown && probe.reason.contains("not a loopback host:port"))
    }
}
