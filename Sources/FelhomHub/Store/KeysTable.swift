import Foundation
import SQLKit

/// SQL of API keys (`api_keys`, stored as hashes) and operator signing keys (`operator_keys`).
enum KeysTable {
    /// A stored key as authentication needs it.
    struct KeyRow: Sendable {
        var hash: String
        var kind: String
        var subjectID: String
        var customerID: String
        var revoked: Bool
    }

    static func insert(id: String, hash: String, kind: String, subjectID: String, customerID: String, at: Int64, in db: any SQLDatabase) async throws
    {
        try await db.insert(into: "api_keys").columns("id", "hash", "kind", "subject_id", "customer_id", "created_at")
            .values(SQLBind(id), SQLBind(hash), SQLBind(kind), SQLBind(subjectID), SQLBind(customerID), SQLBind(at)).run()
    }

    static func byHash(_ hash: String, in db: any SQLDatabase) async throws -> KeyRow? {
        guard
            let row = try await db.select().columns("hash", "kind", "subject_id", "customer_id", "revoked_at").from("api_keys")
                .where("hash", .equal, SQLBind(hash)).first()
        else { return nil }
        return KeyRow(
            hash: try row.decode(column: "hash", as: String.self), kind: try row.decode(column: "kind", as: String.self),
            subjectID: try row.decode(column: "subject_id", as: String.self), customerID: try row.decode(column: "customer_id", as: String.self),
            revoked: !(try row.decodeNil(column: "revoked_at")))
    }

    /// Active keys of a subject: (kind, customer id) per key.
    static func active(subjectID: String, in db: any SQLDatabase) async throws -> [(kind: String, customerID: String)] {
        try await db.select().columns("kind", "customer_id").from("api_keys")
            .where("subject_id", .equal, SQLBind(subjectID)).where(SQLColumn("revoked_at"), .is, SQLLiteral.null).all()
            .map { (try $0.decode(column: "kind", as: String.self), try $0.decode(column: "customer_id", as: String.self)) }
    }

    /// Revokes every active key of a subject.
    static func revokeAll(subjectID: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.update("api_keys").set("revoked_at", to: SQLBind(at))
            .where("subject_id", .equal, SQLBind(subjectID)).where(SQLColumn("revoked_at"), .is, SQLLiteral.null).run()
    }

    // MARK: - Operator signing keys

    static func operatorKeyExists(fingerprint: String, in db: any SQLDatabase) async throws -> Bool {
        try await db.select().column("id").from("operator_keys").where("fingerprint", .equal, SQLBind(fingerprint)).first() != nil
    }

    static func insertOperatorKey(
        id: String, publicKey: String, fingerprint: String, role: String, name: String, at: Int64,
        in db: any SQLDatabase
    ) async throws {
        try await db.insert(into: "operator_keys").columns("id", "public_key", "fingerprint", "role", "name", "created_at")
            .values(SQLBind(id), SQLBind(publicKey), SQLBind(fingerprint), SQLBind(role), SQLBind(name), SQLBind(at)).run()
    }

    /// Revokes an active operator key; its fingerprint, or nil when no active key has that id.
    static func revokeOperatorKey(id: String, at: Int64, in db: any SQLDatabase) async throws -> String? {
        try await db.update("operator_keys").set("revoked_at", to: SQLBind(at))
            .where("id", .equal, SQLBind(id)).where(SQLColumn("revoked_at"), .is, SQLLiteral.null)
            .returning("fingerprint").first()?.decode(column: "fingerprint", as: String.self)
    }

    static func activeOperatorKeys(in db: any SQLDatabase) async throws -> [any SQLRow] {
        try await db.select().column("*").from("operator_keys").where(SQLColumn("revoked_at"), .is, SQLLiteral.null).orderBy("created_at").all()
    }
}
