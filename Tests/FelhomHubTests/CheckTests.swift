import FelhomAPI
import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import SQLKit
import Testing

@Suite struct LivenessRuleTests {
    let t = Liveness.Thresholds()

    @Test func states() {
        #expect(Liveness.state(lastReportAt: nil, createdAt: 0, now: 60, thresholds: t) == .unknown)
        #expect(Liveness.state(lastReportAt: 0, createdAt: 0, now: 29 * 60, thresholds: t) == .alive)
        #expect(Liveness.state(lastReportAt: 0, createdAt: 0, now: 30 * 60, thresholds: t) == .stale)
        #expect(Liveness.state(lastReportAt: 0, createdAt: 0, now: 60 * 60, thresholds: t) == .down)
        #expect(Liveness.state(lastReportAt: nil, createdAt: 0, now: 61 * 60, thresholds: t) == .down)
    }

    @Test func onlyRealTransitionsEmit() {
        #expect(Liveness.event(from: .alive, to: .stale)?.type == "node_stale")
        #expect(Liveness.event(from: .stale, to: .down)?.type == "node_down")
        #expect(Liveness.event(from: .alive, to: .down)?.type == "node_down")
        #expect(Liveness.event(from: .down, to: .alive)?.type == "node_recovered")
        #expect(Liveness.event(from: .stale, to: .alive)?.type == "node_recovered")
        #expect(Liveness.event(from: .unknown, to: .alive) == nil)
        #expect(Liveness.event(from: .down, to: .stale) == nil)
    }

    @Test func deadlineWindowFollowsTheCustomersTimeZone() {
        // 2026-07-01 03:30 UTC is 05:30 in Budapest (CEST): before a 06:00 deadline.
        let tz = TimeZone(identifier: "Europe/Budapest")!
        let w = BackupDeadlines.window(now: Date(timeIntervalSince1970: 1_782_876_600), timeZone: tz, deadlineHour: 6)
        #expect(w.day == "2026-07-01")
        #expect(w.midnight == Date(timeIntervalSince1970: 1_782_856_800))  // 2026-06-30T22:00Z
        #expect(w.deadline == Date(timeIntervalSince1970: 1_782_878_400))  // 04:00Z
    }
}

@Suite struct CheckerTests {
    func setup(_ kind: HubStore.Kind, clock: ManualClock) async throws -> (Hub, String, String) {
        let store = try await TestStores.open(kind)
        let hub = Hub(store: store, operatorKey: operatorKey, clock: clock)
        let c = try await hub.createCustomer(
            .init(name: "Kiss Anna", email: "a@example.hu", domain: "kiss.example.hu", timezone: "Europe/Budapest", language: nil), by: .operator)
        let (host, key) = try await hub.createHost(customerID: c, name: "box", by: .operator)
        return (hub, host, key)
    }

    func report(_ hub: Hub, _ host: String, _ customer: String) async throws {
        _ = try await hub.ingestHostReport(Data(sampleReport().utf8), by: .host(hostID: host, customerID: customer))
    }

