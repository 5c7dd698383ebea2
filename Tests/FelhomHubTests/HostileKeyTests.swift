import FelhomCore
import FelhomTestSupport
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
        let c = try await hub.createCustomer(
            .init(name: "A", email: "a@example.hu", domain: "a.example.hu", timezone: nil, language: nil), by: .operator)
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
            #expect(
                try await client.call(.post, "/api/v1/events", key: w.guestKey, body: #"{"type":"app_started","severity":"critical"}"#).json?[
                    "severity"] == "warning")
            #expect(try await client.call(.post, "/api/v1/events", key: w.guestKey, body: #"{"type":"backup_completed"}"#).status == .forbidden)
            // The severity of a known type is the hub's; the time is the hub's receive time.
            let r = try await client.call(
                .post, "/api/v1/events", key: w.hostKey,
                body: #"{"type":"backup_failed","severity":"info","at":"2099-01-01T00:00:00Z","data":{"error":"x"}}"#)
            #expect(r.json?["severity"] == "critical")
            let at = try #require(r.json?["at"]?.stringValue.flatMap { try? Date.ISO8601FormatStyle().parse($0) })
            #expect(abs(at.timeIntervalSinceNow) < 60)
            #expect(r.json?["data"]?["client_at"] == "2099-01-01T00:00:00Z")
            // 16 KiB of data at most.
            let big = String(repeating: "x", count: 17 * 1024)
            #expect(
                try await client.call(.post, "/api/v1/events", key: w.hostKey, body: #"{"type":"backup_failed","data":{"e":"\#(big)"}}"#).status
                    == .contentTooLarge)
            // A host key reads its own host's events only.
            _ = try await w.h.hub.postEvent(
                .init(type: "backup_completed", severity: nil, guestID: nil, at: nil, data: nil),
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
        _ = try await w.h.hub.postEvent(
            .init(type: "backup_completed", severity: nil, guestID: nil, at: Date(timeIntervalSince1970: 4_070_908_800), data: nil), by: p)
        clock.set(Date(timeIntervalSince1970: 1_782_882_000))  // next day 07:00 local, past the deadline
        let missed = try await w.h.hub.checkBackupDeadlines(deadlineHour: 6)
        #expect(missed.map(\.hostID).contains(w.host))
        await w.h.hub.store.close()
    }

    /// Mails carry only whitelisted fields in a safe charset, never raw client text.
    @Test func mailsCarryNoRawClientData() async throws {
        let w = try await world(.sqlite)
        let p = Principal.host(hostID: w.host, customerID: w.customer)
        let ev = try await w.h.hub.postEvent(
            .init(
                type: "backup_failed", severity: nil, guestID: nil, at: nil,
                data: [
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
        // A clock that stands still: no token refills while the test runs, however slow the machine.
        let w = try await world(.sqlite, clock: ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000)), settings: settings)
        try await w.h.app.test(.router) { client in
            for _ in 0..<5 {
                #expect(try await client.call(.post, "/api/v1/events", key: w.guestKey, body: #"{"type":"app_ping"}"#).status == .created)
            }
            let limited = try await client.execute(
                uri: "/api/v1/events", method: .post,
                headers: [.authorization: "Bearer \(w.guestKey)", .contentType: "application/json"],
                body: ByteBuffer(string: #"{"type":"app_ping"}"#)
            ) { $0 }
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
            let cid =
                try await client.call(
                    .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#
                ).json?["id"]?.stringValue ?? ""
            let host = try #require(
                try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"box"}"#).json)
            let hid = host["id"]?.stringValue ?? ""
            let hkey = host["api_key"]?.stringValue ?? ""
            let gkey =
                try await client.call(.post, "/api/v1/hosts/\(hid)/guests", key: operatorKey, body: #"{"name":"web"}"#).json?["api_key"]?.stringValue
                ?? ""
            let ckey = try await client.call(.post, "/api/v1/customers/\(cid)/keys", key: operatorKey).json?["api_key"]?.stringValue ?? ""
            // Only the operator may block.
            #expect(try await client.call(.post, "/api/v1/hosts/\(hid)/block", key: hkey).status == .forbidden)
            #expect(try await client.call(.post, "/api/v1/hosts/\(hid)/block", key: operatorKey).json?["blocked"] == .bool(true))
            let r = try await client.call(.post, "/api/v1/host-report", key: hkey, body: sampleReport())
            #expect(r.status == .ok && r.json?["blocked"] == .bool(true) && r.json?["has_signed_ops"] == .bool(false))
            let stored = try await h.hub.store.withDB { db in
                try await db.raw("SELECT COUNT(*) AS n FROM host_reports").first()?.decode(column: "n", as: Int.self)
            }
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
            let late = try #require(
                try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"box2"}"#).json)
            #expect(try await client.call(.get, "/api/v1/control", key: late["api_key"]?.stringValue).json?["blocked"] == .bool(true))
            #expect(try await client.call(.post, "/api/v1/customers/\(cid)/resume", key: operatorKey).status == .ok)
            #expect(try await client.call(.get, "/api/v1/control", key: hkey).json?["blocked"] == .bool(false))
            #expect(try await client.call(.get, "/api/v1/hosts", key: ckey).status == .ok)
        }
        await h.hub.store.close()
    }
}

/// Issue 10 item 15: retrieval and dashboard sign-in limits are per client, sessions are bound
/// to the operator key, and the client's address is only taken from a trusted proxy.
@Suite struct PerClientLimitTests {
    @Test func forwardedForIsBelievedOnlyFromATrustedProxy() {
        let trusted: Set<String> = ["10.0.0.2"]
        #expect(Hub.clientAddress(peer: "203.0.113.9", forwardedFor: "1.2.3.4", trusted: trusted) == "203.0.113.9")
        #expect(Hub.clientAddress(peer: "10.0.0.2", forwardedFor: "1.2.3.4", trusted: trusted) == "1.2.3.4")
        // A client cannot hide behind a spoofed first hop: the proxy appended the real one last.
        #expect(Hub.clientAddress(peer: "10.0.0.2", forwardedFor: "9.9.9.9, 198.51.100.7", trusted: trusted) == "198.51.100.7")
        #expect(Hub.clientAddress(peer: "10.0.0.2", forwardedFor: nil, trusted: trusted) == "10.0.0.2")
        #expect(Hub.clientAddress(peer: nil, forwardedFor: "1.2.3.4", trusted: trusted) == "unknown")
    }

    @Test(arguments: TestStores.kinds)
    func aStrangerCannotLockACustomerOutOfRecovery(kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        let hub = h.hub
        let c = try await hub.createCustomer(
            .init(name: "K", email: "k@example.hu", domain: "kiss.example.hu", timezone: nil, language: nil), by: .operator)
        _ = try await hub.createHost(customerID: c, name: "box", by: .operator)
        let pass = try await hub.newRetrievalPassphrase(customerID: c, by: .operator)
        func retrieve(_ p: String, from client: String, domain: String = "kiss.example.hu") async -> Int {
            do {
                _ = try await hub.retrieve(domain: domain, passphrase: p, what: "recovery", hubURL: "https://hub", client: client)
                return 200
            } catch let e as HubError { return Int(e.status.code) } catch { return 0 }
        }
        // A stranger guesses in parallel: the attempts are reserved before the slow check, so
        // exactly 5 are tried and the rest are refused without running the KDF.
        let results = await withTaskGroup(of: Int.self) { g in
            for _ in 0..<12 { g.addTask { await retrieve("alma-alma-alma-alma", from: "198.51.100.66") } }
            return await g.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(results.filter { $0 == 401 }.count == 5, "\(results)")
        #expect(results.filter { $0 == 429 }.count == 7, "\(results)")
        // The customer, from their own address, is not locked out.
        #expect(await retrieve(pass, from: "203.0.113.5") == 200)
        // The lock-out was recorded once and mails the operator.
        let locked = try await hub.events(hostID: nil, type: "retrieval_locked", since: nil, limit: 10, by: .operator)
        #expect(locked.count == 1)
        #expect(hub.notifications.operatorTypes.contains("retrieval_locked"))
        // Unknown domains: the same answer, and they count against the guessing client too.
        #expect(await retrieve(pass, from: "192.0.2.1", domain: "nobody.example.hu") == 401)
        await h.hub.store.close()
    }

    @Test func dashboardSignInBacksOffPerClientAndSessionsFollowTheOperatorKey() async throws {
        let path = NSTemporaryDirectory() + "felhom-dash-\(UUID().uuidString).sqlite"
        let store = try await HubStore.open(url: "sqlite:\(path)")
        let hub = Hub(store: store, operatorKey: operatorKey)
        let app = Application(router: HubAPI.router(hub: hub))
        let cookie = try await app.test(.router) { client -> String in
            for _ in 0..<10 {
                #expect(try await client.page(.post, "/login", form: ["key": "wrong-key-000000000000000000000"]).status == .unauthorized)
            }
            #expect(try await client.page(.post, "/login", form: ["key": operatorKey]).status == .tooManyRequests)
            // Another client (another address) is not affected by the first one's failures.
            try await store.withDB { db in try await db.raw("UPDATE dashboard_login_failures SET client = '198.51.100.66'").run() }
            let ok = try await client.page(.post, "/login", form: ["key": operatorKey])
            #expect(ok.status == .seeOther)
            let cookie = String((ok.headers[.setCookie] ?? "").split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1])
            #expect(try await client.page(.get, "/", cookie: cookie).status == .ok)
            return cookie
        }
        // A hub restarted with a rotated operator key does not honour the old sessions.
        let rotated = Hub(store: store, operatorKey: operatorKey + "-rotated")
        try await Application(router: HubAPI.router(hub: rotated)).test(.router) { client in
            let r = try await client.page(.get, "/", cookie: cookie)
            #expect(r.status == .seeOther, "redirected to /login")
        }
        // Sign out everywhere ends every session.
        try await app.test(.router) { client in
            #expect(try await client.page(.get, "/", cookie: cookie).status == .ok)
            let home = try await client.page(.get, "/", cookie: cookie)
            let csrf = String(home.html.components(separatedBy: #"name="csrf" value=""#).dropFirst().first?.prefix(64) ?? "")
            #expect(try await client.page(.post, "/logout-everywhere", cookie: cookie, form: ["csrf": csrf]).status == .seeOther)
            #expect(try await client.page(.get, "/", cookie: cookie).status == .seeOther)
        }
        await store.close()
    }
}

/// Issue 10 item 12: nothing a key can write grows without bound.
@Suite struct RetentionTests {
    @Test(arguments: TestStores.kinds)
    func oldHistoryIsPrunedAndPendingMailIsKept(kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let store = try await TestStores.open(kind)
        var mail = NotificationSettings()
        mail.operatorEmail = "ops@example.hu"
        let hub = Hub(store: store, operatorKey: operatorKey, clock: clock, notifications: mail)
        let c = try await hub.createCustomer(
            .init(name: "A", email: "a@example.hu", domain: "a.example.hu", timezone: nil, language: nil), by: .operator)
        let (host, _) = try await hub.createHost(customerID: c, name: "box", by: .operator)
        let p = Principal.host(hostID: host, customerID: c)
        _ = try await hub.postEvent(.init(type: "backup_failed", severity: nil, guestID: nil, at: nil, data: nil), by: p)
        _ = try await hub.deliverMail(using: FlakyMailer(failFirst: 0))
        _ = try await hub.postEvent(.init(type: "restore_test_failed", severity: nil, guestID: nil, at: nil, data: nil), by: p)  // stays pending
        _ = try? await hub.retrieve(domain: "a.example.hu", passphrase: "x-y-z-w", what: "recovery", hubURL: "https://h", client: "192.0.2.1")
        clock.advance(by: 100 * 86_400)
        _ = try await hub.postEvent(.init(type: "backup_completed", severity: nil, guestID: nil, at: nil, data: nil), by: p)
        let deleted = try await hub.pruneHistory(eventDays: 90, mailDays: 30)
        #expect(deleted["events"] == 2)
        #expect(deleted["retrieval_attempts"] == 1)
        #expect((deleted["notification_outbox"] ?? 0) >= 1)
        let left = try await hub.events(hostID: host, type: nil, since: nil, limit: 10, by: .operator).map(\.type)
        #expect(left == ["backup_completed"])
        let pending = try await store.withDB { db in
            try await db.raw("SELECT COUNT(*) AS n FROM notification_outbox WHERE status = 'pending'").first()?.decode(column: "n", as: Int.self)
        }
        #expect((pending ?? 0) >= 1, "pending mail is never dropped")
        await store.close()
    }
}
