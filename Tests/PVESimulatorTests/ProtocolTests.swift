import FelhomCore
import Foundation
import PVESimulator
import Testing

/// Transport, authentication, parameter checking and error shapes, as PVE-FACTS §1 describes.
@Suite struct ProtocolTests {
    @Test func envelopeAndNullReturn() async {
        let h = EngineHarness()
        let v = await h.call("GET", "/version")
        #expect(v.status == 200)
        #expect(v.data?["version"] == "9.1.3")
        let put = await h.call("PUT", "/nodes/pve1/lxc/101/config", form: "onboot=1")
        #expect(put.status == 200)
        #expect(put.text == #"{"data":null}"#)
    }

    @Test func authentication() async {
        let h = EngineHarness()
        let none = await h.call("GET", "/version", token: nil)
        #expect(none.status == 401 && none.reason == "No ticket")
        let wrong = await h.call("GET", "/version", rawAuth: "PVEAPIToken=felhom@pve!agent=nope")
        #expect(wrong.status == 401 && wrong.reason == "Authentication failed!")
        #expect(wrong.text == #"{"data":null}"#)
        let unknown = await h.call("GET", "/version", rawAuth: "PVEAPIToken=ghost@pve!x=\(h.secret(SimSeed.agentTokenID))")
        #expect(unknown.status == 401)
        // A space instead of '=' after PVEAPIToken is accepted, as pve-http-server's regex allows.
        let spaced = await h.call("GET", "/version", rawAuth: "PVEAPIToken \(SimSeed.agentTokenID)=\(h.secret(SimSeed.agentTokenID))")
        #expect(spaced.status == 200)
    }

    @Test func expiredTokenIsRefused() async {
        let h = EngineHarness { s in s.tokens[1].expire = 1000 }
        #expect(await h.call("GET", "/version").status == 401)
    }

    @Test func unknownPathAndFormatter() async {
        let h = EngineHarness()
        let a = await h.call("GET", "/nodes/pve1/foo")
        #expect(a.status == 501 && a.reason == "Method 'GET /nodes/pve1/foo' not implemented")
        let b = await h.engine.handle(SimRequest(method: "GET", path: "/api2/extjs/version"))
        #expect(b.status == 501 && b.reason == "no such uri")
        let c = await h.call("GET", "/version", form: "a=1")
        #expect(c.status == 501 && c.reason == "Unexpected content for method 'GET'")
    }

