import FelhomCore
import Foundation
import Testing

/// `routes` in the desired state (ADR 0009): every rule refuses with the JSON path of the field.
@Suite struct RouteContractTests {
    func state(_ routes: String) -> Data {
        Data(
            #"{"guests":[{"vmid":100,"name":"web","cpu":1,"memory_mb":512,"disk_gb":4}],"routes":\#(routes)}"#.utf8)
    }

    func path(_ routes: String) -> String? {
        do {
            _ = try DesiredState.decodeStrict(state(routes))
            return nil
        } catch let error as ContractError {
            return error.path
        } catch {
            return "\(error)"
        }
    }

    @Test func aRouteDefaultsToPlainTCPAndRoundTrips() throws {
        let d = try DesiredState.decodeStrict(state(#"[{"id":"web","guest_vmid":100,"listen_port":443,"target_port":8443}]"#))
        #expect(d.routes == [.init(id: "web", guestVMID: 100, listenPort: 443, targetPort: 8443)])
        #expect(d.routes[0].proxyProtocol == .off && d.routes[0].proto == "tcp")
        #expect(try DesiredState.decode(d.encoded()) == d)
        // A state without routes encodes as before (no `routes` key).
        #expect(try JSONValue.parse(DesiredState().encoded())["routes"] == nil)
        let v2 = try DesiredState.decodeStrict(
            state(
                #"[{"id":"mail","guest_vmid":100,"listen_port":25,"target_port":2525,"proxy_protocol":"v2","backend_expects_proxy_protocol":true}]"#))
        #expect(v2.routes[0].proxyProtocol == .v2)
    }

    @Test func badRoutesAreRefusedNamingTheField() {
        let ok = #""guest_vmid":100,"target_port":80"#
        #expect(
            path(#"[{"id":"a","guest_vmid":100,"listen_port":25,"target_port":25,"proxy_protocol":"v2"}]"#)
                == "$.routes[0].backend_expects_proxy_protocol", "v2 needs the acknowledgement")
        #expect(
            path(#"[{"id":"a","guest_vmid":100,"listen_port":25,"target_port":25,"proxy_protocol":"v2","backend_expects_proxy_protocol":false}]"#)
                == "$.routes[0].backend_expects_proxy_protocol")
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":80},{"id":"b",\#(ok),"listen_port":80}]"#) == "$.routes[1].listen_port")
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":80},{"id":"a",\#(ok),"listen_port":81}]"#) == "$.routes[1].id")
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":0}]"#) == "$.routes[0].listen_port")
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":65536}]"#) == "$.routes[0].listen_port")
        #expect(path(#"[{"id":"a","guest_vmid":100,"listen_port":80,"target_port":70000}]"#) == "$.routes[0].target_port")
        #expect(path(#"[{"id":"a","guest_vmid":101,"listen_port":80,"target_port":80}]"#) == "$.routes[0].guest_vmid")
        #expect(path(#"[{"id":"A b",\#(ok),"listen_port":80}]"#) == "$.routes[0].id")
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":80,"protocol":"udp"}]"#) == "$.routes[0].protocol")
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":80,"proxy_protocol":"v1"}]"#) == "$.routes[0].proxy_protocol")
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":80,"tls":true}]"#) == "$.routes[0].tls")
        let v2 = #""listen_port":80,"proxy_protocol":"v2","backend_expects_proxy_protocol":true"#
        #expect(path(#"[{"id":"a",\#(ok),"listen_port":80,"probe_hello":"GET / HTTP/1.0\r\n\r\n"}]"#) == "$.routes[0].probe_hello", "only with v2")
        #expect(path(#"[{"id":"a",\#(ok),\#(v2),"probe_hello":""}]"#) == "$.routes[0].probe_hello")
        #expect(path(#"[{"id":"a",\#(ok),\#(v2),"probe_hello":"\#(String(repeating: "x", count: 257))"}]"#) == "$.routes[0].probe_hello")
        #expect(path(#"[{"id":"a",\#(ok),\#(v2),"probe_hello":"\u0000"}]"#) == "$.routes[0].probe_hello")
        #expect(path(#"[{"id":"a",\#(ok),\#(v2),"probe_hello":"é"}]"#) == "$.routes[0].probe_hello")
        #expect(path(#"[{"id":"a",\#(ok),\#(v2),"probe_hello":"GET / HTTP/1.0\r\n\r\n"}]"#) == nil)
    }
}
