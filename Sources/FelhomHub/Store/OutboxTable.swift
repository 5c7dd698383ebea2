import Foundation
import SQLKit

/// SQL of outgoing mail: the outbox (`notification_outbox`) and every send attempt (`notification_log`).
enum OutboxTable {
    struct Mail: Sendable {
        var channel, recipient, language: String
        var hostID: String?
        var eventID, eventType, subject, body: String
    }

    /// A mail due now.
    struct Due: Sendable {
        var id, recipient, subject, body: String
        var attempts: Int
    }

    /// Serializes the cooldown check per (host, type) across PostgreSQL replicas (inside the caller's transaction).
    static func lockCooldown(key: String, in db: any SQLDatabase, kind: HubStore.Kind) async throws {
        guard kind == .postgres else { return }
        try await db.raw("SELECT pg_advisory_xact_lock(hashtext(\(bind: key)))").run()
    }

    /// Whether a mail of this channel, type and host was queued after `since`.
    static func queuedRecently(channel: String, eventType: String, hostID: String?, since: Int64, in db: any SQLDatabase) async throws -> Bool {
        var query = db.select().column("id").from("notification_outbox").where("channel", .equal, SQLBind(channel))
            .where("event_type", .equal, SQLBind(eventType)).where("created_at", .greaterThan, SQLBind(since))
        query = hostID.map { query.where("host_id", .equal, SQLBind($0)) } ?? query.where(SQLColumn("host_id"), .is, SQLLiteral.null)
        return try await query.limit(1).first() != nil
    }

    static func enqueue(_ m: Mail, at now: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "notification_outbox")
            .columns(
                "id", "channel", "recipient", "language", "host_id", "event_id", "event_type", "subject", "body", "status",
                "attempts", "next_attempt_at", "created_at"
            )
            .values(
                SQLBind(Ids.make("mail")), SQLBind(m.channel), SQLBind(m.recipient), SQLBind(m.language), SQLBind(m.hostID), SQLBind(m.eventID),
                SQLBind(m.eventType), SQLBind(m.subject), SQLBind(m.body), SQLBind("pending"), SQLBind(0), SQLBind(now), SQLBind(now)
            )
            .run()
    }

    static func due(now: Int64, limit: Int, in db: any SQLDatabase) async throws -> [Due] {
        try await db.select().columns("id", "recipient", "subject", "body", "attempts").from("notification_outbox")
            .where("status", .equal, SQLBind("pending")).where("next_attempt_at", .lessThanOrEqual, SQLBind(now))
            .orderBy("next_attempt_at").limit(limit).all().map {
                Due(
                    id: try $0.decode(column: "id", as: String.self), recipient: try $0.decode(column: "recipient", as: String.self),
                    subject: try $0.decode(column: "subject", as: String.self), body: try $0.decode(column: "body", as: String.self),
                    attempts: try $0.decode(column: "attempts", as: Int.self))
            }
    }

    /// Records one send attempt: sent, or failed with its retry time; always logged.
    static func recordAttempt(id: String, attempts: Int, error: String?, retryAt: Int64, at: Int64, in db: any SQLDatabase) async throws {
        if let error {
            try await db.update("notification_outbox").set("attempts", to: SQLBind(attempts)).set("next_attempt_at", to: SQLBind(retryAt))
                .set("last_error", to: SQLBind(String(error.prefix(500)))).where("id", .equal, SQLBind(id)).run()
        } else {
            try await db.update("notification_outbox").set("attempts", to: SQLBind(attempts)).set("status", to: SQLBind("sent"))
                .set("sent_at", to: SQLBind(at)).where("id", .equal, SQLBind(id)).run()
        }
        try await db.insert(into: "notification_log").columns("id", "outbox_id", "at", "result", "detail")
            .values(
                SQLBind(Ids.make("log")), SQLBind(id), SQLBind(at), SQLBind(error == nil ? "sent" : "failed"),
                SQLBind(String((error ?? "attempt \(attempts)").prefix(500)))
            ).run()
    }
}
