import ArgumentParser
import FelhomAPI
import FelhomCore
import FelhomHubClient
import Foundation
import Synchronization

/// `felhom bench-fleet`: N simulated agents against a running hub, publish → applied latency.
///
/// Each simulated agent is the agent's hub loop without Proxmox behind it: a real
/// ``HubClient`` with the host's own key that reports, long-polls `GET /api/v1/control`, reads
/// the published desired state when the generation moves, "applies" it at once (the in-process
/// host model) and reports the new `applied_generation`. The operator side publishes a change to
/// every host, round after round; the latency of a host is from the moment its publish is sent to
/// the moment its report showing that generation was acknowledged. Driven by `scripts/bench-fleet`.
struct BenchFleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-fleet",
        abstract: "Load test: N simulated agents long-poll a hub; prints publish → applied latency.",
        discussion: """
            Creates a customer and N hosts on the hub (operator key in FELHOM_OPERATOR_KEY), starts one \
            simulated agent per host (real long-polls, no Proxmox), then publishes a new desired state to every \
            host, --rounds times, --interval seconds apart (or until --duration seconds passed). Prints \
            `RESULT agents=N publishes=… applied=… p50=…ms p99=…ms max=…ms errors=…` and, with --hub-pid, the \
            hub's RSS and open file descriptors per round. Use against a hub whose report rate limit is off \
            (rate_limit_reports_per_minute: 0); scripts/bench-fleet starts one so.
            """)

    @Option(name: .long, help: "The hub's URL (http:// on loopback, or https://).") var hub: String
    @Option(name: .long, help: "Simulated agents (hosts).") var agents: Int = 1000
    @Option(name: .long, help: "Publish rounds (each publishes to every host).") var rounds: Int = 5
    @Option(name: .long, help: "Seconds between the starts of two rounds.") var interval: Double = 10
    @Option(name: .long, help: "Run rounds until this many seconds passed (overrides --rounds).") var duration: Double?
    @Option(name: .long, help: "Concurrent publish requests of the operator side.") var publishers: Int = 8
    @Option(name: .long, help: "The long-poll wait the agents ask for, seconds.") var wait: Int = 25
    @Option(name: .long, help: "The hub's process id: its RSS and open descriptors are sampled each round.") var hubPid: Int32?

    func validate() throws {
        guard agents >= 1, rounds >= 1, publishers >= 1, interval >= 0, wait >= 1 else {
            throw ValidationError("--agents, --rounds, --publishers and --wait must be at least 1, --interval not negative")
        }
    }

    func run() async throws {
        guard let key = ProcessInfo.processInfo.environment["FELHOM_OPERATOR_KEY"], !key.isEmpty else {
            throw ValidationError("set FELHOM_OPERATOR_KEY to the hub's operator key")
        }
        let operatorClient = try HubClient(url: hub, key: Secret(key))
        let customer = try await operatorClient.createCustomer(
            NewCustomer(name: "Fleet bench", email: "fleet@example.hu", domain: "fleet-\(UInt32.random(in: 0...UInt32.max)).example.hu"))
        print("creating \(agents) hosts…")
        var hosts: [(id: String, key: Secret)] = []
        for i in 0..<agents {
            let made = try await operatorClient.createHost(customerID: customer, name: "fleet-\(i)")
            hosts.append((made.id, made.apiKey))
            if (i + 1) % 250 == 0 { print("  \(i + 1) hosts") }
        }
        let book = LatencyBook()
        let hubURL = hub
        let waitSeconds = wait
        let fleetHosts = hosts
        let fleet = Task {
            await withTaskGroup(of: Void.self) { group in
                for (index, host) in fleetHosts.enumerated() {
                    group.addTask {
                        await SimulatedAgent(index: index, hostID: host.id, key: host.key, hubURL: hubURL, wait: waitSeconds)
                            .run(book: book)
                    }
                }
            }
        }
        // Every agent has reported and sits in a long-poll before the first publish.
        let ready = ContinuousClock.now
        while book.reporting < agents, ContinuousClock.now - ready < .seconds(120) { try await Task.sleep(for: .milliseconds(200)) }
        print("\(book.reporting) agents reporting and long-polling")
        if let hubPid { print(Self.sample(hubPid, label: "long-polls open")) }

        let started = ContinuousClock.now
        var round = 0
        while true {
            round += 1
            let roundStart = ContinuousClock.now
            try await publishAll(hosts: hosts, round: round, client: operatorClient, book: book)
            // Wait for this round's applies (bounded), then report it.
            let deadline = ContinuousClock.now + .seconds(60)
            while book.pending > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let summary = book.summary()
            print(
                "round \(round): published \(hosts.count), applied \(summary.applied)/\(summary.published) so far, "
                    + "p50 \(summary.p50) ms, p99 \(summary.p99) ms\(hubPid.map { ", " + Self.sample($0, label: "hub") } ?? "")")
            if let duration {
                if ContinuousClock.now - started >= .seconds(duration) { break }
            } else if round >= rounds {
                break
            }
            let next = roundStart + .seconds(interval)
            if next > ContinuousClock.now { try await Task.sleep(until: next, clock: .continuous) }
        }
        fleet.cancel()
        let s = book.summary()
        print(
            "RESULT agents=\(agents) publishes=\(s.published) applied=\(s.applied) p50=\(s.p50)ms p99=\(s.p99)ms max=\(s.max)ms "
                + "errors=\(book.errors)")
        if s.applied < s.published { throw ExitCode(1) }
    }

    /// Puts a changed desired state on every host and publishes it, `publishers` at a time.
    private func publishAll(hosts: [(id: String, key: Secret)], round: Int, client: HubClient, book: LatencyBook) async throws {
        let state = try DesiredState.decode(
            Data(
                #"{"guests":[{"vmid":100,"name":"apps","cpu":1,"memory_mb":\#(512 + 16 * (round % 16)),"disk_gb":8,"run_state":"running"}]}"#
                    .utf8))
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                guard next < hosts.count else { return }
                let (index, host) = (next, hosts[next])
                next += 1
                group.addTask {
                    _ = try await client.putDesired(hostID: host.id, state)
                    let sent = ContinuousClock.now
                    let generation = try await client.publishDesired(hostID: host.id)
                    book.published(host: index, generation: generation, at: sent)
                }
            }
            for _ in 0..<publishers { add() }
            while try await group.next() != nil { add() }
        }
    }

    /// `label: rss=… MiB (anon …, file …) fds=…` of a process, from /proc: the anonymous part is
    /// what the process allocated, the file-backed part its code and mapped files (SQLite's WAL index).
    static func sample(_ pid: Int32, label: String) -> String {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func mib(_ field: String) -> String {
            let kib = status.split(separator: "\n").first { $0.hasPrefix(field + ":") }
                .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }
            return kib.map { String($0 / 1024) } ?? "?"
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count).map(String.init) ?? "?"
        return "\(label): rss=\(mib("VmRSS")) MiB (anon \(mib("RssAnon")), file \(mib("RssFile"))) fds=\(fds)"
    }
}

