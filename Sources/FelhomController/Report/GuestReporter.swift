import FelhomAPI
import FelhomCore
import FelhomHTTP
import FelhomHubClient
import Foundation
import Logging
import ServiceLifecycle
import Subprocess

/// What `docker stats --no-stream` says about one container.
public struct ContainerStats: Sendable, Equatable {
    public var name: String
    /// CPU use in percent of one core (`CPUPerc`).
    public var cpuPercent: Double
    /// Memory in use, in bytes (the first half of `MemUsage`).
    public var memoryBytes: Int64
    /// Docker's restart count of the container (restart policy), from `docker inspect`.
    public var restartCount: Int

    public init(name: String, cpuPercent: Double, memoryBytes: Int64, restartCount: Int = 0) {
        self.name = name
        self.cpuPercent = cpuPercent
        self.memoryBytes = memoryBytes
        self.restartCount = restartCount
    }

    /// `docker inspect` output (a JSON array): container name → `RestartCount`.
    public static func restartCounts(inspectJSON output: String) -> [String: Int] {
        guard let list = (try? JSONValue.parse(Data(output.utf8)))?.arrayValue else { return [:] }
        var out: [String: Int] = [:]
        for c in list {
            guard let name = c["Name"]?.stringValue else { continue }
            let n: Int
            switch c["RestartCount"] {
            case .int(let v)?: n = Int(v)
            case .double(let v)?: n = Int(v)
            default: n = 0
            }
            out[name.hasPrefix("/") ? String(name.dropFirst()) : name] = n
        }
        return out
    }

    /// Parses `docker stats --no-stream --format '{{json .}}'`: one object per line.
    public static func parse(_ output: String) -> [ContainerStats] {
        output.split(separator: "\n").compactMap { line in
            guard let value = try? JSONValue.parse(Data(line.utf8)), let name = value["Name"]?.stringValue else { return nil }
            let cpu = Double((value["CPUPerc"]?.stringValue ?? "").replacingOccurrences(of: "%", with: "")) ?? 0
            let usage = (value["MemUsage"]?.stringValue ?? "").split(separator: "/").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            return ContainerStats(name: name, cpuPercent: cpu, memoryBytes: bytes(usage) ?? 0)
        }
    }

    /// `1.5MiB`, `512kB`, `2GiB`, `0B` → bytes.
    static func bytes(_ text: String) -> Int64? {
        let units: [(String, Double)] = [
            ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776), ("kB", 1e3), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9),
            ("TB", 1e12),
            ("B", 1),
        ]
        for (unit, factor) in units where text.hasSuffix(unit) {
            guard let n = Double(text.dropLast(unit.count)) else { return nil }
            return Int64(n * factor)
        }
        return nil
    }
}

/// Builds the guest report (SPEC §2) from the stacks, their containers and the settings, and sends
/// it to the hub every interval with the guest key; adopts the hub's interval and backs off on errors.
public struct GuestReporter: Sendable {
    let stacks: Stacks
    let stateDir: String
    let stats: @Sendable () async -> [ContainerStats]
    let restarts: StackRestarts

    /// `restarts`: the watchdog's start counts (the report adds Docker's restart counts).
    public init(
        stacks: Stacks, stateDir: String, stats: @escaping @Sendable () async -> [ContainerStats] = GuestReporter.dockerStats,
        restarts: StackRestarts = StackRestarts()
    ) {
        self.stacks = stacks
        self.stateDir = stateDir
        self.stats = stats
        self.restarts = restarts
    }

    /// `docker stats --no-stream` for every running container (empty when it cannot be read).
    public static let dockerStats: @Sendable () async -> [ContainerStats] = {
        guard
            let result = try? await Subprocess.run(
                .name("docker"), arguments: ["stats", "--no-stream", "--format", "{{json .}}"], output: .string(limit: 8 << 20),
                error: .discarded), result.terminationStatus.isSuccess
        else { return [] }
        var stats = ContainerStats.parse(result.standardOutput)
        guard !stats.isEmpty,
            let inspect = try? await Subprocess.run(
                .name("docker"), arguments: Arguments(["inspect"] + stats.map(\.name)), output: .string(limit: 32 << 20), error: .discarded),
            inspect.terminationStatus.isSuccess
        else { return stats }
        let counts = ContainerStats.restartCounts(inspectJSON: inspect.standardOutput ?? "")
        for i in stats.indices { stats[i].restartCount = counts[stats[i].name] ?? 0 }
        return stats
    }

