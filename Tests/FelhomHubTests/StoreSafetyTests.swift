import FelhomAPI
import FelhomCore
import FelhomTestSupport
import Foundation
import SQLKit
import Testing

@testable import FelhomHub

/// A one-shot latch for ordering two tasks in a test.
actor Latch {
    private var open = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    func release() {
        open = true
        for w in waiters { w.resume() }
        waiters = []
    }
    func wait() async {
        if open { return }
        await withCheckedContinuation { waiters.append($0) }
    }
}

@Suite("Store safety: no acknowledged write lost")
struct StoreSafetyTests {
    struct Boom: Error {}

    /// Issue 10 item 1: a statement run through `withDB` while another task's transaction is open
    /// must not run inside that transaction (and must not vanish when it rolls back).
    @Test(arguments: TestStores.kinds)
    func withDBWriteSurvivesAConcurrentRollback(kind: HubStore.Kind) async throws {
        let store = try await TestStores.open(kind)
        defer { Task { await store.close() } }
        try await store.withDB { db in
            try await db.raw("CREATE TABLE probe (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").run()
        }
        let inside = Latch()
        let proceed = Latch()
        let tx = Task {
            try await store.transaction { db in
                try await db.raw("INSERT INTO probe (id, v) VALUES (1, 'rolled-back')").run()
                await inside.release()
                await proceed.wait()
                throw Boom()
            }
        }
        await inside.wait()
        // The concurrent, acknowledged write. On SQLite it waits for the transaction to end.
        let write = Task {
            try await store.withDB { db in try await db.raw("INSERT INTO probe (id, v) VALUES (2, 'acknowledged')").run() }
        }
        // Give the write every chance to slip into the open transaction before it rolls back.
        try await Task.sleep(for: .milliseconds(100))
        await proceed.release()
        await #expect(throws: (any Error).self) { try await tx.value }
        try await write.value
        let rows = try await store.withDB { db in
            try await db.raw("SELECT v FROM probe ORDER BY id").all().map { try $0.decode(column: "v", as: String.self) }
        }
        #expect(rows == ["acknowledged"])
    }

    /// Reads from `withDB` never see another transaction's uncommitted rows.
    @Test(arguments: TestStores.kinds)
    func withDBDoesNotReadUncommittedRows(kind: HubStore.Kind) async throws {
        let store = try await TestStores.open(kind)
        defer { Task { await store.close() } }
        try await store.withDB { db in
            try await db.raw("CREATE TABLE probe (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").run()
        }
        let inside = Latch()
        let proceed = Latch()
        let tx = Task {
            try await store.transaction { db in
                try await db.raw("INSERT INTO probe (id, v) VALUES (1, 'uncommitted')").run()
                await inside.release()
                await proceed.wait()
                throw Boom()
            }
        }
        await inside.wait()
        let read = Task {
            try await store.withDB { db in try await db.raw("SELECT COUNT(*) AS n FROM probe").first()?.decode(column: "n", as: Int.self) }
        }
        try await Task.sleep(for: .milliseconds(100))
        await proceed.release()
        await #expect(throws: (any Error).self) { try await tx.value }
        #expect(try await read.value == 0)
    }

    /// A statement issued from inside a transaction body through the store (same task) joins that
    /// transaction instead of deadlocking on SQLite's single-connection gate.
    /// A backup taken while writers run holds every write acknowledged before it started (they
    /// live in the WAL until a checkpoint), restores only to a new path, and never overwrites.
    @Test func onlineBackupHoldsAcknowledgedWrites() async throws {
        try await withHub(.sqlite) { h in
            for i in 0..<30 {
                _ = try await h.hub.createCustomer(
                    NewCustomer(name: "C\(i)", email: "c\(i)@example.hu", domain: "c\(i).example.hu"), by: .operator)
            }
            let dir = NSTemporaryDirectory() + "felhom-backup-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            // Writers keep going while the backup runs.
            let writers = Task {
                for i in 30..<60 {
                    _ = try await h.hub.createCustomer(
                        NewCustomer(name: "C\(i)", email: "c\(i)@example.hu", domain: "c\(i).example.hu"), by: .operator)
                }
            }
            try await h.hub.store.backup(to: dir + "/copy.sqlite")
            try await writers.value
            let version = try await HubStore.verifyBackup(at: dir + "/copy.sqlite")
            #expect(version == Migrations.all.count)
            await #expect(throws: StoreError.self) { try await h.hub.store.backup(to: dir + "/copy.sqlite") }
            let restored = try await HubStore.restore(backup: dir + "/copy.sqlite", to: dir + "/restored.sqlite")
            #expect(restored == version)
            await #expect(throws: StoreError.self) { _ = try await HubStore.restore(backup: dir + "/copy.sqlite", to: dir + "/restored.sqlite") }
            let copy = try await HubStore.open(url: "sqlite:" + dir + "/restored.sqlite")
            let names = Set(try await Hub(store: copy, operatorKey: nil).customers(by: .operator).map(\.name))
            await copy.close()
            #expect(Set((0..<30).map { "C\($0)" }).isSubset(of: names), "every customer acknowledged before the backup is in it")
        }
    }

