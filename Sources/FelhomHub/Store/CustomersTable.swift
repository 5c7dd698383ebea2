import Foundation
import SQLKit

/// SQL of the `customers` table family (customers, their suspension and retrieval hash).
enum CustomersTable {
    struct NewRow: Sendable {
        var id, name, email, domain, timezone, language: String
        var createdAt: Int64
    }

    static func insert(_ c: NewRow, in db: any SQLDatabase) async throws {
        try await db.insert(into: "customers").columns("id", "name", "email", "domain", "timezone", "language", "created_at")
            .values(
                SQLBind(c.id), SQLBind(c.name), SQLBind(c.email), SQLBind(c.domain), SQLBind(c.timezone), SQLBind(c.language),
                SQLBind(c.createdAt)
            ).run()
    }

    static func exists(_ id: String, in db: any SQLDatabase) async throws -> Bool {
        try await db.select().column("id").from("customers").where("id", .equal, SQLBind(id)).first() != nil
    }

    static func find(_ id: String, in db: any SQLDatabase) async throws -> (any SQLRow)? {
        try await db.select().column("*").from("customers").where("id", .equal, SQLBind(id)).first()
    }

    /// All customers, or the one of `scope`, oldest first.
    static func list(scope: String?, in db: any SQLDatabase) async throws -> [any SQLRow] {
        var query = db.select().column("*").from("customers")
        if let scope { query = query.where("id", .equal, SQLBind(scope)) }
        return try await query.orderBy("created_at").orderBy("id").all()
    }

    /// The customer of a domain: id and retrieval hash.
    static func byDomain(_ domain: String, in db: any SQLDatabase) async throws -> (id: String, retrievalHash: String?)? {
        guard let row = try await db.select().columns("id", "retrieval_hash").from("customers").where("domain", .equal, SQLBind(domain)).first()
        else {
            return nil
        }
        return (try row.decode(column: "id", as: String.self), try row.decode(column: "retrieval_hash", as: String?.self))
    }

    static func isSuspended(_ id: String, in db: any SQLDatabase) async throws -> Bool {
        try await db.select().column("suspended_at").from("customers").where("id", .equal, SQLBind(id)).first()
            .map { try !$0.decodeNil(column: "suspended_at") } ?? false
    }

    static func setSuspended(_ id: String, at: Int64?, in db: any SQLDatabase) async throws {
        try await db.update("customers").set("suspended_at", to: SQLBind(at)).where("id", .equal, SQLBind(id)).run()
    }

    static func setRetrievalHash(_ id: String, hash: String, in db: any SQLDatabase) async throws {
        try await db.update("customers").set("retrieval_hash", to: SQLBind(hash)).where("id", .equal, SQLBind(id)).run()
    }

    static func setNotifyTypes(_ id: String, json: String?, in db: any SQLDatabase) async throws {
        try await db.update("customers").set("notify_types", to: SQLBind(json)).where("id", .equal, SQLBind(id)).run()
    }

    /// Mail settings of a customer: e-mail, language and chosen notification types (JSON).
    static func mailSettings(_ id: String, in db: any SQLDatabase) async throws -> (email: String, language: String, notifyTypes: String?)? {
        guard let row = try await db.select().columns("email", "language", "notify_types").from("customers").where("id", .equal, SQLBind(id)).first()
        else { return nil }
        return (
            try row.decode(column: "email", as: String.self), try row.decode(column: "language", as: String.self),
            try row.decode(column: "notify_types", as: String?.self)
        )
    }
}

extension CustomersTable {
    static func setConfigOverrides(_ id: String, json: String, in db: any SQLDatabase) async throws {
        try await db.update("customers").set("config_overrides", to: SQLBind(json)).where("id", .equal, SQLBind(id)).run()
    }

    /// The domain and config overrides of the customer a guest belongs to.
    static func configSource(ofGuest guestID: String, in db: any SQLDatabase) async throws
        -> (domain: String, overrides: String?, guestName: String, idempotencyKey: String?)?
    {
        guard
            let row = try await db.select().column(SQLColumn("domain", table: "customers")).column(SQLColumn("config_overrides", table: "customers"))
                .column(SQLAlias(SQLColumn("name", table: "guests"), as: SQLIdentifier("guest_name")))
                .column(SQLColumn("idempotency_key", table: "guests"))
                .from("guests").join("hosts", on: SQLColumn("id", table: "hosts"), .equal, SQLColumn("host_id", table: "guests"))
                .join("customers", on: SQLColumn("id", table: "customers"), .equal, SQLColumn("customer_id", table: "hosts"))
                .where(SQLColumn("id", table: "guests"), .equal, SQLBind(guestID)).first()
        else { return nil }
        return (
            try row.decode(column: "domain", as: String.self), try row.decode(column: "config_overrides", as: String?.self),
            try row.decode(column: "guest_name", as: String.self), try row.decode(column: "idempotency_key", as: String?.self)
        )
    }

    static func cloudflareZone(_ id: String, in db: any SQLDatabase) async throws -> String? {
        try await db.select().column("cloudflare_zone_id").from("customers").where("id", .equal, SQLBind(id)).first()?
            .decode(column: "cloudflare_zone_id", as: String?.self)
    }

    /// Records the zone and the allowed countries (nil: no geo rule active).
    static func setGeo(_ id: String, zone: String?, countries: String?, in db: any SQLDatabase) async throws {
        var query = db.update("customers").set("geo_countries", to: SQLBind(countries))
        if let zone { query = query.set("cloudflare_zone_id", to: SQLBind(zone)) }
        try await query.where("id", .equal, SQLBind(id)).run()
    }
}
