import FelhomAPI
import FelhomCore
import Foundation
import SQLKit

/// SQL of the `hosts` table: identity, desired generation, liveness, kill switch.
enum HostsTable {
    static func insert(id: String, customerID: String, name: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "hosts").columns("id", "customer_id", "name", "created_at")
            .values(SQLBind(id), SQLBind(customerID), SQLBind(name), SQLBind(at)).run()
        // A new box of a suspended customer starts blocked.
        try await db.raw(
            """
            UPDATE hosts SET customer_suspended = 1 WHERE id = \(bind: id)
              AND EXISTS (SELECT 1 FROM customers WHERE customers.id = \(bind: customerID) AND customers.suspended_at IS NOT NULL)
            """
        ).run()
    }

    static func find(_ id: String, now: Int64, in db: any SQLDatabase) async throws -> HostView? {
        guard let row = try await db.select().column("*").from("hosts").where("id", .equal, SQLBind(id)).first() else { return nil }
        return try view(row, now: now)
    }

    /// All hosts, or those of one customer, oldest first.
    static func list(customerScope: String?, now: Int64, in db: any SQLDatabase) async throws -> [HostView] {
        var query = db.select().column("*").from("hosts")
        if let customerID = customerScope { query = query.where("customer_id", .equal, SQLBind(customerID)) }
        return try await query.orderBy("created_at").orderBy("id").all().map { try view($0, now: now) }
    }

    static func view(_ r: any SQLRow, now: Int64) throws -> HostView {
        let last = try r.decodeNil(column: "last_report_at") ? nil : try r.decode(column: "last_report_at", as: Int64.self)
        return HostView(
            id: try r.decode(column: "id", as: String.self), customerID: try r.decode(column: "customer_id", as: String.self),
            name: try r.decode(column: "name", as: String.self), desiredGeneration: try r.decode(column: "desired_generation", as: Int64.self),
            blocked: try r.decode(column: "blocked", as: Int.self) != 0 || (try? r.decode(column: "customer_suspended", as: Int.self)) ?? 0 != 0,
            liveness: LivenessState(rawValue: try r.decode(column: "liveness", as: String.self)) ?? .unknown,
            lastReportAt: last.map(Timestamp.init(secondsSince1970:)), lastReportAgeSeconds: last.map { max(0, now - $0) },
            appliedGeneration: (try? r.decode(column: "applied_generation", as: Int64?.self)) ?? nil)
    }

    /// Bumps and returns a host's desired generation (nil: no such host).
    static func bumpGeneration(hostID: String, in db: any SQLDatabase) async throws -> Int64? {
        try await db.raw("UPDATE hosts SET desired_generation = desired_generation + 1 WHERE id = \(bind: hostID)").run()
        return try await db.select().column("desired_generation").from("hosts").where("id", .equal, SQLBind(hostID)).first()?
            .decode(column: "desired_generation", as: Int64.self)
    }

    /// The one condition "this host has signed ops to act on" (signed or delivered, not expired),
    /// used by report ingest, the control envelope and the long-poll watcher alike.
    static func pendingSignedOpsCondition(hostColumn: String, now: Int64) -> SQLQueryString {
        """
        (SELECT COUNT(*) FROM signed_ops WHERE signed_ops.host_id = \(unsafeRaw: hostColumn)
           AND signed_ops.status IN ('signed', 'delivered') AND signed_ops.expires_at >= \(bind: now))
        """
    }

    /// What a report's answer needs, read by the statement that records the report's time.
    struct ReportRecorded: Sendable {
        var generation: Int64
        var blocked: Bool
        var pendingOps: Bool
        /// The report's state changed, or the last history row is older than the heartbeat.
        var historyDue: Bool
    }

    /// The SET list and RETURNING list of the host row's update for one report (shared by the
    /// SQLite path and PostgreSQL's one-statement write). The history decision reads the row's old
    /// values (SET expressions all see the row as it was), so concurrent replicas agree.
    static func reportUpdate(hostID: String, at now: Int64, appliedGeneration: Int64?, stateHash: String, heartbeat: Int64) -> SQLQueryString {
        """
        UPDATE hosts SET last_report_at = \(bind: now), applied_generation = COALESCE(\(bind: appliedGeneration), applied_generation),
            liveness = CASE WHEN liveness = 'unknown' THEN 'alive' ELSE liveness END,
            report_history_due = CASE WHEN report_state_hash = \(bind: stateHash) AND report_history_at > \(bind: now - heartbeat) THEN 0 ELSE 1 END,
            report_history_at = CASE WHEN report_state_hash = \(bind: stateHash) AND report_history_at > \(bind: now - heartbeat)
                THEN report_history_at ELSE \(bind: now) END,
            report_state_hash = CASE WHEN blocked = 0 AND customer_suspended = 0 THEN \(bind: stateHash) ELSE NULL END
        WHERE id = \(bind: hostID)
        RETURNING id, desired_generation, blocked, customer_suspended, report_history_due,
            \(pendingSignedOpsCondition(hostColumn: "hosts.id", now: now)) AS pending_ops
        """
    }

    static func decodeRecorded(_ row: any SQLRow) throws -> ReportRecorded {
        let blocked = try row.decode(column: "blocked", as: Int.self) != 0 || row.decode(column: "customer_suspended", as: Int.self) != 0
        return ReportRecorded(
            generation: try row.decode(column: "desired_generation", as: Int64.self), blocked: blocked,
            pendingOps: try row.decode(column: "pending_ops", as: Int64.self) > 0,
            historyDue: try row.decode(column: "report_history_due", as: Int.self) != 0)
    }

    /// Records a report's time on the host row; `nil`: no such host.
    static func recordReport(
        hostID: String, at now: Int64, appliedGeneration: Int64?, stateHash: String, heartbeat: Int64, in db: any SQLDatabase
    ) async throws -> ReportRecorded? {
        let update = reportUpdate(hostID: hostID, at: now, appliedGeneration: appliedGeneration, stateHash: stateHash, heartbeat: heartbeat)
        guard let row = try await db.raw(update).first() else { return nil }
        return try decodeRecorded(row)
    }

    /// Generation, kill-switch state and pending ops of several hosts in one query (long-poll watcher).
    static func controlFingerprints(hostIDs: [String], now: Int64, in db: any SQLDatabase) async throws -> [String: String] {
        var out: [String: String] = [:]
        let rows = try await db.raw(
            """
            SELECT id, desired_generation, blocked, customer_suspended, \(pendingSignedOpsCondition(hostColumn: "hosts.id", now: now)) AS pending_ops
            FROM hosts WHERE id IN \(SQLBind.group(hostIDs))
            """
        ).all()
        for row in rows {
            out[try row.decode(column: "id", as: String.self)] = [
                String(try row.decode(column: "desired_generation", as: Int64.self)), String(try row.decode(column: "blocked", as: Int.self)),
                String(try row.decode(column: "customer_suspended", as: Int.self)), String(try row.decode(column: "pending_ops", as: Int64.self) > 0),
            ].joined(separator: "|")
        }
        return out
    }

    static func setBlocked(_ id: String, _ blocked: Bool, in db: any SQLDatabase) async throws {
        try await db.update("hosts").set("blocked", to: SQLBind(blocked ? 1 : 0)).where("id", .equal, SQLBind(id)).run()
    }

    /// Marks every host of a customer suspended (or not); returns their ids.
    static func setCustomerSuspended(customerID: String, _ suspended: Bool, in db: any SQLDatabase) async throws -> [String] {
        try await db.update("hosts").set("customer_suspended", to: SQLBind(suspended ? 1 : 0)).where("customer_id", .equal, SQLBind(customerID)).run()
        return try await db.select().column("id").from("hosts").where("customer_id", .equal, SQLBind(customerID)).all()
            .map { try $0.decode(column: "id", as: String.self) }
    }

    /// Liveness inputs of every host (the checker).
    static func livenessRows(in db: any SQLDatabase) async throws
        -> [(id: String, customerID: String, liveness: LivenessState, lastReportAt: Int64?, createdAt: Int64)]
    {
        try await db.select().columns("id", "customer_id", "liveness", "last_report_at", "created_at").from("hosts").all().map {
            (
                try $0.decode(column: "id", as: String.self), try $0.decode(column: "customer_id", as: String.self),
                LivenessState(rawValue: try $0.decode(column: "liveness", as: String.self)) ?? .unknown,
                try $0.decode(column: "last_report_at", as: Int64?.self),
                try $0.decode(column: "created_at", as: Int64.self)
            )
        }
    }

    /// Moves a host's liveness from `old` to `new`; false when another checker already did.
    static func transitionLiveness(_ id: String, from old: LivenessState, to new: LivenessState, in db: any SQLDatabase) async throws -> Bool {
        try await !db.update("hosts").set("liveness", to: SQLBind(new.rawValue)).where("id", .equal, SQLBind(id))
            .where("liveness", .equal, SQLBind(old.rawValue))
            .returning("id").all().isEmpty
    }

    /// Host count per liveness state (metrics).
    static func countByLiveness(in db: any SQLDatabase) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for row in try await db.raw("SELECT liveness, COUNT(*) AS n FROM hosts GROUP BY liveness").all() {
            out[try row.decode(column: "liveness", as: String.self)] = try row.decode(column: "n", as: Int.self)
        }
        return out
    }

    /// Hosts with their customer's time zone (backup deadlines).
    static func withTimeZones(in db: any SQLDatabase) async throws -> [(id: String, customerID: String, timezone: String, createdAt: Int64)] {
        try await db.raw(
            """
            SELECT h.id AS id, h.customer_id AS customer_id, c.timezone AS timezone, h.created_at AS created_at
            FROM hosts h JOIN customers c ON c.id = h.customer_id
            """
        ).all().map {
            (
                try $0.decode(column: "id", as: String.self), try $0.decode(column: "customer_id", as: String.self),
                try $0.decode(column: "timezone", as: String.self), try $0.decode(column: "created_at", as: Int64.self)
            )
        }
    }

    /// Hosts (reporting, not blocked) whose latest published generation is newer than the one they
    /// say they applied, published before `publishedBefore`.
    static func unappliedGenerations(publishedBefore: Int64, in db: any SQLDatabase) async throws
        -> [(id: String, customerID: String, desired: Int64, applied: Int64?, publishedAt: Int64)]
    {
        try await db.raw(
            """
            SELECT h.id AS id, h.customer_id AS customer_id, h.desired_generation AS desired, h.applied_generation AS applied,
                   p.published_at AS published_at
            FROM hosts h JOIN desired_published p ON p.host_id = h.id AND p.generation = h.desired_generation
            WHERE h.desired_generation > COALESCE(h.applied_generation, 0) AND p.published_at < \(bind: publishedBefore)
              AND h.blocked = 0 AND h.customer_suspended = 0 AND h.last_report_at IS NOT NULL
            """
        ).all().map {
            (
                try $0.decode(column: "id", as: String.self), try $0.decode(column: "customer_id", as: String.self),
                try $0.decode(column: "desired", as: Int64.self), try $0.decode(column: "applied", as: Int64?.self),
                try $0.decode(column: "published_at", as: Int64.self)
            )
        }
    }

    /// The host's name, for mail texts.
    static func name(_ id: String, in db: any SQLDatabase) async throws -> String? {
        try await db.select().column("name").from("hosts").where("id", .equal, SQLBind(id)).first()?.decode(column: "name", as: String.self)
    }

    /// Ids of a customer's hosts.
    static func ids(ofCustomer customerID: String, in db: any SQLDatabase) async throws -> [String] {
        try await db.select().column("id").from("hosts").where("customer_id", .equal, SQLBind(customerID)).all()
            .map { try $0.decode(column: "id", as: String.self) }
    }
}
