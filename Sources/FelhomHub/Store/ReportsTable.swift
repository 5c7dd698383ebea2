import FelhomCore
import Foundation
import PostgresNIO
import SQLKit

/// SQL of reports from boxes: history (`host_reports`, `guest_reports`, pruned) and the latest of
/// each (`host_report_latest`, `guest_report_latest`, kept).
enum ReportsTable {
    /// One host report to store.
    struct HostReportRow: Sendable {
        var hostID: String
        var at: Int64
        var body: String
    }

    /// Stores history rows and replaces latest reports, one multi-row statement each (same text on
    /// SQLite and PostgreSQL; `latest` holds each host once).
    static func insertHostReports(history: [HostReportRow], latest: [HostReportRow], in db: any SQLDatabase) async throws {
        // Raw statements: the query builder's serialization was a measurable share of ingest time.
        for chunk in history.chunked(by: 200) {
            var values: [SQLQueryString] = []
            for r in chunk { values.append("(\(bind: Ids.make("rep")), \(bind: r.hostID), \(bind: r.at), \(bind: r.body))") }
            try await db.raw("INSERT INTO host_reports (id, host_id, received_at, body) VALUES \(values.joined(separator: ", "))").run()
        }
        for chunk in latest.chunked(by: 200) {
            var values: [SQLQueryString] = []
            for r in chunk { values.append("(\(bind: r.hostID), \(bind: r.at), \(bind: r.body))") }
            try await db.raw(
                """
                INSERT INTO host_report_latest (host_id, received_at, body) VALUES \(values.joined(separator: ", "))
                ON CONFLICT (host_id) DO UPDATE SET received_at = excluded.received_at, body = excluded.body
                """
            ).run()
        }
    }

    /// PostgreSQL: a whole host report in one prepared statement (one round trip, atomic without
    /// BEGIN and COMMIT, parsed and planned once per connection): the host row's update (the same
    /// as ``HostsTable/reportUpdate(hostID:at:appliedGeneration:stateHash:heartbeat:)`` — keep the
    /// two in step; `reportHistoryKeepsStateChangesAndAHeartbeat` runs both), the history row when
    /// due, the latest upsert. No row: no such host.
    struct HostReportWrite: PostgresPreparedStatement {
        static let sql = """
            WITH h AS (
                UPDATE hosts SET last_report_at = $2, applied_generation = COALESCE($3, applied_generation),
                    liveness = CASE WHEN liveness = 'unknown' THEN 'alive' ELSE liveness END,
                    report_history_due = CASE WHEN report_state_hash = $4 AND report_history_at > $5 THEN 0 ELSE 1 END,
                    report_history_at = CASE WHEN report_state_hash = $4 AND report_history_at > $5 THEN report_history_at ELSE $2 END,
                    report_state_hash = CASE WHEN blocked = 0 AND customer_suspended = 0 THEN $4 ELSE NULL END
                WHERE id = $1
                RETURNING id, desired_generation, blocked, customer_suspended, report_history_due,
                    (SELECT COUNT(*) FROM signed_ops WHERE signed_ops.host_id = hosts.id
                       AND signed_ops.status IN ('signed', 'delivered') AND signed_ops.expires_at >= $2) AS pending_ops),
            history AS (
                INSERT INTO host_reports (id, host_id, received_at, body)
                SELECT $6, h.id, $2, $7 FROM h WHERE h.blocked = 0 AND h.customer_suspended = 0 AND h.report_history_due = 1),
            latest AS (
                INSERT INTO host_report_latest (host_id, received_at, body)
                SELECT h.id, $2, $7 FROM h WHERE h.blocked = 0 AND h.customer_suspended = 0
                ON CONFLICT (host_id) DO UPDATE SET received_at = excluded.received_at, body = excluded.body)
            SELECT desired_generation, blocked, customer_suspended, report_history_due, pending_ops FROM h
            """
        static let bindingDataTypes: [PostgresDataType] = [.text, .int8, .int8, .text, .int8, .text, .text]
        typealias Row = HostsTable.ReportRecorded

        var hostID: String
        var now: Int64
        var appliedGeneration: Int64?
        var stateHash: String
        var heartbeat: Int64
        var body: String

        func makeBindings() throws -> PostgresBindings {
            var b = PostgresBindings(capacity: 7)
            b.append(hostID)
            b.append(now)
            b.append(appliedGeneration)
            b.append(stateHash)
            b.append(now - heartbeat)
            b.append(Ids.make("rep"))
            b.append(body)
            return b
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            let (generation, blocked, suspended, due, pending) = try row.decode((Int64, Int, Int, Int, Int64).self)
            return .init(generation: generation, blocked: blocked != 0 || suspended != 0, pendingOps: pending > 0, historyDue: due != 0)
        }
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
        guard
            let row = try await db.select().columns("body", "received_at").from("host_report_latest").where("host_id", .equal, SQLBind(hostID))
                .first()
        else { return nil }
        return (try row.decode(column: "body", as: String.self), try row.decode(column: "received_at", as: Int64.self))
    }

    /// Deletes report history older than `cutoff`; returns rows deleted.
    static func pruneHistory(olderThan cutoff: Int64, in db: any SQLDatabase) async throws -> Int {
        let hosts = try await db.delete(from: "host_reports").where("received_at", .lessThan, SQLBind(cutoff)).returning("id").all().count
        let guests = try await db.delete(from: "guest_reports").where("received_at", .lessThan, SQLBind(cutoff)).returning("id").all().count
        return hosts + guests
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements (statements stay under the bind limits).
    func chunked(by size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
