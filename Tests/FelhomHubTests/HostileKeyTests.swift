import FelhomCore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SQLKit
import Testing

@testable import FelhomHub

/// Issue 10 items 12, 13, 16: a key that lives among third-party apps or in a customer's home
/// cannot flood the hub, forge the hub's events, pick its own severity or time, or read other boxes.
@Suite struct HostileKeyTests {
    struct World {
        let h: HubHarness
        let customer: String
        let host: String
        let hostKey: String
        let otherHost: String
        let guestKey: String
    }

    func world(_ kind: HubStore.Kind, clock: WallClock = SystemWallClock(), settings: Hub.Settings = Hub.Settings()) async throws -> World {
        let store = try await TestStores.open(kind)
        let hub = Hub(store: store, operatorKey: operatorKey, settings: settings, clock: clock)
        let h = HubHarness(hub: hub, app: Application(router: HubAPI.router(hub: hub)))
        let c = try await hub.createCustomer(.init(name: "A", email: "a@example.hu", domain: "a.example.hu", timezone: nil, language: nil), by: .operator)
        let (host, hostKey) = try await hub.createHost(customerID: c, name: "box", by: .operator)
        let (other, _) = try await hub.createHost(customerID: c, name: "box2", by: .operator)
        let (_, guestKey) = try await hub.createGuest(hostID: host, name: "web", by: .operator)
        return World(h: h, customer: c, host: host, hostKey: hostKey, otherHost: other, guestKey: guestKey)
    }

