import Foundation
import SQLKit

/// Deletes what only needs to be kept for a while (the checker's housekeeping).
enum RetentionTable {
    static func prune(events: Int64, mail: Int64, attempts: Int64, now: Int64, in db: any SQLDatabase) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        // Mail first (outbox rows point at events).
        out["notification_log"] = try await db.delete(from: "notification_log").where("at", .lessThan, SQLBind(mail)).returning("id").all().count
        out["notification_outbox"] = try await db.delete(from: "notification_outbox").where("status", .equal, SQLBind("sent"))
            .where("created_at", .lessThan, SQLBind(mail)).returning("id").all().count
        out["events"] = try await db.delete(from: "events").where("at", .lessThan, SQLBind(events)).returning("id").all().count
        out["retrieval_attempts"] = try await db.delete(from: "retrieval_attempts").where("at", .lessThan, SQLBind(attempts)).returning("id").all()
            .count
        out["dashboard_login_failures"] = try await db.delete(from: "dashboard_login_failures").where("at", .lessThan, SQLBind(attempts))
            .returning("id").all().count
        out["dashboard_sessions"] = try await db.delete(from: "dashboard_sessions").where("expires_at", .lessThan, SQLBind(now))
            .returning("id_hash").all().count
        return out
    }
}
