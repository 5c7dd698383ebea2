import Foundation
import SQLKit

/// SQL of dashboard sessions (`dashboard_sessions`, ids stored as hashes) and sign-in failures
/// (`dashboard_login_failures`, per client).
enum SessionsTable {
    static func create(idHash: String, csrf: String, now: Int64, expiresAt: Int64, operatorKeyHash: String, in db: any SQLDatabase) async throws {
        try await db.delete(from: "dashboard_sessions").where("expires_at", .lessThan, SQLBind(now)).run()
        try await db.insert(into: "dashboard_sessions").columns("id_hash", "csrf", "created_at", "expires_at", "operator_key_hash", "last_seen_at")
            .values(SQLBind(idHash), SQLBind(csrf), SQLBind(now), SQLBind(expiresAt), SQLBind(operatorKeyHash), SQLBind(now)).run()
    }

    /// A valid session: not expired, used since `idleSince`, made with the operator key in force.
    static func find(idHash: String, now: Int64, idleSince: Int64, operatorKeyHash: String, in db: any SQLDatabase) async throws
        -> (csrf: String, lastSeenAt: Int64)?
    {
        guard
            let row = try await db.select().columns("csrf", "last_seen_at").from("dashboard_sessions").where("id_hash", .equal, SQLBind(idHash))
                .where("expires_at", .greaterThan, SQLBind(now)).where("last_seen_at", .greaterThan, SQLBind(idleSince))
                .where("operator_key_hash", .equal, SQLBind(operatorKeyHash)).first()
        else { return nil }
        return (try row.decode(column: "csrf", as: String.self), try row.decode(column: "last_seen_at", as: Int64.self))
    }

    static func touch(idHash: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.update("dashboard_sessions").set("last_seen_at", to: SQLBind(at)).where("id_hash", .equal, SQLBind(idHash)).run()
    }

    static func delete(idHash: String, in db: any SQLDatabase) async throws {
        try await db.delete(from: "dashboard_sessions").where("id_hash", .equal, SQLBind(idHash)).run()
    }

    static func deleteAll(in db: any SQLDatabase) async throws {
        try await db.delete(from: "dashboard_sessions").run()
    }

    static func recentFailures(client: String, since: Int64, in db: any SQLDatabase) async throws -> Int {
        try await db.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("dashboard_login_failures")
            .where("client", .equal, SQLBind(client)).where("at", .greaterThan, SQLBind(since)).first()?.decode(column: "n", as: Int.self) ?? 0
    }

    static func recordFailure(client: String, at: Int64, forgetBefore: Int64, in db: any SQLDatabase) async throws {
        try await db.delete(from: "dashboard_login_failures").where("at", .lessThan, SQLBind(forgetBefore)).run()
        try await db.insert(into: "dashboard_login_failures").columns("id", "at", "client")
            .values(SQLBind(Ids.make("lf")), SQLBind(at), SQLBind(client)).run()
    }
}