    @Test(arguments: TestStores.kinds)
    func eventsFromKeysFollowThePolicy(kind: HubStore.Kind) async throws {
        let w = try await world(kind)
        try await w.h.app.test(.router) { client in
            // Hub-only types cannot be posted by keys.
            for t in ["node_recovered", "op_applied", "host_enrolled", "keys_revoked", "expected_backup_missed"] {
                let r = try await client.call(.post, "/api/v1/events", key: w.hostKey, body: #"{"type":"\#(t)"}"#)
                #expect(r.status == .forbidden, "\(t)")
            }
            // A guest may post its db dumps and app_* events, not a host's backup events.
            #expect(try await client.call(.post, "/api/v1/events", key: w.guestKey, body: #"{"type":"db_dump_failed"}"#).status == .created)
            #expect(try await client.call(.post, "/api/v1/events", key: w.guestKey, body: #"{"type":"app_started","severity":"critical"}"#).json?["severity"] == "warning")
            #expect(try await client.call(.post, "/api/v1/events", key: w.guestKey, body: #"{"type":"backup_completed"}"#).status == .badRequest)
            // The severity of a known type is the hub's; the time is the hub's receive time.
            let r = try await client.call(.post, "/api/v1/events", key: w.hostKey,
                                          body: #"{"type":"backup_failed","severity":"info","at":"2099-01-01T00:00:00Z","data":{"error":"x"}}"#)
            #expect(r.json?["severity"] == "critical")
            let at = try #require(r.json?["at"]?.stringValue.flatMap { try? Date.ISO8601FormatStyle().parse($0) })
            #expect(abs(at.timeIntervalSinceNow) < 60)
            #expect(r.json?["data"]?["client_at"] == "2099-01-01T00:00:00Z")
            // 16 KiB of data at most.
            let big = String(repeating: "x", count: 17 * 1024)
            #expect(try await client.call(.post, "/api/v1/events", key: w.hostKey, body: #"{"type":"backup_failed","data":{"e":"\#(big)"}}"#).status == .contentTooLarge)
            // A host key reads its own host's events only.
            _ = try await w.h.hub.postEvent(.init(type: "backup_completed", severity: nil, guestID: nil, at: nil, data: nil),
                                            by: .host(hostID: w.otherHost, customerID: w.customer))
            let mine = try await client.call(.get, "/api/v1/events", key: w.hostKey).json?["events"]?.arrayValue ?? []
            #expect(!mine.isEmpty && mine.allSatisfy { $0["host_id"]?.stringValue == w.host })
            let theirs = try await client.call(.get, "/api/v1/events?host_id=\(w.otherHost)", key: w.hostKey).json?["events"]?.arrayValue
            #expect(theirs == [])
        }
        await w.h.hub.store.close()
    }

    /// A `backup_completed` dated 2099 must not silence the backup deadline (it counts at receive time).
    @Test func aFutureDatedBackupDoesNotSilenceTheDeadline() async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_782_781_200))  // 2026-06-30T01:00Z
        let w = try await world(.sqlite, clock: clock)
        _ = try await w.h.hub.putDesired(hostID: w.host, body: Data(#"{"guests":[],"storage_policy":{"backup_storage":"pbs"}}"#.utf8), by: .operator)
        _ = try await w.h.hub.publishDesired(hostID: w.host, by: .operator)
        let p = Principal.host(hostID: w.host, customerID: w.customer)
        _ = try await w.h.hub.postEvent(.init(type: "backup_completed", severity: nil, guestID: nil, at: Date(timeIntervalSince1970: 4_070_908_800), data: nil), by: p)
        clock.set(Date(timeIntervalSince1970: 1_782_882_000))  // next day 07:00 local, past the deadline
        let missed = try await w.h.hub.checkBackupDeadlines(deadlineHour: 6)
        #expect(missed.map(\.hostID).contains(w.host))
        await w.h.hub.store.close()
    }

    /// Mails carry only whitelisted fields in a safe charset, never raw client text.
    @Test func mailsCarryNoRawClientData() async throws {
        let w = try await world(.sqlite)
        let p = Principal.host(hostID: w.host, customerID: w.customer)
        let ev = try await w.h.hub.postEvent(.init(type: "backup_failed", severity: nil, guestID: nil, at: nil, data: [
            "vmid": 120, "storage": "pbs-felhom", "error": "Click http://evil.example/reset", "op": "x\r\nBcc: all@example.com",
        ]), by: p)
        let (_, body) = Templates.render(ev, hostName: "box", language: .en)
        #expect(body.contains("vmid: 120") && body.contains("storage: pbs-felhom"))
        #expect(!body.contains("evil.example") && !body.contains("Bcc"))
        await w.h.hub.store.close()
    }

    /// Item 12: per-key token buckets answer 429 with Retry-After; other keys and the operator go on.
    @Test func aFloodingKeyIsLimited() async throws {
        var settings = Hub.Settings()
        settings.rateLimits[.event] = .init(perMinute: 60, burst: 5)
        let w = try await world(.sqlite, settings: settings)
        try await w.h.app.test(.router) { client in
            for _ in 0..<5 {
                #expect(try await client.call(.post, "/api/v1/events", key: w.guestKey, body: #"{"type":"app_ping"}"#).status == .created)
            }
            let limited = try await client.execute(uri: "/api/v1/events", method: .post,
                                                   headers: [.authorization: "Bearer \(w.guestKey)", .contentType: "application/json"],
                                                   body: ByteBuffer(string: #"{"type":"app_ping"}"#)) { $0 }
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] == "1")
            #expect(try await client.call(.post, "/api/v1/events", key: w.hostKey, body: #"{"type":"backup_completed"}"#).status == .created)
            for _ in 0..<20 {
                #expect(try await client.call(.post, "/api/v1/events", key: operatorKey, body: #"{"type":"note"}"#).status == .created)
            }
        }
        // Host reports: 12 per minute by default.
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let limiter = RateLimiter(limits: Hub.Settings().rateLimits, clock: clock)
        let host = Principal.host(hostID: "h", customerID: "c")
        for _ in 0..<12 { try limiter.take(.hostReport, for: host) }
        #expect(throws: HubError.self) { try limiter.take(.hostReport, for: host) }
        clock.advance(by: 5)
        try limiter.take(.hostReport, for: host)
        #expect(throws: HubError.self) { try limiter.take(.hostReport, for: host) }
        await w.h.hub.store.close()
    }
}

/// Issue 10 item 18: the operator's kill switch.
@Suite struct KillSwitchTests {
    @Test(arguments: TestStores.kinds)
    func blockingAHostMutesItAndSuspendingACustomerStopsItsKeys(kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let cid = try await client.call(.post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#).json?["id"]?.stringValue ?? ""
            let host = try #require(try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"box"}"#).json)
            let hid = host["id"]?.stringValue ?? "", hkey = host["api_key"]?.stringValue ?? ""
            let gkey = try await client.call(.post, "/api/v1/hosts/\(hid)/guests", key: operatorKey, body: #"{"name":"web"}"#).json?["api_key"]?.stringValue ?? ""
            let ckey = try await client.call(.post, "/api/v1/customers/\(cid)/keys", key: operatorKey).json?["api_key"]?.stringValue ?? ""
            // Only the operator may block.
            #expect(try await client.call(.post, "/api/v1/hosts/\(hid)/block", key: hkey).status == .forbidden)
            #expect(try await client.call(.post, "/api/v1/hosts/\(hid)/block", key: operatorKey).json?["blocked"] == .bool(true))
            let r = try await client.call(.post, "/api/v1/host-report", key: hkey, body: sampleReport())
            #expect(r.status == .ok && r.json?["blocked"] == .bool(true) && r.json?["has_signed_ops"] == .bool(false))
            let stored = try await h.hub.store.withDB { db in try await db.raw("SELECT COUNT(*) AS n FROM host_reports").first()?.decode(column: "n", as: Int.self) }
            #expect(stored == 0, "a blocked host's report is not stored")
            #expect(try await client.call(.get, "/api/v1/control", key: hkey).json?["blocked"] == .bool(true))
            #expect(try await client.call(.post, "/api/v1/hosts/\(hid)/unblock", key: operatorKey).json?["blocked"] == .bool(false))
            #expect(try await client.call(.post, "/api/v1/host-report", key: hkey, body: sampleReport()).json?["blocked"] == .bool(false))
            let events = try await h.hub.events(hostID: hid, type: nil, since: nil, limit: 10, by: .operator).map(\.type)
            #expect(events.contains("host_blocked") && events.contains("host_unblocked"))
            // Suspending the customer: its hosts are blocked, its customer and guest keys refused.
            #expect(try await client.call(.post, "/api/v1/customers/\(cid)/suspend", key: operatorKey).status == .ok)
            #expect(try await client.call(.get, "/api/v1/control", key: hkey).json?["blocked"] == .bool(true))
            let refused = try await client.call(.get, "/api/v1/hosts", key: ckey)
            #expect(refused.status == .forbidden && refused.json?["error"]?["code"] == "customer_suspended")
            #expect(try await client.call(.post, "/api/v1/guest-report", key: gkey, body: sampleGuestReport).status == .forbidden)
            #expect(try await client.call(.get, "/api/v1/customers/\(cid)", key: operatorKey).json?["suspended"] == .bool(true))
            // A new box of a suspended customer starts blocked.
            let late = try #require(try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"box2"}"#).json)
            #expect(try await client.call(.get, "/api/v1/control", key: late["api_key"]?.stringValue).json?["blocked"] == .bool(true))
            #expect(try await client.call(.post, "/api/v1/customers/\(cid)/resume", key: operatorKey).status == .ok)
            #expect(try await client.call(.get, "/api/v1/control", key: hkey).json?["blocked"] == .bool(false))
            #expect(try await client.call(.get, "/api/v1/hosts", key: ckey).status == .ok)
        }
        await h.hub.store.close()
    }
}
