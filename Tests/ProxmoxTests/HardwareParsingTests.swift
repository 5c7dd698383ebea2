import FelhomCore
import Foundation
import Proxmox
import Testing

/// SMART and sensors output as Debian 12's smartctl 7.3 and lm-sensors 3.6.0 print it
/// (Fixtures/hardware/README.md), and the real binaries on this machine.
@Suite struct HardwareParsingTests {
    static func fixture(_ name: String) throws -> String {
        try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hardware/\(name)"),
            encoding: .utf8)
    }

    @Test func aFailingATADiskShowsItsHealthAndSectorCounts() throws {
        let r = try PrivilegedBackend.parseSMART(try Self.fixture("smartctl-ata-failing.json"), device: "/dev/sda", exitStatus: 216)
        #expect(r.passed == false && r.model == "ST3000DM001-1ER166" && r.serial == "Z5008ABC")
        #expect(r.reallocatedSectors == 1975 && r.pendingSectors == 8)
        #expect(r.temperatureCelsius == 32, "temperature.current, not attribute 194's packed raw value")
        #expect(r.powerOnHours == 26862 && !r.nvmeCritical)
    }

    @Test func anNVMeDiskReadsItsHealthLog() throws {
        let r = try PrivilegedBackend.parseSMART(try Self.fixture("smartctl-nvme.json"), device: "/dev/nvme0")
        #expect(r.passed == true && r.reallocatedSectors == 0 && r.pendingSectors == nil && !r.nvmeCritical)
        var failing = try Self.fixture("smartctl-nvme.json")
        failing = failing.replacingOccurrences(of: #""critical_warning":0"#, with: #""critical_warning":4"#)
        #expect(try PrivilegedBackend.parseSMART(failing, device: "/dev/nvme0").nvmeCritical)
    }

    @Test func aScanListsOnlyAddressableDevices() throws {
        #expect(try PrivilegedBackend.parseSMARTScan(try Self.fixture("smartctl-scan.json")) == ["/dev/sda", "/dev/nvme0"])
        #expect(try PrivilegedBackend.parseSMARTScan(try Self.fixture("smartctl-scan-none.json")) == [])
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.parseSMARTScan("No devices") }
    }

    @Test func sensorsGiveEveryTemperatureInput() throws {
        let readings = try PrivilegedBackend.parseSensors(try Self.fixture("sensors-coretemp.json"))
        #expect(readings.filter { $0.key.hasPrefix("temp") }.count == 4)
        #expect(readings.contains { $0.chip == "coretemp-isa-0000" && $0.label == "Package id 0" && $0.value == 27 })
        #expect(try PrivilegedBackend.parseSensors(try Self.fixture("sensors-none.json")).isEmpty)
    }

    @Test func anUndetectedDeviceIsAFailureThatNamesIt() async throws {
        let out = try Self.fixture("smartctl-vda-undetected.json")
        let backend = PrivilegedBackend(runner: FixedRunner(result: CommandResult(exitCode: 1, stdout: out)))
        await #expect(throws: PrivilegedError.self) { try await backend.smart(device: "/dev/sda") }
    }

    /// The real smartctl and sensors of this machine (installed by scripts/install-test-deps): what
    /// they print parses, or their failure is an error naming the tool.
    @Test func theRealToolsParseOrFailClearly() async throws {
        let backend = PrivilegedBackend(runner: SubprocessCommandRunner())
        let devices = try await backend.smartDevices()
        for d in devices {
            do { _ = try await backend.smart(device: d) } catch let e as PrivilegedError { #expect(e.message.contains("smartctl \(d)")) }
        }
        do {
            let readings = try await backend.sensors()
            #expect(readings.allSatisfy { $0.key.hasSuffix("_input") })
        } catch let e as PrivilegedError {
            #expect(e.message.hasPrefix("sensors -j failed (exit 1)"), "\(e)")
        }
    }

    struct FixedRunner: CommandRunner {
        let result: CommandResult
        func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult { result }
    }
}