    @Test(arguments: TestStores.kinds)
    func livenessEmitsOnTransitionsOnly(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, _) = try await setup(kind, clock: clock)
        let customer = try await hub.host(host, by: .operator).customerID
        try await report(hub, host, customer)
        #expect(try await hub.checkLiveness().isEmpty)  // unknown → alive: no event
        #expect(try await hub.host(host, by: .operator).liveness == .alive)
        clock.advance(by: 31 * 60)
        #expect(try await hub.checkLiveness().map(\.type) == ["node_stale"])
        #expect(try await hub.checkLiveness().isEmpty)  // still stale: nothing new
        clock.advance(by: 30 * 60)
        #expect(try await hub.checkLiveness().map(\.type) == ["node_down"])
        clock.advance(by: 60)
        try await report(hub, host, customer)
        let back = try await hub.checkLiveness()
        #expect(back.map(\.type) == ["node_recovered"])
        #expect(back.first?.data["from"] == "down")
        let stored = try await hub.events(hostID: host, type: nil, since: nil, limit: 10, by: .operator).map(\.type)
        #expect(stored == ["node_recovered", "node_down", "node_stale"])
        await hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func twoCheckersOnOneStoreEmitEachTransitionOnce(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, _) = try await setup(kind, clock: clock)
        let other = Hub(store: hub.store, operatorKey: operatorKey, clock: clock)
        let customer = try await hub.host(host, by: .operator).customerID
        try await report(hub, host, customer)
        _ = try await hub.checkLiveness()
        clock.advance(by: 61 * 60)
        async let a = hub.checkLiveness()
        async let b = other.checkLiveness()
        let total = try await a.count + b.count
        #expect(total == 1)
        #expect(try await hub.events(hostID: host, type: "node_down", since: nil, limit: 10, by: .operator).count == 1)
        await hub.store.close()
    }

    @Test(arguments: TestStores.kinds)
    func missedBackupIsReportedOncePerLocalDay(_ kind: HubStore.Kind) async throws {
        // Host created the day before; now 2026-07-01 07:00 in Budapest (05:00Z), deadline 06:00.
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_782_781_200))  // 2026-06-30T01:00Z
        let (hub, host, _) = try await setup(kind, clock: clock)
        _ = try await hub.putDesired(hostID: host, body: Data(#"{"guests":[],"storage_policy":{"backup_storage":"pbs-felhom"}}"#.utf8), by: .operator)
        _ = try await hub.publishDesired(hostID: host, by: .operator)
        clock.set(Date(timeIntervalSince1970: 1_782_882_000))
        let first = try await hub.checkBackupDeadlines(deadlineHour: 6)
        #expect(first.map(\.type) == ["expected_backup_missed"])
        #expect(first.first?.data["local_day"] == "2026-07-01")
        #expect(try await hub.checkBackupDeadlines(deadlineHour: 6).isEmpty)
        let other = Hub(store: hub.store, operatorKey: operatorKey, clock: clock)
        #expect(try await other.checkBackupDeadlines(deadlineHour: 6).isEmpty)
        // Next day a backup event arrives before the deadline: nothing is missed.
        clock.advance(by: 86_400 - 3 * 3600)  // 2026-07-02 04:00 local
        let customer = try await hub.host(host, by: .operator).customerID
        _ = try await hub.postEvent(
            .init(type: "backup_completed", severity: nil, guestID: nil, at: nil, data: nil), by: .host(hostID: host, customerID: customer))
        clock.advance(by: 4 * 3600)  // 08:00 local
        #expect(try await hub.checkBackupDeadlines(deadlineHour: 6).isEmpty)
        await hub.store.close()
    }

    /// Issue 14: backup and restore-test age are dead-man checks — once per transition, re-armed
    /// by the next success, skipped for a silent host and for a host without a backup policy.
    @Test(arguments: TestStores.kinds)
    func overdueBackupsAndRestoreTestsAreRaisedOncePerTransition(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, _) = try await setup(kind, clock: clock)
        let customer = try await hub.host(host, by: .operator).customerID
        let asHost = Principal.host(hostID: host, customerID: customer)
        try await report(hub, host, customer)
        _ = try await hub.checkLiveness()
        #expect(try await hub.checkBackupAges().isEmpty, "no backup policy: nothing owed")
        let guest = #"{"vmid":100,"name":"web","cpu":1,"memory_mb":512,"disk_gb":8,"backup":false}"#
        _ = try await hub.putDesired(
            hostID: host, body: Data(#"{"guests":[\#(guest)],"storage_policy":{"backup_storage":"pbs-felhom"}}"#.utf8), by: .operator)
        _ = try await hub.publishDesired(hostID: host, by: .operator)
        clock.advance(by: 3 * 86_400)
        try await report(hub, host, customer)
        #expect(try await hub.checkBackupAges().isEmpty, "its only guest opted out of backups: nothing owed")
        _ = try await hub.putDesired(
            hostID: host,
            body: Data(
                #"{"guests":[\#(guest.replacingOccurrences(of: ",\"backup\":false", with: ""))],"storage_policy":{"backup_storage":"pbs-felhom"}}"#
                    .utf8),
            by: .operator)
        _ = try await hub.publishDesired(hostID: host, by: .operator)
        _ = try await hub.postEvent(.init(type: "backup_completed", severity: nil, guestID: nil, at: nil, data: nil), by: asHost)
        _ = try await hub.postEvent(.init(type: "restore_test_passed", severity: nil, guestID: nil, at: nil, data: nil), by: asHost)
        clock.advance(by: 3 * 86_400)
        try await report(hub, host, customer)
        let first = try await hub.checkBackupAges()
        #expect(first.map(\.type) == ["backup_overdue"], "3 days without a backup; the restore test is 3 of 8 days old")
        #expect(try await hub.checkBackupAges().isEmpty, "once per transition")
        let other = Hub(store: hub.store, operatorKey: operatorKey, clock: clock)
        #expect(try await other.checkBackupAges().isEmpty, "a second checker does not repeat it")
        // A new backup re-arms it; 6 more days: the restore test is overdue, the new backup too.
        _ = try await hub.postEvent(.init(type: "backup_completed", severity: nil, guestID: nil, at: nil, data: nil), by: asHost)
        clock.advance(by: 6 * 86_400)
        try await report(hub, host, customer)
        #expect(try await hub.checkBackupAges().map(\.type).sorted() == ["backup_overdue", "restore_test_overdue"])
        // A silent host mutes these alarms (its silence is the alarm).
        clock.advance(by: 3 * 86_400)
        _ = try await hub.checkLiveness()
        #expect(try await hub.host(host, by: .operator).liveness != .alive)
        #expect(try await hub.checkBackupAges().isEmpty)
        await hub.store.close()
    }

    /// Issue 10 item 10: a host with no published backup policy owes no backup (no daily alarm).
    @Test(arguments: TestStores.kinds)
    func noBackupPolicyNoMissedBackup(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_782_781_200))
        let (hub, host, _) = try await setup(kind, clock: clock)
        clock.set(Date(timeIntervalSince1970: 1_782_882_000))
        #expect(try await hub.checkBackupDeadlines(deadlineHour: 6).isEmpty)
        // A published desired state without a backup storage is still no policy.
        _ = try await hub.putDesired(hostID: host, body: Data(#"{"guests":[]}"#.utf8), by: .operator)
        _ = try await hub.publishDesired(hostID: host, by: .operator)
        #expect(try await hub.checkBackupDeadlines(deadlineHour: 6).isEmpty)
        await hub.store.close()
    }

    /// Issue 11: a box that reports but has not applied a published generation within the bound
    /// is stuck: one `generation_not_applied` per host and generation; none once it applies.
    @Test(arguments: TestStores.kinds)
    func aStuckBoxRaisesGenerationNotApplied(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, customer) = try await setup(kind, clock: clock)
        let p = Principal.host(hostID: host, customerID: customer)
        _ = try await hub.ingestHostReport(Data(sampleReport().utf8), by: p)
        _ = try await hub.putDesired(hostID: host, body: Data(#"{"guests":[]}"#.utf8), by: .operator)
        let gen = try await hub.publishDesired(hostID: host, by: .operator)
        #expect(try await hub.checkAppliedGenerations(bound: 900).isEmpty, "within the bound")
        clock.advance(by: 901)
        let stuck = try await hub.checkAppliedGenerations(bound: 900)
        #expect(stuck.map(\.type) == ["generation_not_applied"] && stuck.first?.data["generation"] == .int(gen))
        #expect(try await hub.checkAppliedGenerations(bound: 900).isEmpty, "once per generation")
        // The box reports it applied the generation: shown on the host, no new alarm.
        let applied = sampleReport().replacingOccurrences(of: #""reported_at""#, with: #""applied_generation":\#(gen),"reported_at""#)
        _ = try await hub.ingestHostReport(Data(applied.utf8), by: p)
        #expect(try await hub.host(host, by: .operator).appliedGeneration == gen)
        _ = try await hub.putDesired(hostID: host, body: Data(#"{"guests":[],"versions":{"agent":"0.2.0"}}"#.utf8), by: .operator)
        _ = try await hub.publishDesired(hostID: host, by: .operator)
        _ = try await hub.ingestHostReport(
            Data(sampleReport().replacingOccurrences(of: #""reported_at""#, with: #""applied_generation":\#(gen + 1),"reported_at""#).utf8), by: p)
        clock.advance(by: 901)
        #expect(try await hub.checkAppliedGenerations(bound: 900).isEmpty)
        await hub.store.close()
    }

    @Test func beforeTheDeadlineNothingIsMissed() async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_782_781_200))
        let (hub, _, _) = try await setup(.sqlite, clock: clock)
        clock.set(Date(timeIntervalSince1970: 1_782_876_600))  // 05:30 local
        #expect(try await hub.checkBackupDeadlines(deadlineHour: 6).isEmpty)
        await hub.store.close()
    }

    /// An outcome said again with its idempotency key (the agent killed before it heard the
    /// answer, or the hub was away) is recorded once and answered with the first; the key is the
    /// poster's own (another host's same key is another event); a malformed key is refused by name.
    @Test(arguments: TestStores.kinds)
    func anEventSaidAgainWithItsIdempotencyKeyIsRecordedOnce(_ kind: HubStore.Kind) async throws {
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        let (hub, host, _) = try await setup(kind, clock: clock)
        let customer = try await hub.host(host, by: .operator).customerID
        let asHost = Principal.host(hostID: host, customerID: customer)
        let (other, _) = try await hub.createHost(customerID: customer, name: "pince", by: .operator)
        let asOther = Principal.host(hostID: other, customerID: customer)
        let said = NewEvent(type: "backup_completed", data: ["vmid": 100], idempotencyKey: "outcome:backup-100-2027-01-15")
        let first = try await hub.postEvent(said, by: asHost)
        clock.advance(by: 3600)
        let again = try await hub.postEvent(said, by: asHost)
        #expect(again.id == first.id && again.at == first.at, "the first one stands")
        #expect(try await hub.events(hostID: host, type: "backup_completed", since: nil, limit: 10, by: .operator).count == 1)
        let elsewhere = try await hub.postEvent(said, by: asOther)
        #expect(elsewhere.id != first.id && elsewhere.hostID == other)
        #expect(try await hub.events(hostID: other, type: "backup_completed", since: nil, limit: 10, by: .operator).count == 1)
        var bad = said
        bad.idempotencyKey = "with space"
        await #expect(throws: HubError.self) { _ = try await hub.postEvent(bad, by: asHost) }
        do {
            _ = try await hub.postEvent(bad, by: asHost)
        } catch let e as HubError {
            #expect(e.path == "$.idempotency_key")
        }
        // Without a key every post is its own event.
        _ = try await hub.postEvent(.init(type: "backup_completed"), by: asHost)
        _ = try await hub.postEvent(.init(type: "backup_completed"), by: asHost)
        #expect(try await hub.events(hostID: host, type: "backup_completed", since: nil, limit: 10, by: .operator).count == 3)
        await hub.store.close()
    }
}
