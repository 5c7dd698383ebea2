import FelhomAPI
import FelhomCore
import FelhomHTTP
import FelhomHubClient
import Foundation
import Proxmox

/// `felhom-agent selftest hub`: the box's link to its hub, one verdict per check — enrollment,
/// TLS (the pin or CA the config names), a host report's round trip, a long poll the hub holds,
/// and the clock skew between box and hub (signed operations carry validity windows).
///
/// Never uses the enrollment token (it is one-time) and never prints a secret. The report it
/// posts is the agent's own view of the host (what `run` reports, without the records only the
/// running agent holds); while an agent runs (it holds `state_dir`), the round trip is an
/// authenticated control call instead, so the running agent's reports stay the hub's view.
public struct HubSelftest: Sendable {
    /// Largest clock difference that passes, in seconds.
    public static let maxSkewSeconds = 30.0
    /// How long the long-poll check asks the hub to hold the request.
    public var pollSeconds = 3

    let config: AgentConfig
    let pve: (any PVEAPI)?

    public init(config: AgentConfig, pve: (any PVEAPI)?) {
        self.config = config
        self.pve = pve
    }

    public func run() async -> Selftest.Report {
        var report = Selftest.Report(mode: "hub", target: config.hub?.url ?? "(no hub.url)")
        func add(_ name: String, _ ok: Bool, _ detail: String, since start: ContinuousClock.Instant) {
            let c = (ContinuousClock.now - start).components
            let ms = Int(c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000)
            report.checks.append(.init(name: name, ok: ok, detail: detail, milliseconds: ms))
        }
        var start = ContinuousClock.now
        guard let hub = config.hub else {
            add("hub configured", false, "the config has no hub section (hub.url)", since: start)
            return report
        }
        // 1. Enrollment: an identity, without spending the one-time token.
        let stateDir = config.stateDir ?? "/var/lib/felhom-agent"
        var identity = Agent.storedIdentity(stateDir: stateDir)
        if identity == nil, let key = hub.hostKey, let id = hub.hostID { identity = Agent.Identity(hostID: id, key: key.reveal()) }
        if let identity {
            add("enrolled", true, "host \(identity.hostID)", since: start)
        } else if hub.enrollmentToken != nil {
            add(
                "enrolled", false, "not yet: the enrollment token is used by the first `felhom-agent run` (or bootstrap); it is not spent here",
                since: start)
        } else {
            add("enrolled", false, "no \(stateDir)/host.json and no hub.host_key/hub.host_id", since: start)
        }

        // 2. TLS as configured, and the hub's clock.
        start = ContinuousClock.now
        let trust: TLSTrust
        do { trust = try config.hubTrust() } catch {
            add("TLS", false, "\(error)", since: start)
            return report
        }
        let url = URL(string: hub.url)
        let plain = url?.scheme == "http"
        var clock: (health: Health, hubDate: Date?, sent: Date, answered: Date)?
        do {
            clock = try await HubClient.healthAndClock(url: hub.url, trust: trust)
            let how: String
            switch trust {
            case .pinnedLeafSHA256: how = "the hub's certificate matches hub.fingerprint \(hub.fingerprint ?? "")"
            case .caFile(let f): how = "the hub's certificate verifies against \(f)"
            default: how = plain ? "plain HTTP (loopback only)" : "the hub's certificate verifies against the system CAs"
            }
            let loopbackOnly = !plain || HTTPEndpoint.isLoopback(url?.host ?? "")
            add(
                "TLS", loopbackOnly, loopbackOnly ? how + " (hub \(clock?.health.version ?? "?"))" : "plain HTTP to a remote hub: use https://",
                since: start)
        } catch {
            add("TLS", false, "GET /healthz: \(error)", since: start)
        }

        // 3. A report's round trip (or, while an agent runs, an authenticated control call).
        start = ContinuousClock.now
        guard let identity, clock != nil else {
            add("report round trip", false, "skipped: needs an enrolled host and a reachable hub", since: start)
            add("long poll", false, "skipped: needs an enrolled host and a reachable hub", since: start)
            addSkew(clock, to: &report)
            return report
        }
        let client: HubClient
        do { client = try HubClient(url: hub.url, key: Secret(identity.key), trust: trust, timeout: .seconds(Int64(pollSeconds + 30))) } catch {
            add("report round trip", false, "\(error)", since: start)
            return report
        }
        var generation: Int64?
        let agentRunning = FileManager.default.fileExists(atPath: stateDir) && StateDirLock.isHeld(stateDir: stateDir)
        do {
            if !agentRunning, let pve,
                let hostReport = try await HostObserver(pve: pve, node: config.pve.node).report(
                    agentVersion: FelhomVersion.current, journal: nil, now: Date())
            {
                let envelope = try await client.postHostReport(hostReport)
                generation = envelope.desiredGeneration
                add(
                    "report round trip", true,
                    "POST /api/v1/host-report with \(hostReport.guests.count) guest(s): the hub answered (desired generation \(envelope.desiredGeneration), poll every \(envelope.pollIntervalSeconds) s)",
                    since: start)
            } else {
                let envelope = try await client.control(after: nil, wait: 0)
                generation = envelope.desiredGeneration
                add(
                    "report round trip", true,
                    agentRunning
                        ? "the running agent reports; GET /api/v1/control with the host key answered (desired generation \(envelope.desiredGeneration))"
                        : "the node status could not be read for a report; GET /api/v1/control with the host key answered", since: start)
            }
        } catch {
            add("report round trip", false, "\(error)", since: start)
        }

        // 4. The long poll: the hub (and anything between) holds it until a new generation or the wait.
        start = ContinuousClock.now
        do {
            let envelope = try await client.control(after: generation ?? 0, wait: pollSeconds)
            let elapsed = (ContinuousClock.now - start).components
            let held = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            if let generation, envelope.desiredGeneration != generation {
                add("long poll", true, "answered at once with a new generation \(envelope.desiredGeneration)", since: start)
            } else if held >= Double(pollSeconds) - 0.5 {
                add("long poll", true, String(format: "held %.1f s of the %d s asked", held, pollSeconds), since: start)
            } else {
                add(
                    "long poll", false,
                    String(
                        format: "answered after %.1f s of the %d s asked: something between box and hub does not hold long polls", held, pollSeconds),
                    since: start)
            }
        } catch {
            add("long poll", false, "\(error)", since: start)
        }
        addSkew(clock, to: &report)
        return report
    }

    func addSkew(_ clock: (health: Health, hubDate: Date?, sent: Date, answered: Date)?, to report: inout Selftest.Report) {
        guard let clock else {
            report.checks.append(.init(name: "clock skew", ok: false, detail: "skipped: the hub did not answer", milliseconds: 0))
            return
        }
        guard let hubDate = clock.hubDate else {
            report.checks.append(.init(name: "clock skew", ok: false, detail: "the hub's answer has no Date header", milliseconds: 0))
            return
        }
        // The Date header has whole seconds: compare with the middle of the request.
        let mid = clock.sent.addingTimeInterval(clock.answered.timeIntervalSince(clock.sent) / 2)
        let skew = mid.timeIntervalSince(hubDate)
        let ok = abs(skew) <= Self.maxSkewSeconds + 1
        report.checks.append(
            .init(
                name: "clock skew", ok: ok,
                detail: String(
                    format: "this box is %.0f s %@ the hub%@", abs(skew), skew >= 0 ? "ahead of" : "behind",
                    ok ? "" : " (more than 30 s: fix NTP; signed operations have validity windows)"),
                milliseconds: 0))
    }
}
