import Testing

@testable import Proxmox

/// Vectors from pve-common `test/upid-test.pl` (PVE-FACTS §3).
@Suite struct UPIDTests {
    @Test func parsesEmptyIDVector() throws {
        let u = try UPID(parsing: "UPID:example-node:0000C346:165A0CE4:68D7279C:aptupdate::root@pam:")
        #expect(u.node == "example-node")
        #expect(u.pid == 49990)
        #expect(u.pstart == 375_000_292)
        #expect(u.starttime == 1_758_930_844)
        #expect(u.type == "aptupdate")
        #expect(u.id == "")
        #expect(u.user == "root@pam")
        #expect(u.tokenID == nil)
    }

    @Test func parsesHAStartVector() throws {
        let u = try UPID(parsing: "UPID:example-node:000934AF:0D015579:68BF3A41:hastart:100:root@pam:")
        #expect(u.pid == 603_311)
        #expect(u.pstart == 218_191_225)
        #expect(u.starttime == 1_757_362_753)
        #expect(u.type == "hastart")
        #expect(u.id == "100")
    }

    @Test func parsesTokenUser() throws {
        let u = try UPID(
            parsing: "UPID:example-node:000934AF:0D015579:68BF3A41:vzdump:100:91a1da29-a47d-11f0-84e0-fafbfc944d00@pam!some-token:")
        #expect(u.user == "91a1da29-a47d-11f0-84e0-fafbfc944d00@pam!some-token")
        #expect(u.userID == "91a1da29-a47d-11f0-84e0-fafbfc944d00@pam")
        #expect(u.tokenID == "some-token")
    }

    @Test func parsesNineDigitPstart() throws {
        let u = try UPID(parsing: "UPID:example-node:000934AF:FFFFFFFFF:68BF3A41:fake-but-valid-type:100:root@pam:")
        #expect(u.pstart == 68_719_476_735)
        #expect(u.description == "UPID:example-node:000934AF:FFFFFFFFF:68BF3A41:fake-but-valid-type:100:root@pam:")
    }

    @Test(arguments: [
        "UPID:example-node:000934AF:0D015579:68BF3A41:broken type string:100:root@pam:",  // type with spaces
        "UPID:example-node:000934AF:0D015579:68BF3A41:vzdump:100:root@pam",  // no trailing colon
        "UPID:example-node:934AF:0D015579:68BF3A41:vzdump:100:root@pam:",  // short pid
        "UPID:example-node:000934AF:0D015579:68BF3A41::100:root@pam:",  // empty type
        "UPID:-bad:000934AF:0D015579:68BF3A41:vzdump:100:root@pam:",  // node starts with dash
        "UPID:n:000934AF:0D015579:68BF3A41:vzdump:100::",  // empty user
        "UPID:n:000934AG:0D015579:68BF3A41:vzdump:100:root@pam:",  // not hex
        "UPID:n:000934AF:0D015579FF:68BF3A41:vzdump:100:root@pam:",  // 10-digit pstart
        "TASK:n:000934AF:0D015579:68BF3A41:vzdump:100:root@pam:",
    ])
    func rejectsMalformed(_ text: String) {
        let e = #expect(throws: PVEError.self) { try UPID(parsing: text) }
        #expect(e?.code == .invalidUPID)
    }

    @Test func roundTripsThroughDescription() throws {
        let u = UPID(node: "pve1", pid: 0xABCD, pstart: 12, starttime: 0x65F0_A1B2, type: "vzstart", id: "100", user: "felhom@pve!agent")
        #expect(u.description == "UPID:pve1:0000ABCD:0000000C:65F0A1B2:vzstart:100:felhom@pve!agent:")
        #expect(try UPID(parsing: u.description) == u)
    }
}
