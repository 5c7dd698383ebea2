import FelhomCore
import Foundation
import SQLKit

/// Who gets mail about which events, and how often.
public struct NotificationSettings: Sendable {
    /// The operator's address; `nil` sends no operator mail.
    public var operatorEmail: String?
    public var from = "felhom@localhost"
    public var operatorTypes: Set<String> = [
        "node_stale", "node_down", "node_recovered", "backup_failed", "expected_backup_missed", "restore_test_failed",
        "db_dump_failed", "op_rejected", "update_reverted", "memory_limit_exceeded", "quota_exceeded", "retrieval_locked",
        "host_blocked", "customer_suspended",
    ]
    /// Customer default when they have set no preferences.
    public var customerDefaultTypes: Set<String> = ["node_down", "node_recovered", "backup_failed", "expected_backup_missed", "restore_test_failed"]
    /// At most one operator mail per (host, event type) in this window.
    public var operatorCooldown: TimeInterval = 3600
    /// At most one customer mail per (host, event type) in this window.
    public var customerCooldown: TimeInterval = 6 * 3600
    public init() {}

    /// Retry delay after `attempts` failures: 1 min doubling to at most 1 h. A mail is never dropped.
    public static func backoff(attempts: Int) -> TimeInterval { min(3600, 60 * pow(2, Double(max(0, attempts - 1)))) }
}

extension Hub {
    /// Stores an event and queues its mails in the same transaction (`db` must be one).
    /// Returns whether the event was new.
    @discardableResult
    func record(_ ev: HubEvent, in db: any SQLDatabase, ignoreDuplicate: Bool = false) async throws -> Bool {
        guard try await EventsTable.insert(ev, in: db, ignoreDuplicate: ignoreDuplicate) else { return false }
        try await enqueueMail(for: ev, in: db)
        return true
    }

    /// Records an event the hub itself writes (publish, enrollment, op outcome, …) at `now`, in the
    /// caller's transaction, with its mail — the one way hub code makes events.
    func recordEvent(
        _ type: String, severity: HubEvent.Severity = .info, source: HubEvent.Source = .hub, hostID: String? = nil,
        guestID: String? = nil, customerID: String?, data: JSONValue = .object([:]), at now: Int64, in db: any SQLDatabase
    ) async throws {
        let ev = HubEvent(id: Ids.make("evt"), at: Date(timeIntervalSince1970: TimeInterval(now)), source: source, hostID: hostID,
                          guestID: guestID, customerID: customerID, type: type, severity: severity, data: data)
        try await record(ev, in: db)
    }

    func enqueueMail(for ev: HubEvent, in db: any SQLDatabase) async throws {
        let n = notifications
        let now = self.now
        if store.kind == .postgres, let host = ev.hostID {
            // Serializes the cooldown check per (host, type) across replicas.
            try await db.raw("SELECT pg_advisory_xact_lock(hashtext(\(bind: host + "|" + ev.type)))").run()
        }
        var hostName = ev.hostID ?? "hub"
        if let hostID = ev.hostID, let r = try await db.select().column("name").from("hosts").where("id", .equal, SQLBind(hostID)).first() {
            hostName = try r.decode(column: "name", as: String.self)
        }
        func recent(_ channel: String, _ window: TimeInterval) async throws -> Bool {
            var q = db.select().column("id").from("notification_outbox").where("channel", .equal, SQLBind(channel))
                .where("event_type", .equal, SQLBind(ev.type)).where("created_at", .greaterThan, SQLBind(now - Int64(window)))
            q = ev.hostID.map { q.where("host_id", .equal, SQLBind($0)) } ?? q.where(SQLColumn("host_id"), .is, SQLLiteral.null)
            return try await q.limit(1).first() != nil
        }
        func queue(_ channel: String, _ to: String, _ lang: Templates.Language) async throws {
            let (subject, body) = Templates.render(ev, hostName: hostName, language: lang)
            try await db.insert(into: "notification_outbox")
                .columns("id", "channel", "recipient", "language", "host_id", "event_id", "event_type", "subject", "body", "status",
                         "attempts", "next_attempt_at", "created_at")
                .values(SQLBind(Ids.make("mail")), SQLBind(channel), SQLBind(to), SQLBind(lang.rawValue), SQLBind(ev.hostID), SQLBind(ev.id),
                        SQLBind(ev.type), SQLBind(subject), SQLBind(body), SQLBind("pending"), SQLBind(0), SQLBind(now), SQLBind(now))
                .run()
        }
        if let op = n.operatorEmail, n.operatorTypes.contains(ev.type), !(try await recent("operator", n.operatorCooldown)) {
            try await queue("operator", op, .en)
        }
        if let customer = ev.customerID,
            let c = try await db.select().columns("email", "language", "notify_types").from("customers").where("id", .equal, SQLBind(customer)).first()
        {
            let prefsText = try c.decode(column: "notify_types", as: String?.self)
            let prefs = prefsText.flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }.map(Set.init) ?? n.customerDefaultTypes
            if prefs.contains(ev.type), !(try await recent("customer", n.customerCooldown)) {
                let lang = Templates.Language(rawValue: try c.decode(column: "language", as: String.self)) ?? .hu
                try await queue("customer", try c.decode(column: "email", as: String.self), lang)
            }
        }
    }

    /// Sends due mails. A failure is logged and retried later with backoff; nothing is dropped.
    /// Returns (sent, failed) counts.
    @discardableResult
    public func deliverMail(using mailer: Mailer, limit: Int = 50) async throws -> (sent: Int, failed: Int) {
        let now = self.now
        let due = try await store.withDB { db in
            try await db.select().columns("id", "recipient", "subject", "body", "attempts").from("notification_outbox")
                .where("status", .equal, SQLBind("pending")).where("next_attempt_at", .lessThanOrEqual, SQLBind(now))
                .orderBy("next_attempt_at").limit(limit).all()
        }
        var sent = 0, failed = 0
        for r in due {
            let id = try r.decode(column: "id", as: String.self)
            let attempts = try r.decode(column: "attempts", as: Int.self) + 1
            let msg = MailMessage(from: notifications.from, to: try r.decode(column: "recipient", as: String.self),
                                  subject: try r.decode(column: "subject", as: String.self), body: try r.decode(column: "body", as: String.self),
                                  idempotencyKey: id)
            var failure: String?
            do { try await mailer.send(msg) } catch let e { failure = "\(e)" }
            let error = failure
            let at = self.now
            try await store.transaction { db in
                if let error {
                    try await db.update("notification_outbox").set("attempts", to: SQLBind(attempts))
                        .set("next_attempt_at", to: SQLBind(at + Int64(NotificationSettings.backoff(attempts: attempts))))
                        .set("last_error", to: SQLBind(String(error.prefix(500)))).where("id", .equal, SQLBind(id)).run()
                } else {
                    try await db.update("notification_outbox").set("attempts", to: SQLBind(attempts)).set("status", to: SQLBind("sent"))
                        .set("sent_at", to: SQLBind(at)).where("id", .equal, SQLBind(id)).run()
                }
                try await db.insert(into: "notification_log").columns("id", "outbox_id", "at", "result", "detail")
                    .values(SQLBind(Ids.make("log")), SQLBind(id), SQLBind(at), SQLBind(error == nil ? "sent" : "failed"),
                            SQLBind(String((error ?? "attempt \(attempts)").prefix(500)))).run()
            }
            if error == nil { sent += 1 } else { failed += 1 }
        }
        return (sent, failed)
    }
}