    @Test func nestedWithDBInsideATransactionDoesNotDeadlock() async throws {
        let store = try await TestStores.open(.sqlite)
        defer { Task { await store.close() } }
        try await store.withDB { db in
            try await db.raw("CREATE TABLE probe (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").run()
        }
        try await store.transaction { db in
            try await db.raw("INSERT INTO probe (id, v) VALUES (1, 'outer')").run()
            try await store.withDB { db in try await db.raw("INSERT INTO probe (id, v) VALUES (2, 'inner')").run() }
        }
        let n = try await store.withDB { db in try await db.raw("SELECT COUNT(*) AS n FROM probe").first()?.decode(column: "n", as: Int.self) }
        #expect(n == 2)
    }
}

@Suite("Conflicts and long-polls")
struct ConflictAndLongPollTests {
    /// Issue 10 item 7: a duplicate is a conflict on both stores, classified by the SQL error code.
    @Test(arguments: TestStores.kinds)
    func aDuplicateIsAConflict(kind: HubStore.Kind) async throws {
        let store = try await TestStores.open(kind)
        defer { Task { await store.close() } }
        try await store.withDB { db in try await db.raw("CREATE TABLE probe (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)").run() }
        try await store.withDB { db in try await db.raw("INSERT INTO probe (id, name) VALUES (1, 'a')").run() }
        let unique = await #expect(throws: StoreError.self) {
            try await store.withDB { db in try await db.raw("INSERT INTO probe (id, name) VALUES (2, 'a')").run() }
        }
        #expect(unique?.code == .conflict)
        let primary = await #expect(throws: StoreError.self) {
            try await store.transaction { db in try await db.raw("INSERT INTO probe (id, name) VALUES (1, 'b')").run() }
        }
        #expect(primary?.code == .conflict)
        // A NOT NULL failure is not a conflict.
        let other = await #expect(throws: StoreError.self) {
            try await store.withDB { db in try await db.raw("INSERT INTO probe (id, name) VALUES (3, NULL)").run() }
        }
        #expect(other?.code == .query)
    }

    /// The checkers' lease (PostgreSQL): one holder at a time, renewed by its holder, taken by
    /// another only once it has run out — what replaced a session lock that a PostgreSQL restart
    /// freed without its holder noticing.
    @Test(.enabled(if: TestStores.kinds.contains(.postgres), "needs PostgreSQL"))
    func theLeaderLeaseHasOneHolderAndPassesOnOnlyWhenItRunsOut() async throws {
        let store = try await TestStores.open(.postgres)
        defer { Task { await store.close() } }
        let key: Int64 = 4242
        func take(_ holder: String, ttl: Int) async throws -> Bool {
            try await store.withDB { db in try await LeaderLeases.takeOrRenew(key: key, holder: holder, ttl: ttl, in: db) }
        }
        #expect(try await take("a", ttl: 30))
        #expect(try await !take("b", ttl: 30), "a lease still running is not taken")
        #expect(try await take("a", ttl: 30), "its holder renews it")
        // The holder stops renewing: once its lease has run out, another takes it, and it is not given back.
        #expect(try await take("a", ttl: -5))  // renewed into the past: as if it had run out
        #expect(try await take("b", ttl: 30))
        #expect(try await !take("a", ttl: 30))
        // The question handed to the checkers says the same.
        let answers = try await store.withLeaderLock(key: key + 1, ttl: 30) { isLeader in [try await isLeader(), try await isLeader()] }
        #expect(answers == [true, true])
    }

    /// Whether `body` finishes within 20 s; if not, `unstick` is called until it does, so the test ends.
    static func finishes(unstick: @escaping @Sendable () -> Void, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await body()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(20))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            if !first {
                for _ in 0..<1000 {
                    unstick()
                    try? await Task.sleep(for: .milliseconds(1))
                }
            }
            return first
        }
    }

    /// A long-poll whose timer fires before it is parked returns instead of hanging until the
    /// next publish.
    @Test func aWaitWhoseTimerFiresFirstReturns() async throws {
        let watch = GenerationWatch()
        let unstick: @Sendable () -> Void = { watch.notify(hostID: "h") }
        let finished = await Self.finishes(unstick: unstick) {
            for _ in 0..<500 { await watch.wait(hostID: "h", upTo: .zero) }
        }
        #expect(finished, "a long-poll hung after its timer fired")
        #expect(watch.parkedCount == 0)
    }

    /// Found by scripts/bench-fleet (max 25 s with 1,000 agents): a publish that lands between a
    /// poll's read of the host and its park must still wake it, not leave it to its timeout.
    @Test func aNotifyBetweenTheReadAndTheParkIsNotLost() async throws {
        let watch = GenerationWatch()
        let epoch = watch.epoch("h")  // the poll reads the host…
        watch.notify(hostID: "h")  // …a publish commits and notifies before the poll parks
        let unstick: @Sendable () -> Void = { watch.notify(hostID: "h") }
        let woke = await Self.finishes(unstick: unstick) {
            await watch.wait(hostID: "h", upTo: .seconds(60), since: epoch)
        }
        #expect(woke, "the poll slept through a publish it had not seen")
        #expect(watch.parkedCount == 0)
        #expect(watch.bookkeepingCount == 0, "a poll that returned at once left its id behind")
        // With the current epoch the poll parks and the next notify wakes it.
        let parked = Task { await watch.wait(hostID: "h", upTo: .seconds(60), since: watch.epoch("h")) }
        while watch.parkedCount == 0 { try await Task.sleep(for: .milliseconds(5)) }
        watch.notify(hostID: "h")
        await parked.value
        #expect(watch.parkedCount == 0)
        #expect(watch.bookkeepingCount == 0)
    }

    /// Found measuring the hub's memory under scripts/bench-fleet: every poll that returned at once
    /// because its host had moved since the read kept its id in the watch for good.
    @Test func pollsThatReturnAtOnceLeaveNothingBehind() async throws {
        let watch = GenerationWatch()
        for _ in 0..<1000 {
            let epoch = watch.epoch("h")
            watch.notify(hostID: "h")
            await watch.wait(hostID: "h", upTo: .seconds(60), since: epoch)
        }
        for _ in 0..<200 { await watch.wait(hostID: "h", upTo: .milliseconds(1), since: watch.epoch("h")) }
        #expect(watch.bookkeepingCount == 0, "\(watch.bookkeepingCount) ids kept after every poll returned")
    }
}

