import Foundation
import SQLKit

/// SQL of the `guests` table.
enum GuestsTable {
    static func hostID(ofGuest id: String, in db: any SQLDatabase) async throws -> String? {
        try await db.select().column("host_id").from("guests").where("id", .equal, SQLBind(id)).first()?.decode(column: "host_id", as: String.self)
    }

    static func byIdempotencyKey(hostID: String, key: String, in db: any SQLDatabase) async throws -> String? {
        try await db.select().column("id").from("guests").where("host_id", .equal, SQLBind(hostID))
            .where("idempotency_key", .equal, SQLBind(key)).first()?.decode(column: "id", as: String.self)
    }

    static func rename(_ id: String, to name: String, in db: any SQLDatabase) async throws {
        try await db.update("guests").set("name", to: SQLBind(name)).where("id", .equal, SQLBind(id)).run()
    }

    static func count(onHost hostID: String, in db: any SQLDatabase) async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM guests WHERE host_id = \(bind: hostID)").first()?.decode(column: "n", as: Int.self) ?? 0
    }

    static func insert(id: String, hostID: String, name: String, at: Int64, idempotencyKey: String?, in db: any SQLDatabase) async throws {
        try await db.insert(into: "guests").columns("id", "host_id", "name", "created_at", "idempotency_key")
            .values(SQLBind(id), SQLBind(hostID), SQLBind(name), SQLBind(at), SQLBind(idempotencyKey)).run()
    }

    /// A guest row (for its controller config).
    static func find(_ id: String, in db: any SQLDatabase) async throws -> (any SQLRow)? {
        try await db.select().column("*").from("guests").where("id", .equal, SQLBind(id)).first()
    }

    /// Ids of every guest of a customer's hosts.
    static func ids(ofCustomer customerID: String, in db: any SQLDatabase) async throws -> [String] {
        try await db.select().column(SQLColumn("id", table: "guests")).from("guests")
            .join("hosts", on: SQLColumn("id", table: "hosts"), .equal, SQLColumn("host_id", table: "guests"))
            .where(SQLColumn("customer_id", table: "hosts"), .equal, SQLBind(customerID)).all().map { try $0.decode(column: "id", as: String.self) }
    }
}
