import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HummingbirdTesting
import Testing

@Suite struct EnrollmentTests {
    @Test(arguments: TestStores.kinds)
    func tokenTurnsIntoTheOnlyHostKeyOnce(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date())
        let h = try await HubHarness.make(kind, clock: clock)
        try await h.app.test(.router) { client in
            let c = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#)
            let host = try await client.call(
                .post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(c.json?["id"]?.stringValue ?? "")","name":"nappali"}"#)
            let hostID = host.json?["id"]?.stringValue ?? ""
            let firstKey = host.json?["api_key"]?.stringValue ?? ""
            let t = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey, body: #"{"ttl_seconds":600}"#)
            let token = t.json?["token"]?.stringValue ?? ""
            #expect(token.hasPrefix("fh_enroll_"))
            let e = try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(token)"}"#)
            #expect(e.status == .created)
            let key = e.json?["api_key"]?.stringValue ?? ""
            #expect(e.json?["host_id"]?.stringValue == hostID)
            #expect(try await client.call(.get, "/api/v1/control", key: key).status == .ok)
            // The key made at creation no longer works: the enrolled box holds the only one.
            #expect(try await client.call(.get, "/api/v1/control", key: firstKey).status == .unauthorized)
            // Second use is refused, and the enrolled key keeps working.
            let again = try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(token)"}"#)
            #expect(again.status == .unauthorized && again.json?["error"]?["code"] == "enrollment_refused")
            #expect(try await client.call(.get, "/api/v1/control", key: key).status == .ok)
            // An expired token is refused.
            let t2 = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey, body: #"{"ttl_seconds":60}"#)
            clock.advance(by: 61)
            #expect(
                try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(t2.json?["token"]?.stringValue ?? "")"}"#).status
                    == .unauthorized)
            // A new token makes the older unused one void.
            let t3 = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey)
            let t4 = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey)
            #expect(
                try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(t3.json?["token"]?.stringValue ?? "")"}"#).status
                    == .unauthorized)
            #expect(
                try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(t4.json?["token"]?.stringValue ?? "")"}"#).status
                    == .created)
            #expect(try await client.call(.get, "/api/v1/events?type=host_enrolled", key: operatorKey).json?["events"]?.arrayValue?.count == 2)
        }
        await h.hub.store.close()
    }

    /// A recovery enrollment token is only for a host that was enrolled before; the box that
    /// trades it is told it replaces a lost one, and the hub records it.
    @Test(arguments: TestStores.kinds)
    func aRecoveryTokenIsForAHostEnrolledBefore(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let c = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#)
            let host = try await client.call(
                .post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(c.json?["id"]?.stringValue ?? "")","name":"nappali"}"#)
            let hostID = host.json?["id"]?.stringValue ?? ""
            let early = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey, body: #"{"recovery":true}"#)
            #expect(early.status == .conflict && early.json?["error"]?["code"] == "never_enrolled" && early.json?["error"]?["path"] == "$.recovery")
            let first = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey)
            #expect(first.json?["recovery"] == nil)
            let enrolled = try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(first.json?["token"]?.stringValue ?? "")"}"#)
            #expect(enrolled.status == .created && enrolled.json?["recovery"] == nil)
            let t = try await client.call(.post, "/api/v1/hosts/\(hostID)/enrollment", key: operatorKey, body: #"{"recovery":true}"#)
            #expect(t.status == .created && t.json?["recovery"] == true)
            let e = try await client.call(.post, "/api/v1/enroll", key: nil, body: #"{"token":"\#(t.json?["token"]?.stringValue ?? "")"}"#)
            #expect(e.status == .created && e.json?["recovery"] == true && e.json?["host_id"]?.stringValue == hostID)
            // The lost box's key is revoked, as with every enrollment.
            #expect(try await client.call(.get, "/api/v1/control", key: enrolled.json?["api_key"]?.stringValue ?? "").status == .unauthorized)
            let events = try await client.call(.get, "/api/v1/events?type=host_enrolled", key: operatorKey).json?["events"]?.arrayValue ?? []
            #expect(events.count == 2 && events.contains { $0["data"]?["recovery"] == true && $0["severity"] == "warning" })
        }
        await h.hub.store.close()
    }
}