    /// The report as of now.
    public func report(now: Date = Date()) async throws(ControllerError) -> GuestReport {
        let statuses = try await stacks.list()
        let usage = await stats()
        var reportStacks: [GuestReport.Stack] = []
        var telemetry: [JSONValue] = []
        var issues: [JSONValue] = []
        for status in statuses {
            guard let project = Stacks.projectName(folder: status.name) else { continue }
            let state: GuestReport.Stack.State =
                switch status.state {
                case .running: .running
                case .partial: .partial
                case .stopped, .notDeployed: .stopped
                }
            reportStacks.append(GuestReport.Stack(name: project, state: state, protected: status.protected))
            let containers = try await stacks.runtime.containers(project: project)
            let mine = usage.filter { s in containers.contains { $0.name == s.name } }
            telemetry.append(
                .object([
                    "stack": .string(project), "containers": .int(Int64(containers.count)),
                    "cpu_percent": .double((mine.map(\.cpuPercent).reduce(0, +) * 100).rounded() / 100),
                    "memory_bytes": .int(mine.map(\.memoryBytes).reduce(0, +)),
                    "restarts": .int(Int64(mine.map(\.restartCount).reduce(0, +) + restarts.of(status.name))),
                ]))
            for c in containers {
                if c.state == "restarting" {
                    issues.append(.object(["stack": .string(project), "container": .string(c.name), "kind": "restart_loop"]))
                } else if c.state == "exited" && c.exitCode != 0 {
                    issues.append(
                        .object([
                            "stack": .string(project), "container": .string(c.name), "kind": "exited_nonzero", "exit_code": .int(Int64(c.exitCode)),
                        ]))
                }
            }
        }
        let settings = try ControllerSettings.load(stateDir: stateDir)
        let paths: [JSONValue] = settings.storagePaths.map { p in
            .object([
                "path": .string(p.path), "label": .string(p.label), "default": .bool(p.isDefault), "schedulable": .bool(p.schedulable),
                "disconnected": .bool(p.disconnectedAt != nil),
            ])
        }
        return GuestReport(
            reportedAt: now, controllerVersion: FelhomVersion.current, stacks: reportStacks, telemetry: telemetry, logIssues: issues,
            storagePaths: paths)
    }
}

/// Sends a guest report every interval (the hub's `poll_interval_seconds`, clamped to 30…3600 s);
/// after a failure it retries sooner (5 s doubling, capped by the interval) and says once that the
/// hub is unreachable, and once that it is reachable again.
public struct GuestReportService: Service {
    let reporter: GuestReporter
    let hub: HubClient
    let events: ControllerEvents?
    let logger: Logger

    /// `events`, when given, sends what waits after each report the hub took.
    public init(reporter: GuestReporter, hub: HubClient, events: ControllerEvents? = nil, logger: Logger) {
        self.reporter = reporter
        self.hub = hub
        self.events = events
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var interval = 60
            var retry = 5
            var failing = false
            while !Task.isCancelled {
                var wait = interval
                do {
                    let envelope = try await hub.postGuestReport(try await reporter.report())
                    interval = min(3600, max(30, envelope.pollIntervalSeconds))
                    wait = interval
                    retry = 5
                    if failing { logger.notice("report: the hub is reachable again") }
                    failing = false
                    await events?.flush()
                } catch {
                    if !failing { logger.warning("report: cannot report to the hub: \(error)") }
                    failing = true
                    wait = min(retry, interval)
                    retry = min(retry * 2, 300)
                }
                try await Task.sleep(for: .seconds(wait))
            }
        }
    }
}
