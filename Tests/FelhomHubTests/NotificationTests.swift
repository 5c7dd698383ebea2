import FelhomCore
import FelhomTestSupport
import Foundation
import SQLKit
import Synchronization
import Testing

@testable import FelhomHub

/// A mailer that fails a given number of times, then records what it sends.
final class FlakyMailer: Mailer {
    let failures = Mutex(0)
    let sent = Mutex<[MailMessage]>([])
    init(failFirst n: Int) { failures.withLock { $0 = n } }
    func send(_ message: MailMessage) async throws {
        let fail = failures.withLock { f -> Bool in
            if f > 0 {
                f -= 1
                return true
            }
            return false
        }
        if fail { throw MailError(message: "relay said 451 try again later") }
        sent.withLock { $0.append(message) }
    }
}

@Suite struct NotificationTests {
    func setup(_ kind: HubStore.Kind, clock: ManualClock, language: String = "hu") async throws -> (Hub, String, String) {
        var n = NotificationSettings()
        n.operatorEmail = "ops@felhom.example"
        n.from = "hub@felhom.example"
        let hub = Hub(store: try await TestStores.open(kind), operatorKey: operatorKey, clock: clock, notifications: n)
        let c = try await hub.createCustomer(
            .init(name: "Kiss Anna", email: "anna@example.hu", domain: "kiss.example.hu", timezone: nil, language: language), by: .operator)
        let (host, _) = try await hub.createHost(customerID: c, name: "nappali", by: .operator)
        return (hub, host, c)
    }

    func outbox(_ hub: Hub) async throws -> [(channel: String, to: String, subject: String, status: String)] {
        try await hub.store.withDB { db in
            try await db.select().columns("channel", "recipient", "subject", "status").from("notification_outbox").orderBy("created_at").orderBy(
                "channel", .descending
            ).all().map {
                (
                    try $0.decode(column: "channel", as: String.self), try $0.decode(column: "recipient", as: String.self),
                    try $0.decode(column: "subject", as: String.self), try $0.decode(column: "status", as: String.self)
                )
            }
        }
    }

    @Test(arguments: TestStores.kinds)
    func eventsQueueOperatorAndCustomerMailWithCooldowns(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, customer) = try await setup(kind, clock: clock)
        let p = Principal.host(hostID: host, customerID: customer)
        _ = try await hub.postEvent(.init(type: "backup_failed", severity: .critical, guestID: nil, at: nil, data: ["error": "disk full"]), by: p)
        var box = try await outbox(hub)
        #expect(box.count == 2)
        #expect(
            box.contains { $0.channel == "operator" && $0.to == "ops@felhom.example" && $0.subject == "[felhom] nappali reported a FAILED backup" })
        #expect(
            box.contains { $0.channel == "customer" && $0.to == "anna@example.hu" && $0.subject == "Felhom: a(z) nappali gép mentése nem sikerült" })
        // Within the operator's hour and the customer's 6 h: nothing new.
        clock.advance(by: 30 * 60)
        _ = try await hub.postEvent(.init(type: "backup_failed", severity: nil, guestID: nil, at: nil, data: nil), by: p)
        #expect(try await outbox(hub).count == 2)
        // After an hour the operator hears again, the customer not yet.
        clock.advance(by: 40 * 60)
        _ = try await hub.postEvent(.init(type: "backup_failed", severity: nil, guestID: nil, at: nil, data: nil), by: p)
        box = try await outbox(hub)
        #expect(box.filter { $0.channel == "operator" }.count == 2)
        #expect(box.filter { $0.channel == "customer" }.count == 1)
        // Types outside the customer's defaults reach only the operator.
        _ = try await hub.postEvent(.init(type: "memory_limit_exceeded", severity: nil, guestID: nil, at: nil, data: nil), by: p)
        box = try await outbox(hub)
        #expect(box.filter { $0.channel == "customer" }.count == 1)
        #expect(box.filter { $0.channel == "operator" }.count == 3)
        await hub.store.close()
    }

    /// `backup_unencrypted` is registered critical and immediate: the operator hears at once, each
    /// time, held back only by a five-minute floor (a hostile box cannot flood the mailbox).
    @Test(arguments: TestStores.kinds)
    func anUnencryptedBackupMailsTheOperatorAtOnce(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, customer) = try await setup(kind, clock: clock)
        let p = Principal.host(hostID: host, customerID: customer)
        func operatorMails() async throws -> Int { try await outbox(hub).filter { $0.channel == "operator" }.count }
        _ = try await hub.postEvent(.init(type: "backup_unencrypted", severity: nil, guestID: nil, at: nil, data: ["vmid": 100]), by: p)
        #expect(try await operatorMails() == 1)
        clock.advance(by: 60)
        _ = try await hub.postEvent(.init(type: "backup_unencrypted", severity: nil, guestID: nil, at: nil, data: ["vmid": 101]), by: p)
        #expect(try await operatorMails() == 1, "within the floor")
        clock.advance(by: 10 * 60)
        _ = try await hub.postEvent(.init(type: "backup_unencrypted", severity: nil, guestID: nil, at: nil, data: ["vmid": 100]), by: p)
        #expect(try await operatorMails() == 2, "11 minutes later, inside the hour-long cooldown of other types: mailed again")
        await hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func failedSendsAreRetriedWithBackoffAndLogged(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, customer) = try await setup(kind, clock: clock)
        _ = try await hub.postEvent(
            .init(type: "backup_failed", severity: .critical, guestID: nil, at: nil, data: nil),
            by: .host(hostID: host, customerID: customer))
        let mailer = FlakyMailer(failFirst: 2)
        var r = try await hub.deliverMail(using: mailer)
        #expect(r.sent == 0 && r.failed == 2)
        // Not due yet: nothing is tried.
        r = try await hub.deliverMail(using: mailer)
        #expect(r.sent + r.failed == 0)
        clock.advance(by: 61)
        r = try await hub.deliverMail(using: mailer)
        #expect(r.sent == 2)
        #expect(mailer.sent.withLock { $0.map(\.to).sorted() } == ["anna@example.hu", "ops@felhom.example"])
        let log = try await hub.store.withDB { db in
            try await db.select().column("result").from("notification_log").all().map { try $0.decode(column: "result", as: String.self) }
        }
        #expect(log.sorted() == ["failed", "failed", "sent", "sent"])
        #expect(try await outbox(hub).allSatisfy { $0.status == "sent" })
        #expect(NotificationSettings.backoff(attempts: 1) == 60)
        #expect(NotificationSettings.backoff(attempts: 3) == 240)
        #expect(NotificationSettings.backoff(attempts: 20) == 3600)
        await hub.store.close()
    }

    @Test func englishCustomersGetEnglishMail() async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, customer) = try await setup(.sqlite, clock: clock, language: "en")
        _ = try await hub.postEvent(
            .init(type: "backup_failed", severity: .critical, guestID: nil, at: nil, data: nil), by: .host(hostID: host, customerID: customer))
        #expect(try await outbox(hub).contains { $0.channel == "customer" && $0.subject == "[felhom] nappali reported a FAILED backup" })
        await hub.store.close()
    }
}

