import FelhomAPI
import Foundation
import SQLKit

/// SQL of the signed-op queue (`signed_ops`). The hub stores blobs and signatures as opaque text.
enum SignedOpsTable {
    /// Which ops to list.
    struct Filter: Sendable {
        var id: String?
        var hostID: String?
        var customerScope: String?
        /// One of these statuses (any when nil).
        var statuses: [SignedOpStatus]?
        /// Oldest signed first (delivery to the agent) instead of newest created first.
        var deliveryOrder = false
        var limit: Int?
    }

    static func insert(
        id: String, hostID: String, guestID: String?, customerID: String, op: String, blob: String, nonce: String,
        expiresAt: Int64, createdAt: Int64, in db: any SQLDatabase
    ) async throws {
        try await db.insert(into: "signed_ops")
            .columns("id", "host_id", "guest_id", "customer_id", "op", "blob", "nonce", "expires_at", "status", "created_at")
            .values(
                SQLBind(id), SQLBind(hostID), SQLBind(guestID), SQLBind(customerID), SQLBind(op), SQLBind(blob), SQLBind(nonce),
                SQLBind(expiresAt), SQLBind(SignedOpStatus.pendingSignature.rawValue), SQLBind(createdAt)
            ).run()
    }

    /// An op that just expired.
    struct Expired: Sendable {
        var id: String
        var hostID: String
        var customerID: String
        var op: String
        var guestID: String?
    }

    /// Marks unfinished ops past their expiry as `expired`; returns the ops it marked.
    static func expire(now: Int64, in db: any SQLDatabase) async throws -> [Expired] {
        try await db.update("signed_ops").set("status", to: SQLBind(SignedOpStatus.expired.rawValue)).set("finished_at", to: SQLBind(now))
            .where("expires_at", .lessThan, SQLBind(now)).where("status", .in, SignedOpStatus.allCases.filter(\.isOpen).map(\.rawValue))
            .returning("id", "host_id", "customer_id", "op", "guest_id").all()
            .map { row in
                Expired(
                    id: try row.decode(column: "id", as: String.self), hostID: try row.decode(column: "host_id", as: String.self),
                    customerID: try row.decode(column: "customer_id", as: String.self), op: try row.decode(column: "op", as: String.self),
                    guestID: try row.decode(column: "guest_id", as: String?.self))
            }
    }

    /// Ops with their host's and customer's names (`host_name`, `customer_name`), expired ones marked first.
    static func list(_ f: Filter, now: Int64, in db: any SQLDatabase) async throws -> [any SQLRow] {
        var query = db.select().column(SQLColumn("*", table: "signed_ops")).column(
            SQLAlias(SQLColumn("name", table: "hosts"), as: SQLIdentifier("host_name"))
        )
        .column(SQLAlias(SQLColumn("name", table: "customers"), as: SQLIdentifier("customer_name")))
        .from("signed_ops").join("hosts", on: SQLColumn("id", table: "hosts"), .equal, SQLColumn("host_id", table: "signed_ops"))
        .join("customers", on: SQLColumn("id", table: "customers"), .equal, SQLColumn("customer_id", table: "signed_ops"))
        if let id = f.id { query = query.where(SQLColumn("id", table: "signed_ops"), .equal, SQLBind(id)) }
        if let customerID = f.customerScope { query = query.where(SQLColumn("customer_id", table: "signed_ops"), .equal, SQLBind(customerID)) }
        if let hostID = f.hostID { query = query.where(SQLColumn("host_id", table: "signed_ops"), .equal, SQLBind(hostID)) }
        if let statuses = f.statuses {
            query = query.where(SQLColumn("status", table: "signed_ops"), .in, SQLGroupExpression(statuses.map { SQLBind($0.rawValue) }))
        }
        if f.deliveryOrder {
            query = query.orderBy(SQLColumn("signed_at", table: "signed_ops"))
        } else {
            query = query.orderBy(SQLOrderBy(expression: SQLColumn("created_at", table: "signed_ops"), direction: SQLDirection.descending))
                .orderBy(SQLOrderBy(expression: SQLColumn("id", table: "signed_ops"), direction: SQLDirection.descending))
        }
        if let limit = f.limit { query = query.limit(limit) }
        return try await query.all()
    }

    /// Stores a signature on a pending op; false when the op is no longer pending.
    static func sign(id: String, signature: String, signer: String, at: Int64, in db: any SQLDatabase) async throws -> Bool {
        try await db.update("signed_ops").set("status", to: SQLBind("signed")).set("signature", to: SQLBind(signature))
            .set("signer", to: SQLBind(signer)).set("signed_at", to: SQLBind(at))
            .where("id", .equal, SQLBind(id)).where("status", .equal, SQLBind("pending_signature"))
            .returning("id").all().count == 1
    }

