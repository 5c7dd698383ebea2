import Foundation
import SQLKit

/// SQL of `secret_bundles`: every version of every guest's secret bundles, each sealed (AES-GCM,
/// see ``Hub/putSecretBundle(guestID:bundle:upload:by:)``); the hub never stores a value in clear.
enum SecretsTable {
    /// Inserts the next version of a bundle and returns its number (under the caller's transaction).
    static func insertNextVersion(
        guestID: String, bundle: String, sealed: (Int64) throws -> String, keys: String, at: Int64, in db: any SQLDatabase
    ) async throws -> Int64 {
        let last =
            try await db.select().column(SQLFunction("MAX", args: SQLColumn("version")), as: "v").from("secret_bundles")
            .where("guest_id", .equal, SQLBind(guestID)).where("bundle", .equal, SQLBind(bundle)).first()?
            .decode(column: "v", as: Int64?.self) ?? 0
        let version = last + 1
        try await db.insert(into: "secret_bundles").columns("guest_id", "bundle", "version", "sealed", "keys", "created_at")
            .values(SQLBind(guestID), SQLBind(bundle), SQLBind(version), SQLBind(try sealed(version)), SQLBind(keys), SQLBind(at)).run()
        return version
    }

    /// The latest version of each of a guest's bundles: (bundle, version, sealed, keys, created_at).
    static func latest(guestID: String, in db: any SQLDatabase) async throws -> [(String, Int64, String, String, Int64)] {
        let rows = try await db.raw(
            """
            SELECT b.bundle, b.version, b.sealed, b.keys, b.created_at FROM secret_bundles b
            WHERE b.guest_id = \(bind: guestID)
              AND b.version = (SELECT MAX(version) FROM secret_bundles m WHERE m.guest_id = b.guest_id AND m.bundle = b.bundle)
            ORDER BY b.bundle
            """
        ).all()
        return try rows.map {
            (
                try $0.decode(column: "bundle", as: String.self), try $0.decode(column: "version", as: Int64.self),
                try $0.decode(column: "sealed", as: String.self), try $0.decode(column: "keys", as: String.self),
                try $0.decode(column: "created_at", as: Int64.self)
            )
        }
    }
}
