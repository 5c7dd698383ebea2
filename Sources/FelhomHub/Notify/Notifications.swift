import FelhomCore
import Foundation
import Logging
import SQLKit

/// Who gets mail about which events, and how often.
public struct NotificationSettings: Sendable {
    /// The operator's address; `nil` sends no operator mail.
    public var operatorEmail: String?
    public var from = "felhom@localhost"
    public var operatorTypes: Set<String> = [
        "node_stale", "node_down", "node_recovered", "backup_failed", "backup_unencrypted", "backup_overdue", "restore_test_overdue",
        "expected_backup_missed", "restore_test_failed",
        "db_dump_failed", "op_rejected", "update_reverted", "memory_limit_exceeded", "quota_exceeded", "retrieval_locked",
        "host_blocked", "customer_suspended", "generation_not_applied", "op_expired", "stack_restart_failed", "storage_disconnected",
        "secrets_rollout_failed", "disk_failing", "overheating", "tunnel_down",
    ]
    /// Customer default when they have set no preferences.
    public var customerDefaultTypes: Set<String> = ["node_down", "node_recovered", "backup_failed", "expected_backup_missed", "restore_test_failed"]
    /// Immediate types (``EventType/immediate``) mail the operator at most this often per host.
    public static let immediateFloor: TimeInterval = 300
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
        let ev = HubEvent(
            id: Ids.make("evt"), at: Date(timeIntervalSince1970: TimeInterval(now)), source: source, hostID: hostID,
            guestID: guestID, customerID: customerID, type: type, severity: severity, data: data)
        try await record(ev, in: db)
    }

    func enqueueMail(for ev: HubEvent, in db: any SQLDatabase) async throws {
        let settings = notifications
        let now = self.now
        if let host = ev.hostID {
            // Serializes the cooldown check per (host, type) across replicas.
            try await OutboxTable.lockCooldown(key: host + "|" + ev.type, in: db, kind: store.kind)
        }
        var hostName = ev.hostID ?? "hub"
        if let hostID = ev.hostID, let name = try await HostsTable.name(hostID, in: db) { hostName = name }
        func recent(_ channel: String, _ window: TimeInterval) async throws -> Bool {
            try await OutboxTable.queuedRecently(channel: channel, eventType: ev.type, hostID: ev.hostID, since: now - Int64(window), in: db)
        }
        func queue(_ channel: String, _ to: String, _ lang: Templates.Language) async throws {
            let (subject, body) = Templates.render(ev, hostName: hostName, language: lang)
            try await OutboxTable.enqueue(
                .init(
                    channel: channel, recipient: to, language: lang.rawValue, hostID: ev.hostID, eventID: ev.id, eventType: ev.type, subject: subject,
                    body: body),
                at: now, in: db)
        }
        // A type the hub's registry marks critical and immediate (`backup_unencrypted`) reaches the
        // operator at once — held back only by a short floor, so a hostile box cannot flood the
        // mailbox; the others wait out the operator cooldown. The severity is the registry's, never
        // what a client sent.
        let registered = EventRegistry.byName[ev.type]
        let immediate = registered?.severity == .critical && registered?.immediate == true
        let window = immediate ? NotificationSettings.immediateFloor : settings.operatorCooldown
        if let op = settings.operatorEmail, settings.operatorTypes.contains(ev.type), !(try await recent("operator", window)) {
            try await queue("operator", op, .en)
        }
        if let customer = ev.customerID, let mail = try await CustomersTable.mailSettings(customer, in: db) {
            let prefs =
                mail.notifyTypes.flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }.map(Set.init)
                ?? settings.customerDefaultTypes
            if prefs.contains(ev.type), !(try await recent("customer", settings.customerCooldown)) {
                try await queue("customer", mail.email, Templates.Language(rawValue: mail.language) ?? .hu)
            }
        }
    }

    /// Sends due mails. A failure is logged and retried later with backoff; nothing is dropped.
    /// Returns (sent, failed) counts.
    @discardableResult
    public func deliverMail(using mailer: Mailer, limit: Int = 50) async throws -> (sent: Int, failed: Int) {
        let now = self.now
        let due = try await store.withDB { db in try await OutboxTable.due(now: now, limit: limit, in: db) }
        var sent = 0
        var failed = 0
        for row in due {
            let id = row.id
            let attempts = row.attempts + 1
            let msg = MailMessage(from: notifications.from, to: row.recipient, subject: row.subject, body: row.body, idempotencyKey: id)
            var failure: String?
            do { try await mailer.send(msg) } catch let error { failure = "\(error)" }
            let error = failure
            let at = self.now
            try await store.transaction { db in
                try await OutboxTable.recordAttempt(
                    id: id, attempts: attempts, error: error,
                    retryAt: at + Int64(NotificationSettings.backoff(attempts: attempts)), at: at, in: db)
            }
            // Recipient domain only, never the address or the body.
            let domain = row.recipient.split(separator: "@").last.map(String.init) ?? "?"
            if let error {
                logger.warning(
                    "mail not delivered; retried later",
                    metadata: [
                        "outbox_id": "\(id)", "attempt": "\(attempts)", "recipient_domain": "\(domain)", "error": "\(error.prefix(300))",
                    ])
            } else {
                logger.info("mail delivered", metadata: ["outbox_id": "\(id)", "attempt": "\(attempts)", "recipient_domain": "\(domain)"])
            }
            if error == nil { sent += 1 } else { failed += 1 }
        }
        return (sent, failed)
    }
}
