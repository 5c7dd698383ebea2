import FelhomCore
import Foundation
import SQLKit

/// SQL of reports from boxes: history (`host_reports`, `guest_reports`, pruned) and the latest of
/// each (`host_report_latest`, `guest_report_latest`, kept).
enum ReportsTable {
    /// Stores a host report: history + latest.
    static func insertHostReport(hostID: String, body: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "host_reports").columns("id", "host_id", "received_at", "body")
            .values(SQLBind(Ids.make("rep")), SQLBind(hostID), SQLBind(at), SQLBind(body)).run()
        // Upsert the latest report (same statement shape on SQLite and PostgreSQL).
        try await db.insert(into: "host_report_latest").columns("host_id", "received_at", "body")
            .values(SQLBind(hostID), SQLBind(at), SQLBind(body))
            .onConflict(with: ["host_id"]) { $0.set(excludedValueOf: "received_at").set(excludedValueOf: "body") }
            .run()
    }

    /// Stores a guest report: history + latest, and the guest's report time.
    static func insertGuestReport(guestID: String, body: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "guest_reports").columns("id", "guest_id", "received_at", "body")
            .values(SQLBind(Ids.make("rep")), SQLBind(guestID), SQLBind(at), SQLBind(body)).run()
        try await db.insert(into: "guest_report_latest").columns("guest_id", "received_at", "body")
            .values(SQLBind(guestID), SQLBind(at), SQLBind(body))
            .onConflict(with: ["guest_id"]) { $0.set(excludedValueOf: "received_at").set(excludedValueOf: "body") }
            .run()
        try await db.update("guests").set("last_report_at", to: SQLBind(at)).where("id", .equal, SQLBind(guestID)).run()
    }

    /// The latest host report's body and receive time.
    static func latestHostReport(hostID: String, in db: any SQLDatabase) async throws -> (body: String, receivedAt: Int64)? {
        guard let r = try await db.select().columns("body", "received_at").from("host_report_latest").where("host_id", .equal, SQLBind(hostID)).first()
        else { return nil }
        return (try r.decode(column: "body", as: String.self), try r.decode(column: "received_at", as: Int64.self))
    }

    /// Deletes report history older than `cutoff`; returns rows deleted.
    static func pruneHistory(olderThan cutoff: Int64, in db: any SQLDatabase) async throws -> Int {
        let hosts = try await db.delete(from: "host_reports").where("received_at", .lessThan, SQLBind(cutoff)).returning("id").all().count
        let guests = try await db.delete(from: "guest_reports").where("received_at", .lessThan, SQLBind(cutoff)).returning("id").all().count
        return hosts + guests
    }
}

/// SQL of the `events` table.
enum EventsTable {
    /// Inserts an event; with `ignoreDuplicate` an existing id is left alone. Returns whether a row was written.
    @discardableResult
    static func insert(_ ev: HubEvent, in db: any SQLDatabase, ignoreDuplicate: Bool = false) async throws -> Bool {
        let q = db.insert(into: "events").columns("id", "at", "source", "host_id", "guest_id", "customer_id", "type", "severity", "data")
            .values(SQLBind(ev.id), SQLBind(Int64(ev.at.timeIntervalSince1970)), SQLBind(ev.source.rawValue), SQLBind(ev.hostID),
                    SQLBind(ev.guestID), SQLBind(ev.customerID), SQLBind(ev.type), SQLBind(ev.severity.rawValue),
                    SQLBind(ev.data.serializedString()))
        if ignoreDuplicate { return try await !q.ignoringConflicts().returning("id").all().isEmpty }
        try await q.run()
        return true
    }

    /// Events, newest first, filtered.
    static func list(customerScope: String?, hostID: String?, type: String?, since: Int64?, limit: Int, in db: any SQLDatabase) async throws -> [HubEvent] {
        var q = db.select().column("*").from("events")
        if let c = customerScope { q = q.where("customer_id", .equal, SQLBind(c)) }
        if let hostID { q = q.where("host_id", .equal, SQLBind(hostID)) }
        if let type { q = q.where("type", .equal, SQLBind(type)) }
        if let since { q = q.where("at", .greaterThanOrEqual, SQLBind(since)) }
        return try await q.orderBy("at", .descending).orderBy("id", .descending).limit(limit).all().map { r in
            HubEvent(
                id: try r.decode(column: "id", as: String.self),
                at: Date(timeIntervalSince1970: TimeInterval(try r.decode(column: "at", as: Int64.self))),
                source: HubEvent.Source(rawValue: try r.decode(column: "source", as: String.self)) ?? .hub,
                hostID: try r.decode(column: "host_id", as: String?.self), guestID: try r.decode(column: "guest_id", as: String?.self),
                customerID: try r.decode(column: "customer_id", as: String?.self), type: try r.decode(column: "type", as: String.self),
                severity: HubEvent.Severity(rawValue: try r.decode(column: "severity", as: String.self)) ?? .info,
                data: (try? JSONValue.parse(try r.decode(column: "data", as: String.self))) ?? .object([:]))
        }
    }

    /// Whether the host has an event of one of `types` at or after `since`.
    static func exists(hostID: String, types: [String], since: Int64, in db: any SQLDatabase) async throws -> Bool {
        try await db.select().column("id").from("events").where("host_id", .equal, SQLBind(hostID))
            .where("type", .in, SQLBind.group(types)).where("at", .greaterThanOrEqual, SQLBind(since)).limit(1).first() != nil
    }

    /// The newest event of one of `types` for a host: type and time.
    static func latest(hostID: String, types: [String], in db: any SQLDatabase) async throws -> (type: String, at: Int64)? {
        guard let r = try await db.select().columns("type", "at").from("events").where("host_id", .equal, SQLBind(hostID))
            .where("type", .in, SQLBind.group(types)).orderBy("at", .descending).limit(1).first()
        else { return nil }
        return (try r.decode(column: "type", as: String.self), try r.decode(column: "at", as: Int64.self))
    }
}

/// Deletes what only needs to be kept for a while (the checker's housekeeping).
enum RetentionTable {
    static func prune(events: Int64, mail: Int64, attempts: Int64, now: Int64, in db: any SQLDatabase) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        // Mail first (outbox rows point at events).
        out["notification_log"] = try await db.delete(from: "notification_log").where("at", .lessThan, SQLBind(mail)).returning("id").all().count
        out["notification_outbox"] = try await db.delete(from: "notification_outbox").where("status", .equal, SQLBind("sent"))
            .where("created_at", .lessThan, SQLBind(mail)).returning("id").all().count
        out["events"] = try await db.delete(from: "events").where("at", .lessThan, SQLBind(events)).returning("id").all().count
        out["retrieval_attempts"] = try await db.delete(from: "retrieval_attempts").where("at", .lessThan, SQLBind(attempts)).returning("id").all().count
        out["dashboard_login_failures"] = try await db.delete(from: "dashboard_login_failures").where("at", .lessThan, SQLBind(attempts))
            .returning("id").all().count
        out["dashboard_sessions"] = try await db.delete(from: "dashboard_sessions").where("expires_at", .lessThan, SQLBind(now))
            .returning("id_hash").all().count
        return out
    }
}
