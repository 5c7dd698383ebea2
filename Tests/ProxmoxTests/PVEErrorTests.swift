import Foundation
import Testing

@testable import Proxmox

/// Error bodies and status lines as captured in PVE-FACTS §1.5 (both the pre-5.2 and 5.2+ body styles).
@Suite struct PVEErrorTests {
    func err(_ status: Int, _ reason: String, _ body: String) -> PVEError {
        PVEError.fromResponse(status: status, reason: reason, body: Data(body.utf8), request: "GET /x")
    }

    @Test func unauthorized() {
        let e = err(401, "Authentication failed!", #"{"data":null}"#)
        #expect(e.code == .unauthorized)
        #expect(e.message == "Authentication failed!")
    }

    @Test func forbiddenParsesPathAndPrivilege() {
        let e = err(403, "Permission check failed (/vms/100, VM.Allocate)", #"{"data":null}"#)
        #expect(e.code == .forbidden)
        #expect(e.path == "/vms/100")
        #expect(e.privilege == "VM.Allocate")
    }

    @Test func forbiddenWithAlternativesFromTheMessageField() {
        let e = err(
            403, "Permission check failed",
            #"{"data":null,"message":"Permission check failed (/vms/100, VM.Config.Disk|VM.Config.CPU)\n"}"#)
        #expect(e.privilege == "VM.Config.Disk|VM.Config.CPU")
        #expect(e.message == "Permission check failed (/vms/100, VM.Config.Disk|VM.Config.CPU)")
    }

    @Test func badRequestKeepsPerParameterMessages() {
        let e = err(
            400, "Parameter verification failed.",
            #"{"data":null,"errors":{"overrule-shutdown":"property is not defined in schema and the schema does not allow additional properties"}}"#
        )
        #expect(e.code == .badRequest)
        #expect(e.parameterErrors["overrule-shutdown"]?.hasPrefix("property is not defined") == true)
        #expect(e.description.contains("overrule-shutdown"))
    }

    @Test func legacyLockedFromStatusLineOnly() {
        let e = err(500, "CT is locked (disk)", #"{"data":null}"#)
        #expect(e.code == .locked)
        #expect(e.lock == "disk")
    }

    @Test func modernLockedFromMessageField() {
        let e = err(500, "Internal Server Error", #"{"data":null,"message":"CT is locked (backup)\n"}"#)
        #expect(e.code == .locked)
        #expect(e.lock == "backup")
        #expect(e.message == "CT is locked (backup)")
    }

    @Test func digestMismatch() {
        let e = err(500, "detected modified configuration - file changed by other user? Try again.", #"{"data":null}"#)
        #expect(e.code == .digestMismatch)
    }

    @Test func missingConfigIsNotFound() {
        let e = err(500, "Configuration file 'nodes/pve/lxc/999.conf' does not exist", #"{"data":null}"#)
        #expect(e.code == .notFound)
    }

    @Test(arguments: [595, 596, 597, 599])
    func proxyErrors(_ status: Int) {
        let e = err(status, "Connection timed out", "")
        #expect(e.code == .proxy)
        #expect(e.message == "Connection timed out")
    }

    @Test func notImplementedWithPlainTextBody() {
        let e = PVEError.fromResponse(status: 501, reason: "", body: Data("no such uri".utf8))
        #expect(e.code == .notImplemented)
        #expect(e.message == "no such uri")
    }

    @Test func otherServerErrorKeepsMessage() {
        let e = err(500, "CT 100 already running", #"{"data":null}"#)
        #expect(e.code == .server)
        #expect(e.message == "CT 100 already running")
        #expect(e.httpStatus == 500)
    }
}