/// One simulated agent: report, long-poll, read the desired state, apply at once, report.
struct SimulatedAgent: Sendable {
    let index: Int
    let hostID: String
    let key: Secret
    let hubURL: String
    let wait: Int

    func run(book: LatencyBook) async {
        guard let client = try? HubClient(url: hubURL, key: key, timeout: .seconds(wait + 30)) else { return }
        var report = Self.template
        var applied: Int64 = 0
        var reported = false
        while !Task.isCancelled {
            do {
                if !reported {
                    report.reportedAt = Date()
                    report.appliedGeneration = applied
                    _ = try await client.postHostReport(report)
                    reported = true
                    book.reporting(host: index)
                }
                let envelope = try await client.control(after: applied, wait: wait)
                guard envelope.desiredGeneration > applied else { continue }
                let (generation, _) = try await client.desired(hostID: hostID)
                applied = generation
                report.reportedAt = Date()
                report.appliedGeneration = applied
                _ = try await client.postHostReport(report)
                book.applied(host: index, generation: applied, at: ContinuousClock.now)
            } catch {
                if Task.isCancelled { return }
                book.error()
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// A small host report with no guests (what a fresh box sends).
    static let template: HostReport = {
        let json = #"""
            {"reported_at":"2026-12-01T00:00:00Z","agent_version":"0.1.0","host":{"cpu":0.05,"memory_total":17179869184,
            "memory_used":2147483648,"disk_total":107374182400,"disk_used":10737418240,"uptime":3600,"load":[0.1,0.1,0.1],
            "kernel":"6.8.12-4-pve","pve_version":"9.1.3"},"guests":[],"cloudflared":"running","storage_targets":[],"backups":[],
            "restore_tests":[],"pbs_snapshots":[],"audit_tail":[],"journal_in_flight":[]}
            """#
        // A fixed, valid document: decoding it cannot fail.
        return try! HostReport.decode(Data(json.utf8))
    }()
}

/// Publish and apply times per (host, generation), and the latency percentiles between them.
final class LatencyBook: Sendable {
    private struct State {
        var published: [Int64: ContinuousClock.Instant] = [:]
        var applied: [Int64: ContinuousClock.Instant] = [:]
        var reporting = Set<Int>()
        var errors = 0
    }
    private let state = Mutex(State())

    private static func slot(_ host: Int, _ generation: Int64) -> Int64 { Int64(host) << 32 | generation }

    /// A failed call of a simulated agent (it waits a second and goes on).
    func error() { state.withLock { $0.errors += 1 } }
    var errors: Int { state.withLock { $0.errors } }

    func reporting(host: Int) { state.withLock { _ = $0.reporting.insert(host) } }
    var reporting: Int { state.withLock { $0.reporting.count } }

    func published(host: Int, generation: Int64, at: ContinuousClock.Instant) {
        state.withLock { $0.published[Self.slot(host, generation)] = at }
    }

    func applied(host: Int, generation: Int64, at: ContinuousClock.Instant) {
        state.withLock { $0.applied[Self.slot(host, generation)] = at }
    }

    /// Publishes not yet seen applied.
    var pending: Int {
        state.withLock { s in s.published.keys.filter { s.applied[$0] == nil }.count }
    }

    /// Latency percentiles (ms) over every publish seen applied.
    func summary() -> (published: Int, applied: Int, p50: Int, p99: Int, max: Int) {
        state.withLock { s in
            let latencies = s.published.compactMap { slot, sent in s.applied[slot].map { $0 - sent } }.sorted()
            func ms(_ d: Duration?) -> Int { d.map { Int($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) } ?? 0 }
            func pct(_ p: Double) -> Duration? {
                latencies.isEmpty ? nil : latencies[min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)]
            }
            return (s.published.count, latencies.count, ms(pct(0.5)), ms(pct(0.99)), ms(latencies.last))
        }
    }
}