@Suite struct CustomerPreferenceTests {
    @Test(arguments: TestStores.kinds)
    func customerChoosesTypesAndMailFollows(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let hub = Hub(store: try await TestStores.open(kind), operatorKey: operatorKey, clock: clock)
        let c = try await hub.createCustomer(
            .init(name: "Kiss Anna", email: "anna@example.hu", domain: "kiss.example.hu", timezone: nil, language: "hu"), by: .operator)
        let other = try await hub.createCustomer(
            .init(name: "B", email: "b@example.hu", domain: "b.example.hu", timezone: nil, language: "hu"), by: .operator)
        let (host, _) = try await hub.createHost(customerID: c, name: "nappali", by: .operator)
        let me = Principal.customer(customerID: c)
        #expect(try await hub.customer(c, by: me).notifyTypesDefault)
        #expect(try await hub.customer(c, by: me).notifyTypes.contains("node_down"))
        // Bad input names the item and stores nothing.
        let e = await #expect(throws: HubError.self) {
            try await hub.setNotificationTypes(customerID: c, types: ["node_down", "disk_on_fire"], by: me)
        }
        #expect(e?.path == "$.types[1]")
        #expect(try await hub.customer(c, by: me).notifyTypesDefault)
        // Another customer's id is not found, not forbidden.
        await #expect(throws: HubError.self) { try await hub.setNotificationTypes(customerID: other, types: [], by: me) }
        let saved = try await hub.setNotificationTypes(customerID: c, types: ["backup_failed"], by: me)
        #expect(saved.notifyTypes == ["backup_failed"] && !saved.notifyTypesDefault)
        #expect(try await hub.customers(by: me).map(\.id) == [c])
        #expect(try await hub.customers(by: .operator).count == 2)
        let hostP = Principal.host(hostID: host, customerID: c)
        _ = try await hub.postEvent(.init(type: "restore_test_failed", severity: .critical, guestID: nil, at: nil, data: nil), by: hostP)
        _ = try await hub.postEvent(.init(type: "backup_failed", severity: .critical, guestID: nil, at: nil, data: nil), by: hostP)
        let customerMail = try await hub.store.withDB { db in
            try await db.select().column("event_type").from("notification_outbox").where("channel", .equal, SQLBind("customer")).all()
                .map { try $0.decode(column: "event_type", as: String.self) }
        }
        #expect(customerMail == ["backup_failed"])
        // null returns to the default.
        #expect(try await hub.setNotificationTypes(customerID: c, types: nil, by: .operator).notifyTypesDefault)
        await hub.store.close()
    }
}