    /// Cancels an op not yet delivered to its host; false when it is delivered or finished.
    static func cancel(id: String, at: Int64, in db: any SQLDatabase) async throws -> Bool {
        try await db.update("signed_ops").set("status", to: SQLBind(SignedOpStatus.cancelled.rawValue)).set("finished_at", to: SQLBind(at))
            .where("id", .equal, SQLBind(id))
            .where("status", .in, [SignedOpStatus.pendingSignature.rawValue, SignedOpStatus.signed.rawValue])
            .returning("id").all().count == 1
    }

    static func markDelivered(id: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.update("signed_ops").set("status", to: SQLBind("delivered")).set("delivered_at", to: SQLBind(at))
            .where("id", .equal, SQLBind(id)).where("status", .equal, SQLBind("signed")).run()
    }

    static func finish(id: String, outcome: String, reason: String?, at: Int64, in db: any SQLDatabase) async throws {
        try await db.update("signed_ops").set("status", to: SQLBind(outcome)).set("reason", to: SQLBind(reason))
            .set("finished_at", to: SQLBind(at)).where("id", .equal, SQLBind(id)).run()
    }

    /// Whether the host has ops to act on: the same condition as report ingest's (``HostsTable/pendingSignedOpsCondition(hostColumn:now:)``).
    static func hasPending(hostID: String, now: Int64, in db: any SQLDatabase) async throws -> Bool {
        try await db.raw(
            "SELECT \(HostsTable.pendingSignedOpsCondition(hostColumn: "h.id", now: now)) AS n FROM hosts h WHERE h.id = \(bind: hostID)"
        )
        .first()?.decode(column: "n", as: Int64.self) ?? 0 > 0
    }

    /// Whether the host has signed ops not delivered yet: what wakes a waiting long-poll (an op the
    /// box holds back, delivered but unanswered, does not wake it again and again).
    static func hasUndelivered(hostID: String, now: Int64, in db: any SQLDatabase) async throws -> Bool {
        try await db.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("signed_ops")
            .where("host_id", .equal, SQLBind(hostID)).where("status", .equal, SQLBind(SignedOpStatus.signed.rawValue))
            .where("expires_at", .greaterThanOrEqual, SQLBind(now)).first()?
            .decode(column: "n", as: Int64.self) ?? 0 > 0
    }

    /// Ops of a host not finished yet (the dashboard's pending count).
    static func openCount(hostID: String, in db: any SQLDatabase) async throws -> Int {
        try await db.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("signed_ops")
            .where("host_id", .equal, SQLBind(hostID)).where("status", .in, SignedOpStatus.allCases.filter(\.isOpen).map(\.rawValue)).first()?
            .decode(column: "n", as: Int.self) ?? 0
    }

    /// A copy of a signed op under a new id and nonce, as a compromised hub would replay it
    /// (`felhom demo` shows the agent refusing it).
    static func duplicateAsReplay(of id: String, newID: String, in db: any SQLDatabase) async throws {
        try await db.raw(
            """
            INSERT INTO signed_ops (id, host_id, guest_id, customer_id, op, blob, nonce, expires_at, status, signature, signer, created_at, signed_at)
            SELECT \(bind: newID), host_id, guest_id, customer_id, op, blob, nonce || '-copy', expires_at, 'signed', signature, signer, created_at, signed_at
            FROM signed_ops WHERE id = \(bind: id)
            """
        ).run()
    }
}

extension HubStore {
    /// Re-queues a copy of a signed op, as a compromised hub would replay it (used by
    /// `felhom demo` to show the agent refusing the replay; the agent's nonce log is the defence).
    public func replaySignedOp(_ id: String, as newID: String) async throws {
        try await withDB { db in try await SignedOpsTable.duplicateAsReplay(of: id, newID: newID, in: db) }
    }
}

extension HubStore {
    /// Puts a signed op straight into the queue as `signed`, past every check the hub makes (a
    /// compromised hub can do this; tests use it to prove the agent is the authority).
    public func forgeSignedOp(id: String, hostID: String, guestID: String?, op: String, blob: String, signature: String, expiresAt: Int64)
        async throws
    {
        try await withDB { db in
            try await SignedOpsTable.insertForged(
                id: id, hostID: hostID, guestID: guestID, op: op, blob: blob, signature: signature, expiresAt: expiresAt, in: db)
        }
    }
}

extension SignedOpsTable {
    static func insertForged(
        id: String, hostID: String, guestID: String?, op: String, blob: String, signature: String, expiresAt: Int64, in db: any SQLDatabase
    ) async throws {
        try await db.raw(
            """
            INSERT INTO signed_ops (id, host_id, guest_id, customer_id, op, blob, nonce, expires_at, status, signature, created_at, signed_at)
            SELECT \(bind: id), id, \(bind: guestID), customer_id, \(bind: op), \(bind: blob), \(bind: "forged-" + id), \(bind: expiresAt), 'signed', \(bind: signature), 0, 0
            FROM hosts WHERE id = \(bind: hostID)
            """
        ).run()
    }
}
