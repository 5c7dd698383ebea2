import FelhomCore
import Foundation
import Proxmox
import Testing

@testable import FelhomAgent

/// The hardware watch: `disk_failing` and `overheating` once per change, with hysteresis, kept
/// across restarts; readings bounded by a timeout.
@Suite struct HardwareMonitorTests {
    static let settings = HardwareMonitor.Settings()

    func disk(_ health: HardwareHealth.Disk.Health, reallocated: Int64 = 0, temp: Int = 35) -> HardwareHealth.Disk {
        .init(
            device: "/dev/sda", model: "ST3000DM001", serial: "Z500", health: health, reallocatedSectors: reallocated, pendingSectors: 0,
            temperatureCelsius: temp)
    }

    @Test func aFailingDiskIsSaidOnceAndGrowingCountsAgain() {
        var s = HardwareMonitor.WatchState()
        var events: [AgentEvent]
        (s, events) = HardwareMonitor.watch(s, HardwareHealth(disks: [disk(.passed)], readAt: Date()), Self.settings)
        #expect(events.isEmpty, "the first reading is the baseline")
        (s, events) = HardwareMonitor.watch(s, HardwareHealth(disks: [disk(.passed, reallocated: 8)], readAt: Date()), Self.settings)
        #expect(events.map(\.type) == ["disk_failing"] && events[0].severity == .warning)
        #expect(events[0].data["reason"] == "reallocated sectors: 0 → 8")
        (s, events) = HardwareMonitor.watch(s, HardwareHealth(disks: [disk(.failed, reallocated: 8)], readAt: Date()), Self.settings)
        #expect(events.map(\.type) == ["disk_failing"] && events[0].severity == .critical)
        (s, events) = HardwareMonitor.watch(s, HardwareHealth(disks: [disk(.failed, reallocated: 8)], readAt: Date()), Self.settings)
        #expect(events.isEmpty, "said once")
    }

    @Test func overheatingHasHysteresis() {
        func cpu(_ c: Double) -> HardwareHealth {
            HardwareHealth(temperatures: [.init(sensor: "coretemp-isa-0000/Package id 0", celsius: c, kind: "cpu")], readAt: Date())
        }
        var s = HardwareMonitor.WatchState()
        var seen: [Int] = []
        for (i, c) in [70.0, 91, 95, 85, 81, 92, 79, 90].enumerated() {
            let (next, events) = HardwareMonitor.watch(s, cpu(c), Self.settings)
            s = next
            if !events.isEmpty { seen.append(i) }
        }
        #expect(seen == [1, 7], "raised at 91; not again at 92 (it never fell below 80); again at 90 after 79")
        let (_, hot) = HardwareMonitor.watch(
            HardwareMonitor.WatchState(), HardwareHealth(disks: [disk(.passed, temp: 61)], readAt: Date()), Self.settings)
        #expect(hot.map(\.type) == ["overheating"] && hot[0].data["threshold"] == .double(60))
    }

    /// Answers the fenced commands from fixtures; `hang` never answers sensors.
    struct Box: CommandRunner {
        var smart: String
        var hang = false
        func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
            switch executable {
            case "smartctl" where arguments.first == "--scan":
                return CommandResult(
                    exitCode: 0, stdout: #"{"json_format_version":[1,0],"devices":[{"name":"/dev/sda","type":"sat","protocol":"ATA"}]}"#)
            case "smartctl": return CommandResult(exitCode: 0, stdout: smart)
            case "sensors":
                if hang { try await Task.sleep(for: .seconds(60)) }
                return CommandResult(exitCode: 0, stdout: #"{"coretemp-isa-0000":{"Adapter":"ISA adapter","Package id 0":{"temp1_input":97.0}}}"#)
            default: return CommandResult(exitCode: 1, stdout: "", stderr: "not here")
            }
        }
    }

    static let failing = """
        {"json_format_version":[1,0],"smartctl":{"exit_status":8},"device":{"name":"/dev/sda","type":"sat","protocol":"ATA"},\
        "model_name":"ST3000DM001","serial_number":"Z500","smart_status":{"passed":false},\
        "ata_smart_attributes":{"table":[{"id":5,"raw":{"value":1975}},{"id":197,"raw":{"value":8}}]},"temperature":{"current":32}}
        """

    @Test func aReadingReportsAndARestartDoesNotRepeat() async throws {
        let dir = NSTemporaryDirectory() + "hw-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let monitor = HardwareMonitor(backend: PrivilegedBackend(runner: Box(smart: Self.failing)), stateDir: dir)
        let (health, events) = await monitor.observe(now: Date())
        #expect(health.disks.first?.health == .failed && health.disks.first?.reallocatedSectors == 1975)
        #expect(health.temperatures.first?.kind == "cpu" && health.errors.isEmpty)
        #expect(Set(events.map(\.type)) == ["disk_failing", "overheating"])
        // Within the interval: the last reading, no events.
        let (again, none) = await monitor.observe(now: Date().addingTimeInterval(60))
        #expect(again == health && none.isEmpty)
        // A restarted agent remembers what it said.
        let restarted = HardwareMonitor(backend: PrivilegedBackend(runner: Box(smart: Self.failing)), stateDir: dir)
        #expect(await restarted.observe(now: Date()).1.isEmpty)
    }

    @Test func aHangingToolTimesOutAndTheRestIsReported() async throws {
        var settings = HardwareMonitor.Settings()
        settings.timeoutSeconds = 0.5
        let dir = NSTemporaryDirectory() + "hw-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let monitor = HardwareMonitor(backend: PrivilegedBackend(runner: Box(smart: Self.failing, hang: true)), stateDir: dir, settings: settings)
        let (health, _) = await monitor.observe(now: Date())
        #expect(health.disks.count == 1)
        #expect(health.errors == ["sensors: timed out after 0 s"] || health.errors.first?.hasPrefix("sensors: timed out") == true, "\(health.errors)")
        // The report with it is a valid contract.
        #expect(throws: Never.self) { try health.validate(path: "$.hardware") }
    }
}
