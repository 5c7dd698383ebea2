import FelhomCore
import Foundation
import Proxmox
import Synchronization

/// The host's hardware in its report (issue 20): SMART per disk (`smartctl --scan`, then
/// `smartctl --json=c --all DEVICE`) and temperatures (`sensors -j`), through the fenced root
/// backend, each with a timeout; read at most every `intervalSeconds`, the last reading reported in
/// between. Events, with what was seen last kept in `state_dir/hardware-watch.json` (a restart does
/// not say them again):
/// - `disk_failing` (critical) when a disk's SMART health turns FAILED, or (warning) when its
///   reallocated or pending sector count grows;
/// - `overheating` (warning) when a CPU reaches `cpuHighCelsius` or a disk `diskHighCelsius`, said
///   once; it is said again only after the reading fell `hysteresisCelsius` below the mark.
public final class HardwareMonitor: Sendable {
    public struct Settings: Sendable {
        public var intervalSeconds: Double = 600
        public var timeoutSeconds: Double = 10
        public var cpuHighCelsius: Double = 90
        public var diskHighCelsius: Double = 60
        public var otherHighCelsius: Double = 95
        public var hysteresisCelsius: Double = 10
        public init() {}
    }

    /// What the watch remembers between readings.
    struct WatchState: Codable, Equatable {
        var failed: Set<String> = []
        var reallocated: [String: Int64] = [:]
        var pending: [String: Int64] = [:]
        var hot: Set<String> = []
    }

    let backend: PrivilegedBackend
    let settings: Settings
    let path: String
    let state: Mutex<(watch: WatchState, last: HardwareHealth?)>

    public init(backend: PrivilegedBackend, stateDir: String, settings: Settings = Settings()) {
        self.backend = backend
        self.settings = settings
        path = stateDir + "/hardware-watch.json"
        let saved = (try? Data(contentsOf: URL(fileURLWithPath: stateDir + "/hardware-watch.json"))).flatMap {
            try? JSONDecoder().decode(WatchState.self, from: $0)
        }
        state = Mutex((saved ?? WatchState(), nil))
    }

    /// The reading for this report (a fresh one when the last is older than the interval) and the
    /// events it raises.
    public func observe(now: Date) async -> (HardwareHealth, [AgentEvent]) {
        if let last = state.withLock({ $0.last }), now.timeIntervalSince(last.readAt) < settings.intervalSeconds { return (last, []) }
        let health = await Self.read(backend: backend, timeout: settings.timeoutSeconds, now: now)
        let (events, changed) = state.withLock { s -> ([AgentEvent], Bool) in
            let (next, events) = Self.watch(s.watch, health, settings)
            let changed = next != s.watch
            s.watch = next
            s.last = health
            return (events, changed)
        }
        if changed, let data = try? JSONEncoder().encode(state.withLock { $0.watch }) {
            try? DurableFile.write([UInt8](data), to: path, mode: 0o600)
        }
        return (health, events)
    }

    /// One reading: every tool bounded by `timeout`; what fails is an entry of `errors`.
    static func read(backend: PrivilegedBackend, timeout: Double, now: Date) async -> HardwareHealth {
        var health = HardwareHealth(readAt: now)
        func note(_ what: String, _ error: any Error) {
            let text = (error as? PrivilegedError)?.message ?? "\(error)"
            health.errors.append(String("\(what): \(text)".prefix(300)))
        }
        do {
            let devices = try await bounded(timeout) { try await backend.smartDevices() }
            for device in devices.prefix(64) {
                do {
                    let r = try await bounded(timeout) { try await backend.smart(device: device) }
                    let failed = r.passed == false || r.nvmeCritical || (r.exitStatus & 0b1000) != 0
                    health.disks.append(
                        .init(
                            device: r.device, model: r.model, serial: r.serial, health: failed ? .failed : (r.passed == true ? .passed : .unknown),
                            reallocatedSectors: r.reallocatedSectors, pendingSectors: r.pendingSectors, temperatureCelsius: r.temperatureCelsius,
                            powerOnHours: r.powerOnHours.map(Int64.init)))
                } catch { note("smartctl \(device)", error) }
            }
        } catch { note("smartctl --scan", error) }
        do {
            let readings = try await bounded(timeout) { try await backend.sensors() }
            for r in readings where r.key.hasPrefix("temp") {
                let chip = r.chip.lowercased()
                let kind =
                    ["coretemp", "k10temp", "zenpower", "cpu_thermal"].contains(where: chip.hasPrefix)
                    ? "cpu" : (["nvme", "drivetemp"].contains(where: chip.hasPrefix) ? "disk" : "other")
                health.temperatures.append(.init(sensor: "\(r.chip)/\(r.label)", celsius: r.value, kind: kind))
            }
        } catch { note("sensors", error) }
        return health
    }

    /// The pure watch: the next state and the events (`disk_failing`, `overheating`).
    static func watch(_ before: WatchState, _ health: HardwareHealth, _ settings: Settings) -> (WatchState, [AgentEvent]) {
        var s = before
        var events: [AgentEvent] = []
        for d in health.disks {
            let key = d.serial.map { "serial:" + $0 } ?? d.device
            var data: [String: JSONValue] = ["device": .string(d.device)]
            if let m = d.model { data["model"] = .string(m) }
            if let n = d.serial { data["serial"] = .string(n) }
            if d.health == .failed {
                if !s.failed.contains(key) {
                    s.failed.insert(key)
                    data["reason"] = "SMART overall health: FAILED"
                    events.append(AgentEvent(type: "disk_failing", severity: .critical, data: data))
                }
            } else if d.health == .passed {
                s.failed.remove(key)
            }
            for (name, value, memory) in [
                ("reallocated sectors", d.reallocatedSectors, \WatchState.reallocated), ("pending sectors", d.pendingSectors, \WatchState.pending),
            ] {
                guard let value else { continue }
                let previous = s[keyPath: memory][key]
                s[keyPath: memory][key] = value
                guard let previous, value > previous, d.health != .failed || before.failed.contains(key) else { continue }
                var grown = data
                grown["reason"] = .string("\(name): \(previous) → \(value)")
                grown["count"] = .int(value)
                events.append(AgentEvent(type: "disk_failing", severity: .warning, data: grown))
            }
        }
        var readings = health.temperatures.map { ($0.sensor, $0.celsius, $0.kind) }
        readings += health.disks.compactMap { d in d.temperatureCelsius.map { ("disk:" + d.device, Double($0), "disk") } }
        for (sensor, celsius, kind) in readings {
            let high = kind == "cpu" ? settings.cpuHighCelsius : (kind == "disk" ? settings.diskHighCelsius : settings.otherHighCelsius)
            if celsius >= high {
                if !s.hot.contains(sensor) {
                    s.hot.insert(sensor)
                    events.append(
                        AgentEvent(
                            type: "overheating", severity: .warning,
                            data: ["sensor": .string(sensor), "kind": .string(kind), "celsius": .double(celsius), "threshold": .double(high)]))
                }
            } else if celsius < high - settings.hysteresisCelsius {
                s.hot.remove(sensor)
            }
        }
        return (s, events)
    }

    struct TimedOut: Error, CustomStringConvertible {
        var seconds: Double
        var description: String { "timed out after \(Int(seconds)) s" }
    }

    /// `body`, or ``TimedOut`` after `seconds` (the command is cancelled, which ends the child).
    static func bounded<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                throw TimedOut(seconds: seconds)
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw TimedOut(seconds: seconds) }
            return first
        }
    }
}
