import FelhomCore
import Foundation
import Testing

@testable import Proxmox

@Suite struct LenientDecodingTests {
    @Test func pve7GuestStatusWithStringNumbers() throws {
        // Wire capture shape from bpg/terraform-provider-proxmox#621 (PVE 6/7).
        let json = try JSONValue.parse(
            #"{"vmid":"506","status":"running","pid":"114348","disk":"2843205632","maxdisk":"8388009984","template":"","lock":"","ha":{"managed":0},"cpus":2,"maxmem":536870912}"#
        )
        let s = try PVEGuestStatus(json: json)
        #expect(s.vmid == 506)
        #expect(s.disk == 2_843_205_632)
        #expect(s.maxdisk == 8_388_009_984)
        #expect(s.template == false)
        #expect(s.lock == nil)
        #expect(s.isRunning)
    }

    @Test func currentGuestStatusWithNumbersAndAbsentKeys() throws {
        let s = try PVEGuestStatus(json: try JSONValue.parse(#"{"vmid":101,"status":"stopped","lock":"backup","template":1}"#))
        #expect(s.vmid == 101)
        #expect(s.lock == "backup")
        #expect(s.template)
        #expect(s.uptime == nil)
    }

    @Test func configKeepsRawValuesAndTypesThem() throws {
        let c = try PVEGuestConfig(
            json: try JSONValue.parse(
                #"{"cores":2,"cpulimit":"0.5","memory":"2048","onboot":1,"description":"hi\n","mp0":"local-lvm:vm-100-disk-1,mp=/data,backup=1,size=32G","digest":"aa"}"#
            ))
        #expect(c.cores == 2)
        #expect(c.cpulimit == 0.5)
        #expect(c.memory == 2048)
        #expect(c.onboot == true)
        #expect(c.description == "hi\n")
        #expect(c.mountPoints[0]?.path == "/data")
        #expect(c.mountPoints[0]?.backup == true)
        #expect(c.digest == "aa")
    }

    @Test func wrongShapeNamesTheField() {
        let e = #expect(throws: PVEError.self) {
            try PVEGuestStatus(json: try JSONValue.parse(#"{"vmid":"abc","status":"running"}"#))
        }
        #expect(e?.code == .decoding)
        #expect(e?.message.contains("guest.vmid") == true)
    }

    @Test(arguments: [("OK", true), ("WARNINGS: 3", true), ("WARNINGS: x", false), ("job errors", false), ("CT is locked (backup)", false)])
    func taskExitStatus(_ exit: String, _ success: Bool) throws {
        let json = try JSONValue.parse(
            #"{"upid":"UPID:pve:000934AF:0D015579:68BF3A41:vzdump:100:felhom@pve!agent:","node":"pve","pid":1,"pstart":1,"starttime":1,"type":"vzdump","id":"100","user":"felhom@pve","tokenid":"agent","status":"stopped","exitstatus":"\#(exit)"}"#
        )
        let s = try PVETaskStatus(json: json)
        #expect(s.succeeded == success)
        #expect(s.tokenID == "agent")
    }

    @Test func nodeStatusReadsStringLoadAverages() throws {
        let s = try PVENodeStatus(
            json: try JSONValue.parse(
                #"{"uptime":10,"loadavg":["0.05","0.10","0.08"],"memory":{"total":100,"used":40},"rootfs":{"total":10,"used":"2"},"cpuinfo":{"cpus":8,"mhz":"2400.000"}}"#
            ))
        #expect(s.loadavg == [0.05, 0.10, 0.08])
        #expect(s.rootfsUsed == 2)
        #expect(s.cpuCount == 8)
    }
}

@Suite struct HelperTests {
    @Test(arguments: [
        ("hello", "hello\n"), ("a\nb", "a\nb\n"), ("a\n\nb\n", "a\nb\n"), ("", ""), (" lead", " lead\n"), ("x\r\ny", "x\r\ny\n"),
    ])
    func descriptionNormalization(_ input: String, _ expected: String) {
        #expect(GuestDescription.normalized(input) == expected)
        #expect(GuestDescription.equivalent(input, expected))
    }

    @Test func mountPointParsesAndPrintsInProxmoxOrder() throws {
        let mp = try MountPoint(parsing: "volume=local-lvm:vm-100-disk-1,size=32G,backup=1,mp=/data,acl=1")
        #expect(mp.volume == "local-lvm:vm-100-disk-1")
        #expect(mp.path == "/data")
        #expect(mp.backup == true)
        #expect(mp.size == "32G")
        #expect(mp.sizeBytes == 32 << 30)
        #expect(mp.options == ["acl": "1"])
        #expect(mp.storage == "local-lvm")
        #expect(mp.description == "local-lvm:vm-100-disk-1,mp=/data,acl=1,backup=1,size=32G")
        #expect(try MountPoint(parsing: mp.description) == mp)
        #expect(mp.includedInBackup)
    }

    @Test func bindMountsAreNeverBackedUp() throws {
        let mp = try MountPoint(parsing: "/srv/media,mp=/media,backup=1")
        #expect(mp.isBindOrDevice)
        #expect(!mp.includedInBackup)
        #expect(mp.storage == nil)
    }

    @Test func newVolumeSyntaxAndRootfs() throws {
        let mp = MountPoint(volume: "local-lvm:8", path: "/bulk", backup: false)
        #expect(mp.description == "local-lvm:8,mp=/bulk,backup=0")
        let root = try MountPoint(parsing: "local-lvm:vm-100-disk-0,size=8G")
        #expect(root.path == nil)
        #expect(root.sizeBytes == 8 << 30)
    }

    @Test(arguments: ["", "mp=/x", "local:1,backup=yes", "local:1,acl=1,acl=0", "local:1,junk"])
    func badMountPointsAreClearErrors(_ text: String) {
        let e = #expect(throws: PVEError.self) { try MountPoint(parsing: text) }
        #expect(e?.code == .invalidArgument)
    }

    @Test func fingerprintParsing() throws {
        let hex = String(repeating: "ab", count: 32)
        let a = try CertificateFingerprint(parsing: hex)
        let b = try CertificateFingerprint(parsing: a.description.lowercased())
        #expect(a == b)
        #expect(a.description.hasPrefix("AB:AB:"))
        #expect(throws: HTTPClientError.self) { try CertificateFingerprint(parsing: "AB:CD") }
    }

    @Test(arguments: ["root@pam", "root@pam!", "root!x", "root@pam!1abc", "root@pam!a b", "root@pam!a"])
    func invalidTokenIDsAreRefused(_ id: String) {
        #expect(throws: PVEError.self) {
            try PVEConnection(host: "h", tokenID: id, tokenSecret: Secret("s"), trust: .systemDefault)
        }
    }

    @Test func authorizationHeaderFormat() throws {
        let c = try PVEConnection(host: "h", tokenID: "felhom@pve!agent", tokenSecret: Secret("uuid-1"), trust: .systemDefault)
        #expect(c.authorizationHeader == "PVEAPIToken=felhom@pve!agent=uuid-1")
        #expect(!"\(c)".contains("uuid-1"))
    }
}