@Suite("Guest keys are idempotent")
struct GuestKeyIdempotencyTests {
    /// Issue 10 item 5: an agent that crashed after the hub minted a guest key asks again with the
    /// same idempotency key: one guest, one valid key (the first is revoked).
    @Test(arguments: TestStores.kinds)
    func askingTwiceLeavesOneValidKey(kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        let customerID = try await h.hub.createCustomer(
            .init(name: "A", email: "a@example.hu", domain: "a.example.hu", timezone: nil, language: nil), by: .operator)
        let host = try await h.hub.createHost(customerID: customerID, name: "box", by: .operator)
        let hostP = try await h.hub.keys.principal(authorization: "Bearer \(host.apiKey)")
        let first = try await h.hub.createGuest(hostID: host.id, name: "web", idempotencyKey: "vmid-120", by: hostP)
        let second = try await h.hub.createGuest(hostID: host.id, name: "web", idempotencyKey: "vmid-120", by: hostP)
        #expect(first.id == second.id)
        #expect(first.apiKey != second.apiKey)
        await #expect(throws: HubError.self) { try await h.hub.keys.principal(authorization: "Bearer \(first.apiKey)") }
        #expect(
            try await h.hub.keys.principal(authorization: "Bearer \(second.apiKey)")
                == .guest(guestID: second.id, hostID: host.id, customerID: customerID))
        let rows = try await h.hub.store.withDB { db in
            try await db.raw("SELECT COUNT(*) AS n FROM guests").first()?.decode(column: "n", as: Int.self)
        }
        #expect(rows == 1)
        // Without the key, or with another, a new guest.
        let other = try await h.hub.createGuest(hostID: host.id, name: "db", idempotencyKey: "vmid-121", by: hostP)
        #expect(other.id != first.id)
        await #expect(throws: HubError.self) { try await h.hub.createGuest(hostID: host.id, name: "x", idempotencyKey: "bad key\n", by: hostP) }
        await h.hub.store.close()
    }
}
