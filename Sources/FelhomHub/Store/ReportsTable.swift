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

    /// PostgreSQL: a batch of host reports (each host at most once) in one prepared statement (one
    /// round trip and one commit for the batch, atomic without BEGIN and COMMIT, parsed and planned
    /// once per connection). The reports travel as parallel arrays, unnested with their position:
    /// the host rows' update (the same as
    /// ``HostsTable/reportUpdate(hostID:at:appliedGeneration:stateHash:heartbeat:)`` — keep the two
    /// in step; `reportHistoryKeepsStateChangesAndAHeartbeat` runs both), the history rows due, the
    /// latest upserts. One row per stored report, with its position; a position with no row: no
    /// such host.
    struct HostReportBatchWrite: PostgresPreparedStatement {
        static let sql = """
            WITH input AS (
                SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::bool[], $5::text[], $6::int8[], $7::text[], $8::text[])
                    WITH ORDINALITY AS t(host_id, at, applied, has_applied, state_hash, cutoff, rep_id, body, n)),
            h AS (
                UPDATE hosts SET last_report_at = i.at,
                    applied_generation = CASE WHEN i.has_applied THEN i.applied ELSE hosts.applied_generation END,
                    liveness = CASE WHEN hosts.liveness = 'unknown' THEN 'alive' ELSE hosts.liveness END,
                    report_history_due = CASE WHEN hosts.report_state_hash = i.state_hash AND hosts.report_history_at > i.cutoff THEN 0 ELSE 1 END,
                    report_history_at = CASE WHEN hosts.report_state_hash = i.state_hash AND hosts.report_history_at > i.cutoff
                        THEN hosts.report_history_at ELSE i.at END,
                    report_state_hash = CASE WHEN hosts.blocked = 0 AND hosts.customer_suspended = 0 THEN i.state_hash ELSE NULL END
                FROM input i WHERE hosts.id = i.host_id
                RETURNING i.n, hosts.id, i.at, i.rep_id, i.body, hosts.desired_generation, hosts.blocked, hosts.customer_suspended,
                    hosts.report_history_due,
                    (SELECT COUNT(*) FROM signed_ops WHERE signed_ops.host_id = hosts.id
                       AND signed_ops.status IN ('signed', 'delivered') AND signed_ops.expires_at >= i.at) AS pending_ops),
            history AS (
                INSERT INTO host_reports (id, host_id, received_at, body)
                SELECT h.rep_id, h.id, h.at, h.body FROM h WHERE h.blocked = 0 AND h.customer_suspended = 0 AND h.report_history_due = 1),
            latest AS (
                INSERT INTO host_report_latest (host_id, received_at, body)
                SELECT h.id, h.at, h.body FROM h WHERE h.blocked = 0 AND h.customer_suspended = 0
                ON CONFLICT (host_id) DO UPDATE SET received_at = excluded.received_at, body = excluded.body)
            SELECT n, desired_generation, blocked, customer_suspended, report_history_due, pending_ops FROM h
            """
        static let bindingDataTypes: [PostgresDataType] = [
            .textArray, .int8Array, .int8Array, .boolArray, .textArray, .int8Array, .textArray, .textArray,
        ]
        /// The report's position in the batch (from 1) and what its host row said.
        typealias Row = (position: Int64, recorded: HostsTable.ReportRecorded)

        /// The reports, each host at most once (a host twice would be updated once and upserted twice).
        var reports: [Hub.ReportWrite]

        func makeBindings() throws -> PostgresBindings {
            var b = PostgresBindings(capacity: 8)
            b.append(reports.map(\.hostID))
            b.append(reports.map(\.now))
            b.append(reports.map { $0.appliedGeneration ?? 0 })
            b.append(reports.map { $0.appliedGeneration != nil })
            b.append(reports.map(\.stateHash))
            b.append(reports.map { $0.now - $0.heartbeat })
            b.append(reports.map { _ in Ids.make("rep") })
            b.append(reports.map(\.text))
            return b
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            let (n, generation, blocked, suspended, due, pending) = try row.decode((Int64, Int64, Int, Int, Int, Int64).self)
            return (n, .init(generation: generation, blocked: blocked != 0 || suspended != 0, pendingOps: pending > 0, historyDue: due != 0))
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
