import FelhomCore
import FelhomHTTP
import Foundation
import Proxmox
import Synchronization

/// The Cloudflare tunnel on the host (seed review S4/S5, issue 20): `cloudflared` runs as the
/// systemd service `felhom-cloudflared.service` with the tunnel's connector token (never a
/// Cloudflare API token: those stay on the hub). Each report probes its metrics server's `/ready`
/// endpoint: 200 with ready connections is `running`; 200 without or 503 is `degraded`; a refused
/// connection is `stopped`; anything else `unknown` — each with the reason. While not running it
/// restarts the service through the fenced backend with back-off (30 s doubling to 30 min), and
/// raises `tunnel_down` / `tunnel_recovered` on the transitions.
public final class TunnelSupervisor: Sendable {
    public struct Settings: Sendable {
        /// cloudflared's `--metrics` address (host:port, loopback).
        public var metrics: String = "127.0.0.1:20241"
        public var unit: String = "felhom-cloudflared.service"
        public var probeTimeoutSeconds: Double = 5
        public var firstBackoffSeconds: Double = 30
        public var maxBackoffSeconds: Double = 1800
        public init() {}
    }

    public struct Probe: Sendable, Equatable {
        public var status: HostReport.TunnelStatus
        public var reason: String
    }

    struct State {
        var last: HostReport.TunnelStatus?
        var down = false
        var nextRestart: Date?
        var backoff: Double = 0
        var restarts = 0
        var tokenCheckedAt: Date?
    }

    /// How often the box asks the hub whether its connector token changed (the operator replaced it).
    static let tokenCheckSeconds: Double = 900

    /// Whether a look at the hub's token is due (at start, then every 15 minutes); marks it done.
    func tokenCheckDue(now: Date) -> Bool {
        state.withLock { s in
            guard s.tokenCheckedAt.map({ now.timeIntervalSince($0) >= Self.tokenCheckSeconds }) ?? true else { return false }
            s.tokenCheckedAt = now
            return true
        }
    }

    /// Brings `state_dir/tunnel.env` to the hub's token (`fetch`: nil when the hub has none, which
    /// leaves the file alone: the tunnel keeps running on the token it has) and restarts the
    /// service when the token changed. Answers a line for the log, or nil when nothing changed.
    public func syncToken(stateDir: String, fetch: () async throws -> String?) async -> String? {
        let token: String?
        do { token = try await fetch() } catch { return "tunnel: cannot read the connector token from the hub: \(error)" }
        guard let token else { return nil }
        do throws(ConfigError) {
            guard try TunnelTokenFile.store(token, stateDir: stateDir) else { return nil }
        } catch {
            return "tunnel: \(error.message); \(stateDir)/\(TunnelTokenFile.name) left as it was"
        }
        do { try await backend.restartUnit(settings.unit) } catch {
            return "tunnel: new connector token written to \(stateDir)/\(TunnelTokenFile.name); restarting \(settings.unit) failed: \(error)"
        }
        return "tunnel: new connector token from the hub written to \(stateDir)/\(TunnelTokenFile.name); \(settings.unit) restarted"
    }

    let settings: Settings
    let backend: PrivilegedBackend
    let state = Mutex(State())

    public init(settings: Settings, backend: PrivilegedBackend) {
        self.settings = settings
        self.backend = backend
    }

    /// One look at the tunnel: the status for the report, and the events to post.
    public func check(now: Date) async -> (Probe, [AgentEvent]) {
        let probe = await Self.probe(metrics: settings.metrics, timeout: settings.probeTimeoutSeconds)
        var events: [AgentEvent] = []
        let restartDue = state.withLock { s -> Bool in
            defer { s.last = probe.status }
            switch probe.status {
            case .running:
                if s.down {
                    events.append(
                        AgentEvent(
                            type: "tunnel_recovered", severity: .info,
                            data: ["unit": .string(settings.unit), "restarts": .int(Int64(s.restarts))]))
                }
                s.down = false
                s.backoff = 0
                s.nextRestart = nil
                s.restarts = 0
                return false
            case .stopped, .degraded:
                if !s.down {
                    s.down = true
                    events.append(
                        AgentEvent(
                            type: "tunnel_down", severity: .warning,
                            data: ["unit": .string(settings.unit), "status": .string(probe.status.rawValue), "reason": .string(probe.reason)]))
                }
                guard s.nextRestart.map({ now >= $0 }) ?? true else { return false }
                s.backoff = s.backoff == 0 ? settings.firstBackoffSeconds : min(settings.maxBackoffSeconds, s.backoff * 2)
                s.nextRestart = now.addingTimeInterval(s.backoff)
                s.restarts += 1
                return true
            case .unknown:
                return false
            }
        }
        if restartDue {
            do { try await backend.restartUnit(settings.unit) } catch {
                events.append(
                    AgentEvent(
                        type: "tunnel_down", severity: .warning,
                        data: [
                            "unit": .string(settings.unit), "status": .string(probe.status.rawValue), "reason": .string("restart failed: \(error)"),
                        ]
                    ))
            }
        }
        return (probe, events)
    }

    /// `GET http://METRICS/ready`: cloudflared answers `{"status":200,"readyConnections":N,…}` (503
    /// while it has no connection to Cloudflare's edge).
    static func probe(metrics: String, timeout: Double) async -> Probe {
        let parts = metrics.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port), HTTPEndpoint.isLoopback(String(parts[0])) else {
            return Probe(status: .unknown, reason: "tunnel.metrics '\(metrics)' is not a loopback host:port")
        }
        let transport = NIOHTTPTransport(
            host: String(parts[0]), port: port, useTLS: false, trust: .systemDefault, requestTimeout: .milliseconds(Int64(timeout * 1000)))
        do {
            let r = try await transport.send(HTTPRequestSpec(method: "GET", target: "/ready", headers: [], body: nil))
            let ready = (try? JSONValue.parse(r.body))?["readyConnections"]?.lenientInt
            switch (r.status, ready) {
            case (200, let n?) where n > 0: return Probe(status: .running, reason: "\(n) connection(s) to Cloudflare")
            case (200, _), (503, _):
                return Probe(status: .degraded, reason: "cloudflared runs but has no connection to Cloudflare (/ready \(r.status))")
            default: return Probe(status: .unknown, reason: "/ready answered \(r.status)")
            }
        } catch {
            let text = "\(error)"
            if text.lowercased().contains("refused") {
                return Probe(status: .stopped, reason: "nothing listens on \(metrics): cloudflared is not running")
            }
            return Probe(status: .unknown, reason: "cannot probe \(metrics)/ready: \(String(text.prefix(200)))")
        }
    }
}
