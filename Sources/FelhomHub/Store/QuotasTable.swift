import Foundation
import SQLKit

/// SQL of customer quotas (`customer_quotas`, one row per customer; NULL is no limit) and the
/// customer-row lock every quota check holds until its write is committed.
enum QuotasTable {
    /// A customer's quotas (all nil when none were set).
    static func get(customerID: String, in db: any SQLDatabase) async throws -> Placement.Quotas {
        guard let row = try await db.select().column("*").from("customer_quotas").where("customer_id", .equal, SQLBind(customerID)).first() else {
            return Placement.Quotas()
        }
        func value(_ column: String) throws -> Int? { try row.decodeNil(column: column) ? nil : Int(try row.decode(column: column, as: Int64.self)) }
        return Placement.Quotas(
            maxMemoryMB: try value("max_memory_mb"), maxGuests: try value("max_guests"), maxRoutes: try value("max_routes"),
            maxPublicIPv4: try value("max_public_ipv4"))
    }

    /// Replaces a customer's quotas.
    static func put(customerID: String, _ q: Placement.Quotas, at: Int64, in db: any SQLDatabase) async throws {
        try await db.delete(from: "customer_quotas").where("customer_id", .equal, SQLBind(customerID)).run()
        try await db.insert(into: "customer_quotas")
            .columns("customer_id", "max_memory_mb", "max_guests", "max_routes", "max_public_ipv4", "updated_at")
            .values(
                SQLBind(customerID), SQLBind(q.maxMemoryMB.map(Int64.init)), SQLBind(q.maxGuests.map(Int64.init)),
                SQLBind(q.maxRoutes.map(Int64.init)), SQLBind(q.maxPublicIPv4.map(Int64.init)), SQLBind(at)
            ).run()
    }

    /// Locks the customer's row to the end of the transaction (`SELECT … FOR UPDATE` on
    /// PostgreSQL; SQLite's single writer already serializes write transactions), so two
    /// concurrent edits of one customer's hosts are checked one after the other.
    static func lockCustomer(_ customerID: String, in db: any SQLDatabase) async throws {
        if db.dialect.name == "postgresql" {
            try await db.raw("SELECT id FROM customers WHERE id = \(bind: customerID) FOR UPDATE").run()
        }
    }

    /// The ids of a customer's hosts.
    static func hostIDs(customerID: String, in db: any SQLDatabase) async throws -> [String] {
        try await db.select().column("id").from("hosts").where("customer_id", .equal, SQLBind(customerID)).orderBy("id").all()
            .map { try $0.decode(column: "id", as: String.self) }
    }
}
