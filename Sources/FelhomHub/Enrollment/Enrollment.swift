import FelhomCore
import Foundation
import SQLKit

/// Enrolling a box: the operator makes a one-time, expiring token; the box trades it for its host
/// key on first use. The trade revokes every earlier key of that host, so the enrolled box holds
/// the only valid one (pinned), and the token can never be used again.
extension Hub {
    public struct EnrollmentToken: Codable, Sendable {
        public var hostID: String
        /// Shown once; stored only as a hash.
        public var token: String
        public var expiresAt: Int64

        enum CodingKeys: String, CodingKey {
            case token
            case hostID = "host_id"
            case expiresAt = "expires_at"
        }
    }

    public struct Enrolled: Codable, Sendable {
        public var hostID: String
        public var customerID: String
        public var hostName: String
        /// The host's API key, shown once.
        public var apiKey: String

        enum CodingKeys: String, CodingKey {
            case hostID = "host_id"
            case customerID = "customer_id"
            case hostName = "host_name"
            case apiKey = "api_key"
        }
    }

    static let enrollmentRefused = HubError(.unauthorized, "enrollment_refused", "enrollment token is unknown, expired or already used; ask the operator for a new one")

    /// A new one-time token for `hostID` (operator); earlier unused tokens of the host stop working.
    public func createEnrollmentToken(hostID: String, ttlSeconds: Int?, by p: Principal) async throws -> EnrollmentToken {
        guard p == .operator else { throw HubError.forbidden("create enrollment tokens (operator only)") }
        let ttl = ttlSeconds ?? 86400
        guard (60...(7 * 86400)).contains(ttl) else { throw HubError.badRequest("must be 60…604800 seconds", path: "$.ttl_seconds") }
        guard try await hostRow(hostID) != nil else { throw HubError.notFound("host \(hostID)") }
        let token = KeyAuthority.newKey(kind: "enroll")
        let now = self.now
        try await store.transaction { db in
            try await db.update("enrollment_tokens").set("used_at", to: SQLBind(now)).where("host_id", .equal, SQLBind(hostID))
                .where(SQLColumn("used_at"), .is, SQLLiteral.null).run()
            try await db.insert(into: "enrollment_tokens").columns("id", "host_id", "hash", "expires_at", "created_at")
                .values(SQLBind(Ids.make("enr")), SQLBind(hostID), SQLBind(KeyAuthority.hash(token)), SQLBind(now + Int64(ttl)), SQLBind(now)).run()
        }
        return EnrollmentToken(hostID: hostID, token: token, expiresAt: now + Int64(ttl))
    }

    /// Trades a token for the host's key (no bearer key needed: the token is the credential).
    public func enroll(token: String) async throws -> Enrolled {
        guard token.hasPrefix("fh_enroll_"), token.count <= 256 else { throw Self.enrollmentRefused }
        let hash = KeyAuthority.hash(token)
        let now = self.now
        let result = try await store.transaction { db -> Enrolled? in
            // Claim the token with one conditional update: two racing boxes cannot both win.
            let claimed = try await db.update("enrollment_tokens").set("used_at", to: SQLBind(now))
                .where("hash", .equal, SQLBind(hash)).where(SQLColumn("used_at"), .is, SQLLiteral.null)
                .where("expires_at", .greaterThan, SQLBind(now)).returning("host_id").first()
            guard let hostID = try claimed?.decode(column: "host_id", as: String.self),
                  let h = try await db.select().columns("customer_id", "name").from("hosts").where("id", .equal, SQLBind(hostID)).first()
            else { return nil }
            let customerID = try h.decode(column: "customer_id", as: String.self)
            try await db.update("api_keys").set("revoked_at", to: SQLBind(now)).where("subject_id", .equal, SQLBind(hostID))
                .where("kind", .equal, SQLBind("host")).where(SQLColumn("revoked_at"), .is, SQLLiteral.null).run()
            let key = try await keys.issue(kind: "host", subjectID: hostID, customerID: customerID, in: db)
            try await db.update("hosts").set("enrolled_at", to: SQLBind(now)).where("id", .equal, SQLBind(hostID)).run()
            try await recordEvent("host_enrolled", hostID: hostID, customerID: customerID, at: now, in: db)
            return Enrolled(hostID: hostID, customerID: customerID, hostName: try h.decode(column: "name", as: String.self), apiKey: key)
        }
        guard let result else { throw Self.enrollmentRefused }
        keys.cache.removeAll()
        return result
    }
}