@Suite struct GroupCommitTests {
    /// Concurrent reports share commits (SQLite: one lane; PostgreSQL: lanes, each batch one
    /// statement); each caller still gets its own answer, one failing write (a host that does not
    /// exist) does not fail the others in its batch, and a host reporting twice at once has both
    /// reports stored, the later one latest.
    @Test(arguments: TestStores.kinds)
    func concurrentReportsAllLandAndABadOneFailsAlone(_ kind: HubStore.Kind) async throws {
        let hub = Hub(store: try await TestStores.open(kind), operatorKey: operatorKey)
        let c = try await hub.createCustomer(
            .init(name: "A", email: "a@example.hu", domain: "a.example.hu", timezone: nil, language: nil), by: .operator)
        var hosts: [String] = []
        for i in 0..<30 { hosts.append(try await hub.createHost(customerID: c, name: "h\(i)", by: .operator).id) }
        let body = Data(sampleReport().utf8)
        // hosts[0] reports three times at once, with three different states.
        let twice = (1...3).map {
            Data(sampleReport().replacingOccurrences(of: "\"agent_version\":\"0.1.0\"", with: "\"agent_version\":\"0.1.\($0)\"").utf8)
        }
        #expect(Set(twice).count == 3)
        let results = await withTaskGroup(of: (String, Bool).self) { group in
            for (i, h) in (hosts + ["hst_does_not_exist"]).enumerated() {
                for (j, b) in (i == 0 ? twice : [body]).enumerated() {
                    group.addTask {
                        do {
                            _ = try await hub.ingestHostReport(b, by: .host(hostID: h, customerID: c))
                            return ("\(h)#\(j)", true)
                        } catch {
                            return ("\(h)#\(j)", false)
                        }
                    }
                }
            }
            var out: [String: Bool] = [:]
            for await (h, ok) in group { out[h] = ok }
            return out
        }
        #expect(hosts.allSatisfy { results["\($0)#0"] == true })
        #expect(results["\(hosts[0])#1"] == true && results["\(hosts[0])#2"] == true)
        #expect(results["hst_does_not_exist#0"] == false)
        let stored = try await hub.store.withDB { db in
            try await db.select().column("host_id").from("host_reports").all().map { try $0.decode(column: "host_id", as: String.self) }
        }
        #expect(stored.count == 32, "three states of hosts[0], one of each other host")
        #expect(stored.filter { $0 == hosts[0] }.count == 3)
        let first = hosts[0]
        let latest = try await hub.store.withDB { db in try await ReportsTable.latestHostReport(hostID: first, in: db) }
        #expect(latest != nil)
        let hostRows = try await hub.store.withDB { db in
            try await db.select().column("id").from("hosts").where("last_report_at", .isNot, SQLLiteral.null).all().count
        }
        #expect(hostRows == 30)
        await hub.store.close()
    }

    /// A failed batch is retried item by item only when nothing of it can have been stored: after a
    /// lost connection (no SQLSTATE) every caller gets the error, never a second copy of a write.
    @Test(arguments: [(nil as String?, false), ("08006", false), ("57P01", false), ("23505", true), ("40P01", true)])
    func aFailedBatchIsRetriedAloneOnlyWhenTheServerRefusedIt(sqlState: String?, retried: Bool) async throws {
        let calls = Mutex<[[Int]]>([])
        let body: GroupCommit<Int, Int>.BatchBody = { items in
            let first = calls.withLock { c in
                c.append(items)
                return c.count == 1
            }
            if first { throw StoreError(code: .query, message: "batch failed", sqlState: sqlState) }
            return items
        }
        let commit = GroupCommit<Int, Int>(retryAlone: { ($0 as? StoreError)?.refusedByServer ?? false }, batch: body)
        let results = await withTaskGroup(of: (Int, Bool).self) { group in
            for i in 1...5 { group.addTask { (i, (try? await commit.submit(i)) == i) } }
            var out: [Int: Bool] = [:]
            for await (i, ok) in group { out[i] = ok }
            return out
        }
        let batches = calls.withLock { $0 }
        let first = Set(batches[0])
        let later = batches.dropFirst().flatMap { $0 }
        if retried {
            #expect(results.values.allSatisfy { $0 }, "every item stored after the retry: \(batches)")
            #expect(first.isSubset(of: Set(later)), "the failed batch's items were sent again: \(batches)")
        } else {
            #expect(results.filter { !$0.value }.map(\.key).sorted() == first.sorted(), "only the failed batch's callers get the error")
            #expect(first.isDisjoint(with: Set(later)), "nothing of the failed batch was sent again: \(batches)")
        }
    }

    /// A key's lane is the same in every process (replicas agree) and keys spread over the lanes.
    @Test func lanesAreStableAndSpread() {
        #expect(GroupCommitLanes<Int, Int>.lane(of: "hst_abc", count: 4) == GroupCommitLanes<Int, Int>.lane(of: "hst_abc", count: 4))
        let counts = (0..<1000).reduce(into: [Int: Int]()) { c, i in c[GroupCommitLanes<Int, Int>.lane(of: "hst_\(i)", count: 4), default: 0] += 1 }
        #expect(counts.keys.sorted() == [0, 1, 2, 3])
        #expect(counts.values.allSatisfy { $0 > 150 }, "\(counts)")
    }
}