    @Test func parameterVerificationMessages() async {
        let h = EngineHarness()
        let bool = await h.call("POST", "/nodes/pve1/lxc/101/status/stop", form: "overrule-shutdown=true")
        #expect(bool.status == 400 && bool.reason == "Parameter verification failed.")
        #expect(bool.json?["errors"]?["overrule-shutdown"] == "type check ('boolean') failed - got 'true'")
        #expect(bool.json?["message"] == "Parameter verification failed.\n")
        let extra = await h.call("POST", "/nodes/pve1/lxc/101/status/start", form: "bogus=1")
        #expect(extra.json?["errors"]?["bogus"] == "property is not defined in schema and the schema does not allow additional properties")
        let missing = await h.call("POST", "/nodes/pve1/lxc", form: "vmid=150")
        #expect(missing.json?["errors"]?["ostemplate"] == "property is missing and it is not optional")
        let int = await h.call("PUT", "/nodes/pve1/lxc/101/config", form: "memory=lots")
        #expect(int.json?["errors"]?["memory"] == "type check ('integer') failed - got 'lots'")
        let range = await h.call("POST", "/nodes/pve1/lxc", form: "vmid=5&ostemplate=local:vztmpl/x")
        #expect(range.json?["errors"]?["vmid"] == "value must have a minimum value of 100")
        let conflict = await h.call("PUT", "/nodes/pve1/lxc/101/config", form: "vmid=102&memory=512")
        #expect(conflict.json?["errors"]?["vmid"] == "duplicate parameter (already defined in URI) with conflicting values!")
        // JSON bodies may use real booleans.
        let json = await h.call("POST", "/nodes/pve1/lxc/101/status/stop", json: #"{"overrule-shutdown": true}"#)
        #expect(json.status == 500 && json.reason == "CT 101 not running")
    }

    @Test func legacyErrorBodyHasNoMessage() async {
        let h = EngineHarness { s in s.settings.errorBodyStyle = "legacy" }
        let a = await h.call("POST", "/nodes/pve1/lxc/100/status/start")
        #expect(a.status == 500 && a.reason == "CT 100 already running")
        #expect(a.text == #"{"data":null}"#)
    }

    @Test func unknownGuestAndNode() async {
        let h = EngineHarness()
        let a = await h.call("GET", "/nodes/pve1/lxc/999/status/current")
        #expect(a.status == 500 && a.reason == "Configuration file 'nodes/pve1/lxc/999.conf' does not exist")
        let b = await h.call("GET", "/nodes/pve9/lxc")
        #expect(b.status == 595)
    }

    @Test func tasksFollowTheInjectedClock() async throws {
        let h = EngineHarness(taskSeconds: 5)
        let upid = try #require(await h.call("POST", "/nodes/pve1/lxc/101/status/start").data?.stringValue)
        #expect(upid.hasPrefix("UPID:pve1:") && upid.hasSuffix(":vzstart:101:felhom@pve!agent:"))
        let path = "/nodes/pve1/tasks/\(upid.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? upid)/status"
        var st = await h.call("GET", path)
        #expect(st.data?["status"] == "running")
        #expect(st.data?["exitstatus"] == nil)
        #expect(await h.call("GET", "/nodes/pve1/lxc/101/status/current").data?["status"] == "stopped")
        h.clock.advance(by: 5)
        st = await h.call("GET", path)
        #expect(st.data?["status"] == "stopped")
        #expect(st.data?["exitstatus"] == "OK")
        #expect(st.data?["user"] == "felhom@pve")
        #expect(st.data?["tokenid"] == "agent")
        #expect(await h.call("GET", "/nodes/pve1/lxc/101/status/current").data?["status"] == "running")
        let log = await h.call("GET", "/nodes/pve1/tasks/\(upid)/log", query: "start=0&limit=0")
        #expect(log.json?["total"] == 1)
        #expect(log.data?.arrayValue?.last?["t"] == "TASK OK")
        let bad = await h.call("GET", "/nodes/pve1/tasks/UPID:nope/status")
        #expect(bad.json?["errors"]?["upid"] == "unable to parse worker upid")
        let unknown = await h.call("GET", "/nodes/pve1/tasks/UPID:pve1:00000001:00000001:00000001:vzstart:1:root@pam:/status")
        #expect(unknown.json?["errors"]?["upid"] == "no such task")
    }

    @Test func stoppingATaskInterruptsIt() async throws {
        let h = EngineHarness(taskSeconds: 60)
        let upid = try #require(await h.call("POST", "/nodes/pve1/lxc/101/snapshot", form: "snapname=s1").data?.stringValue)
        #expect(await h.call("GET", "/nodes/pve1/lxc/101/status/current").data?["lock"] == "snapshot")
        #expect(await h.call("DELETE", "/nodes/pve1/tasks/\(upid)").text == #"{"data":null}"#)
        let st = await h.call("GET", "/nodes/pve1/tasks/\(upid)/status")
        #expect(st.data?["exitstatus"] == "interrupted by signal")
        #expect(await h.call("GET", "/nodes/pve1/lxc/101/status/current").data?["lock"] == nil)
        #expect(await h.call("GET", "/nodes/pve1/lxc/101/snapshot").data?.arrayValue?.count == 1)
    }

    @Test func destroyPrechecks() async {
        let h = EngineHarness { s in s.containers[101]?.config["protection"] = "1" }
        #expect(await h.call("DELETE", "/nodes/pve1/lxc/101").reason == "can't remove CT 101 - protection mode enabled")
        #expect(await h.call("DELETE", "/nodes/pve1/lxc/100").reason == "unable to destroy CT 100 - container is running")
        #expect(await h.call("DELETE", "/nodes/pve1/lxc/100", query: "force=1").status == 200)
    }

    @Test func nextIDAndDescriptionQuirk() async {
        let h = EngineHarness()
        #expect(await h.call("GET", "/cluster/nextid").data == 102)
        #expect(await h.call("GET", "/cluster/nextid", query: "vmid=150").data == "150")
        #expect(await h.call("GET", "/cluster/nextid", query: "vmid=100").json?["errors"]?["vmid"] == "VM 100 already exists")
        _ = await h.call("PUT", "/nodes/pve1/lxc/101/config", form: "description=hello")
        #expect(await h.call("GET", "/nodes/pve1/lxc/101/config").data?["description"] == "hello\n")
        // cpulimit is a string on the wire; integers and booleans are numbers.
        _ = await h.call("PUT", "/nodes/pve1/lxc/101/config", form: "cpulimit=0.5&onboot=1")
        let cfg = await h.call("GET", "/nodes/pve1/lxc/101/config")
        #expect(cfg.data?["cpulimit"] == "0.5")
        #expect(cfg.data?["onboot"] == 1)
        #expect(cfg.data?["memory"] == 1024)
    }
}
