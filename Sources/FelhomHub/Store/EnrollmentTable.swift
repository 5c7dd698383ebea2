import Foundation
import SQLKit

/// SQL of enrollment tokens (`enrollment_tokens`, stored as hashes, one-time).
enum EnrollmentTable {
    /// Ends every unused token of a host and stores a new one.
    /// `purpose` is `enroll` or `recovery`.
    static func replace(hostID: String, tokenHash: String, expiresAt: Int64, purpose: String, at now: Int64, in db: any SQLDatabase) async throws {
        try await db.update("enrollment_tokens").set("used_at", to: SQLBind(now)).where("host_id", .equal, SQLBind(hostID))
            .where(SQLColumn("used_at"), .is, SQLLiteral.null).run()
        try await db.insert(into: "enrollment_tokens").columns("id", "host_id", "hash", "expires_at", "created_at", "purpose")
            .values(SQLBind(Ids.make("enr")), SQLBind(hostID), SQLBind(tokenHash), SQLBind(expiresAt), SQLBind(now), SQLBind(purpose)).run()
    }

    /// Claims a valid unused token with one conditional update (two racing boxes cannot both
    /// win); returns the host it belongs to and the token's purpose.
    static func claim(tokenHash: String, at now: Int64, in db: any SQLDatabase) async throws -> (hostID: String, purpose: String)? {
        guard
            let row = try await db.update("enrollment_tokens").set("used_at", to: SQLBind(now))
                .where("hash", .equal, SQLBind(tokenHash)).where(SQLColumn("used_at"), .is, SQLLiteral.null)
                .where("expires_at", .greaterThan, SQLBind(now)).returning("host_id", "purpose").first()
        else { return nil }
        return (try row.decode(column: "host_id", as: String.self), try row.decode(column: "purpose", as: String.self))
    }

    /// When the host was last enrolled (nil: never).
    static func enrolledAt(hostID: String, in db: any SQLDatabase) async throws -> Int64? {
        try await db.select().column("enrolled_at").from("hosts").where("id", .equal, SQLBind(hostID)).first()?
            .decode(column: "enrolled_at", as: Int64?.self)
    }

    /// Revokes the host's keys and records the enrollment time.
    static func markEnrolled(hostID: String, at now: Int64, in db: any SQLDatabase) async throws {
        try await db.update("api_keys").set("revoked_at", to: SQLBind(now)).where("subject_id", .equal, SQLBind(hostID))
            .where("kind", .equal, SQLBind("host")).where(SQLColumn("revoked_at"), .is, SQLLiteral.null).run()
        try await db.update("hosts").set("enrolled_at", to: SQLBind(now)).where("id", .equal, SQLBind(hostID)).run()
    }
}
