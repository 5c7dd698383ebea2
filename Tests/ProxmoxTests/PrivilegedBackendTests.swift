import Foundation
import Synchronization
import Testing

@testable import Proxmox

final class RecordingRunner: CommandRunner {
    let calls = Mutex<[[String]]>([])
    let result: CommandResult
    init(_ result: CommandResult) { self.result = result }
    func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        calls.withLock { $0.append([executable] + arguments) }
        return result
    }
}

@Suite struct PrivilegedBackendTests {
    @Test func goldenTemplateArgv() async throws {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: ""))
        try await PrivilegedBackend(runner: r).createGoldenTemplate(
            .init(vmid: 9000, ostemplate: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", storage: "local-lvm"))
        let argv = r.calls.withLock { $0 }
        #expect(argv.count == 1)
        #expect(Array(argv[0].prefix(4)) == ["pct", "create", "9000", "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"])
        let args = argv[0]
        #expect(args[args.firstIndex(of: "--features")! + 1] == "keyctl=1,nesting=1")
        #expect(args[args.firstIndex(of: "--unprivileged")! + 1] == "1")
        #expect(args[args.firstIndex(of: "--rootfs")! + 1] == "local-lvm:4")
    }

    @Test(arguments: [
        ("local:vztmpl/x.tar.zst; rm -rf /", "felhom-golden"), ("local:iso/x.iso", "felhom-golden"),
        ("local:vztmpl/x.tar.zst", "bad host name"),
    ])
    func goldenTemplateRefusesBadInput(_ tmpl: String, _ host: String) async {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: ""))
        await #expect(throws: PrivilegedError.self) {
            try await PrivilegedBackend(runner: r).createGoldenTemplate(.init(vmid: 9000, ostemplate: tmpl, hostname: host))
        }
        #expect(r.calls.withLock { $0.isEmpty })
    }

    @Test func mountByUUID() async throws {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: ""))
        try await PrivilegedBackend(runner: r).mountDisk(
            filesystemUUID: "0a1b2c3d-4e5f-6789-abcd-ef0123456789", mountPoint: "/mnt/felhom/usb-1")
        #expect(
            r.calls.withLock { $0 } == [["mount", "UUID=0a1b2c3d-4e5f-6789-abcd-ef0123456789", "/mnt/felhom/usb-1", "-o", "nosuid,nodev,noexec"]])
        #expect(try PrivilegedBackend.mountArguments(filesystemUUID: "1A2B-3C4D", mountPoint: "/mnt/felhom/stick")[0] == "UUID=1A2B-3C4D")
    }

    @Test(arguments: [
        ("not-a-uuid", "/mnt/felhom/x"), ("0a1b2c3d-4e5f-6789-abcd-ef0123456789", "/etc"),
        ("0a1b2c3d-4e5f-6789-abcd-ef0123456789", "/mnt/felhom/../etc"), ("x;reboot", "/mnt/felhom/x"),
    ])
    func mountRefusesBadInput(_ uuid: String, _ path: String) {
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.mountArguments(filesystemUUID: uuid, mountPoint: path) }
    }

    @Test func thinSnapshotsAreCreatedReadOnlyActiveAndOnlyOursRemoved() async throws {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: ""))
        let backend = PrivilegedBackend(runner: r)
        try await backend.createThinSnapshot(volumeGroup: "pve", origin: "vm-100-disk-1", name: "felhom-snap-20261201-a1b2")
        try await backend.removeSnapshot(volumeGroup: "pve", name: "felhom-snap-20261201-a1b2")
        #expect(
            r.calls.withLock { $0 } == [
                [
                    "lvcreate", "--snapshot", "--setactivationskip", "n", "--permission", "r", "--name", "felhom-snap-20261201-a1b2",
                    "pve/vm-100-disk-1",
                ],
                ["lvremove", "--yes", "pve/felhom-snap-20261201-a1b2"],
            ])
        // PVE's own snapshots, other volumes, and names that are not LVM names are refused.
        await #expect(throws: PrivilegedError.self) { try await backend.removeSnapshot(volumeGroup: "pve", name: "snap_vm-100-disk-1_x") }
        await #expect(throws: PrivilegedError.self) { try await backend.removeSnapshot(volumeGroup: "pve", name: "vm-100-disk-1") }
        await #expect(throws: PrivilegedError.self) {
            try await backend.createThinSnapshot(volumeGroup: "pve", origin: "vm-100-disk-1", name: "snap_vm-100-disk-1_x")
        }
        for bad in ["-y", "a/b", "x y", ".", "", "a;b"] {
            #expect(throws: PrivilegedError.self, "\(bad)") {
                try PrivilegedBackend.thinSnapshotArguments(volumeGroup: bad, origin: "vm-1", name: "felhom-snap-1")
            }
            #expect(throws: PrivilegedError.self, "\(bad)") {
                try PrivilegedBackend.thinSnapshotArguments(volumeGroup: "pve", origin: bad, name: "felhom-snap-1")
            }
        }
        #expect(r.calls.withLock { $0.count } == 2)
    }

    @Test func lvsJSONIsParsed() throws {
        let text = """
              {
                  "report": [
                      {
                          "lv": [
                              {"lv_name":"data", "vg_name":"pve", "lv_attr":"twi-aotz--", "pool_lv":"", "origin":"", "lv_size":"34359738368"},
                              {"lv_name":"vm-100-disk-1", "vg_name":"pve", "lv_attr":"Vwi-aotz--", "pool_lv":"data", "origin":"", "lv_size":"8589934592"},
                              {"lv_name":"felhom-snap-x", "vg_name":"pve", "lv_attr":"Vri-a-tz--", "pool_lv":"data", "origin":"vm-100-disk-1", "lv_size":"8589934592"}
                          ]
                      }
                  ]
              }
            """
        let lvs = try PrivilegedBackend.parseLogicalVolumes(text)
        #expect(lvs.map(\.name) == ["data", "vm-100-disk-1", "felhom-snap-x"])
        #expect(lvs[1].isThin && !lvs[0].isThin && lvs[1].pool == "data" && lvs[1].size == 8_589_934_592 && lvs[2].origin == "vm-100-disk-1")
        #expect(try PrivilegedBackend.parseLogicalVolumes(#"  {"report": [{"lv": []}]}"#).isEmpty)
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.parseLogicalVolumes("not json") }
        #expect(throws: PrivilegedError.self) {
            try PrivilegedBackend.parseLogicalVolumes(#"{"report": [{"lv": [{"lv_name":"-rf", "vg_name":"pve"}]}]}"#)
        }
    }

    @Test func pushesOnlyTheControllerConfigRootOwned0600() async throws {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: ""))
        try await PrivilegedBackend(runner: r).push(
            vmid: 120, source: "/var/lib/felhom-agent/push/120.json", destination: "/etc/felhom/controller.json")
        #expect(
            r.calls.withLock { $0 } == [
                [
                    "pct", "push", "120", "/var/lib/felhom-agent/push/120.json", "/etc/felhom/controller.json", "--perms", "0600", "--user", "0",
                    "--group", "0",
                ]
            ])
    }

    @Test(arguments: [
        (120, "/var/lib/x.json", "/etc/shadow"), (120, "relative.json", "/etc/felhom/controller.json"),
        (120, "/var/lib/../../etc/shadow", "/etc/felhom/controller.json"), (120, "/tmp/a b.json", "/etc/felhom/controller.json"),
        (5, "/var/lib/x.json", "/etc/felhom/controller.json"), (120, "/var/lib/x.json;reboot", "/etc/felhom/controller.json"),
    ])
    func pushRefusesBadInput(_ vmid: Int, _ source: String, _ destination: String) async {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: ""))
        await #expect(throws: PrivilegedError.self) {
            try await PrivilegedBackend(runner: r).push(vmid: vmid, source: source, destination: destination)
        }
        #expect(r.calls.withLock { $0.isEmpty })
    }

    @Test func failedCommandReportsExitAndStderr() async {
        let r = RecordingRunner(CommandResult(exitCode: 32, stdout: "", stderr: "mount: /mnt/felhom/x: can't find UUID=…\nmore"))
        let e = await #expect(throws: PrivilegedError.self) {
            try await PrivilegedBackend(runner: r).mountDisk(filesystemUUID: "1A2B-3C4D", mountPoint: "/mnt/felhom/x")
        }
        #expect(e?.code == .commandFailed)
        #expect(e?.message.contains("exit 32") == true)
        #expect(e?.message.contains("can't find UUID") == true)
    }

    /// Recorded `smartctl --json=c --all /dev/sda` output (smartmontools 7.3, SATA SSD), trimmed.
    static let smartSATA = #"""
        {"json_format_version":[1,0],"smartctl":{"version":[7,3],"svn_revision":"5338","platform_info":"x86_64-linux-6.8.12-4-pve","build_info":"(local build)","argv":["smartctl","--json=c","--all","/dev/sda"],"exit_status":0},"local_time":{"time_t":1767225600,"asctime":"Thu Jan  1 00:00:00 2026 UTC"},"device":{"name":"/dev/sda","info_name":"/dev/sda [SAT]","type":"sat","protocol":"ATA"},"model_family":"Samsung based SSDs","model_name":"Samsung SSD 870 EVO 1TB","serial_number":"S6PUNX0T123456A","firmware_version":"SVT02B6Q","user_capacity":{"blocks":1953525168,"bytes":1000204886016},"smart_support":{"available":true,"enabled":true},"smart_status":{"passed":true},"power_on_time":{"hours":8123},"power_cycle_count":212,"temperature":{"current":31}}
        """#

    /// Recorded NVMe output with a failing health status (exit status bit 3 set).
    static let smartNVMeFailing = #"""
        {"json_format_version":[1,0],"smartctl":{"version":[7,3],"exit_status":8},"device":{"name":"/dev/nvme0","type":"nvme","protocol":"NVMe"},"model_name":"WD Blue SN570 1TB","serial_number":"22123A456789","smart_status":{"passed":false,"nvme":{"value":4}},"temperature":{"current":64},"power_on_time":{"hours":20511}}
        """#

    @Test func smartParsesRecordedOutput() async throws {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: Self.smartSATA))
        let s = try await PrivilegedBackend(runner: r).smart(device: "/dev/sda")
        #expect(r.calls.withLock { $0 } == [["smartctl", "--json=c", "--all", "/dev/sda"]])
        #expect(s.model == "Samsung SSD 870 EVO 1TB")
        #expect(s.serial == "S6PUNX0T123456A")
        #expect(s.passed == true)
        #expect(s.temperatureCelsius == 31)
        #expect(s.powerOnHours == 8123)
    }

    @Test func smartWarningBitsStillParseButOpenFailuresThrow() async throws {
        let warn = RecordingRunner(CommandResult(exitCode: 8, stdout: Self.smartNVMeFailing))
        let s = try await PrivilegedBackend(runner: warn).smart(device: "/dev/nvme0")
        #expect(s.passed == false)
        #expect(s.exitStatus == 8)
        let fail = RecordingRunner(CommandResult(exitCode: 2, stdout: "", stderr: "Smartctl open device: /dev/sdz failed: No such device"))
        await #expect(throws: PrivilegedError.self) { _ = try await PrivilegedBackend(runner: fail).smart(device: "/dev/sdz") }
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.smartArguments(device: "/etc/passwd") }
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.parseSMART("not json", device: "/dev/sda") }
    }

    /// Recorded `sensors -j` output (lm-sensors 3.6, Intel N100 mini PC), trimmed.
    static let sensorsJSON = #"""
        {"coretemp-isa-0000":{"Adapter":"ISA adapter","Package id 0":{"temp1_input":47.000,"temp1_max":105.000,"temp1_crit":105.000,"temp1_crit_alarm":0.000},"Core 0":{"temp2_input":45.000,"temp2_max":105.000}},"nvme-pci-0100":{"Adapter":"PCI adapter","Composite":{"temp1_input":38.850,"temp1_max":81.850,"temp1_min":-273.150}},"acpitz-acpi-0":{"Adapter":"ACPI interface","temp1":{"temp1_input":27.800}}}
        """#

    @Test func sensorsParseRecordedOutput() async throws {
        let r = RecordingRunner(CommandResult(exitCode: 0, stdout: Self.sensorsJSON))
        let readings = try await PrivilegedBackend(runner: r).sensors()
        #expect(r.calls.withLock { $0 } == [["sensors", "-j"]])
        #expect(readings.count == 4)
        #expect(readings.first { $0.label == "Package id 0" }?.value == 47)
        #expect(readings.first { $0.chip == "nvme-pci-0100" }?.value == 38.85)
    }

    @Test func realSubprocessRunner() async throws {
        let runner = SubprocessCommandRunner()
        let r = try await runner.run("sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(r.exitCode == 3)
        #expect(r.stdout == "out\n")
        #expect(r.stderr == "err\n")
        // Arguments are passed as argv, never through a shell.
        let echo = try await runner.run("echo", ["$(id)", ";", "x"])
        #expect(echo.stdout == "$(id) ; x\n")
    }
}

/// The fence of SPEC §1 rule 4: the API client never runs commands, the root backend never makes HTTP calls.
@Suite struct FenceTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func sources(_ folder: String, module: String = "Proxmox") throws -> [(String, String)] {
        let dir = Self.root.appendingPathComponent("Sources/\(module)/\(folder)")
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }.map {
            ($0, try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8))
        }
    }

    @Test func clientAndTransportNeverRunCommands() throws {
        let files = try sources("Client") + sources("", module: "FelhomHTTP") + sources("Helpers")
        #expect(files.count >= 5)
        for (name, text) in files {
            for forbidden in ["import Subprocess", "CommandRunner", "Process(", "posix_spawn", "system("] {
                #expect(!text.contains(forbidden), "\(name) mentions \(forbidden)")
            }
        }
    }

    @Test func privilegedBackendNeverMakesHTTPCalls() throws {
        let files = try sources("Privileged")
        #expect(files.count == 3)
        for (name, text) in files {
            for forbidden in ["import NIO", "HTTPTransport", "PVEClient", "URLSession", "import FoundationNetworking"] {
                #expect(!text.contains(forbidden), "\(name) mentions \(forbidden)")
            }
        }
    }

    @Test func bootstrapCommandsTakeOnlyFelhomNamesAndValidatedValues() throws {
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.roleAddArguments(name: "Administrator", privileges: ["VM.Audit"]) }
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.roleAddArguments(name: "FelhomAgent", privileges: ["VM.Audit --x"]) }
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.roleDeleteArguments(name: "PVEAdmin") }
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.userDeleteArguments(user: "root@pam") }
        #expect(throws: PrivilegedError.self) {
            try PrivilegedBackend.aclModifyArguments(path: "/vms/../access", token: false, role: "FelhomAgent", propagate: true)
        }
        #expect(throws: PrivilegedError.self) {
            try PrivilegedBackend.aclModifyArguments(path: "/", token: false, role: "Administrator", propagate: true)
        }
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.enableUnitsArguments(["ssh.service"]) }
        #expect(
            try PrivilegedBackend.aclModifyArguments(path: "/storage", token: true, role: "FelhomStorage", propagate: false)
                == ["acl", "modify", "/storage", "--tokens", "felhom@pve!agent", "--roles", "FelhomStorage", "--propagate", "0"])
        #expect(PrivilegedBackend.tokenAddArguments.contains("--privsep") && PrivilegedBackend.tokenRemoveArguments.last == "agent")
    }

    @Test func theNodeFingerprintAndTokenSecretAreReadFromPVEsOutput() async throws {
        let certs = """
            [{"filename":"pve-root-ca.pem","fingerprint":"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"},
             {"filename":"pve-ssl.pem","fingerprint":"ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"}]
            """
        let fp = try await PrivilegedBackend(runner: RecordingRunner(CommandResult(exitCode: 0, stdout: certs))).nodeCertificateFingerprint()
        #expect(fp == "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89")
        let token = #"{"full-tokenid":"felhom@pve!agent","info":{"privsep":"1"},"value":"0b1a9e3c-5d7f-4e2a-9c61-7f3e2b8d4a10"}"#
        let secret = try await PrivilegedBackend(runner: RecordingRunner(CommandResult(exitCode: 0, stdout: token))).addToken()
        #expect(secret.reveal() == "0b1a9e3c-5d7f-4e2a-9c61-7f3e2b8d4a10")
        await #expect(throws: PrivilegedError.self) {
            try await PrivilegedBackend(runner: RecordingRunner(CommandResult(exitCode: 0, stdout: "token: $(rm -rf /)"))).addToken()
        }
    }

    @Test func backendHoldsOnlyACommandRunner() {
        let mirror = Mirror(reflecting: PrivilegedBackend(runner: RecordingRunner(CommandResult(exitCode: 0, stdout: ""))))
        #expect(mirror.children.count == 1)
        #expect(mirror.children.first?.value is CommandRunner)
    }
}
