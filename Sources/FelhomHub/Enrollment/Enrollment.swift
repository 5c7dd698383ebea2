import FelhomAPI
import FelhomCore
import Foundation

/// Enrolling a box: the operator makes a one-time, expiring token; the box trades it for its host
/// key on first use. The trade revokes every earlier key of that host, so the enrolled box holds
/// the only valid one (pinned), and the token can never be used again.
extension Hub {
    static let enrollmentRefused = HubError(
        .unauthorized, "enrollment_refused", "enrollment token is unknown, expired or already used; ask the operator for a new one")

    /// A new one-time token for `hostID` (operator); earlier unused tokens of the host stop working.
    ///
    /// A `recovery` token is for a replacement box of a host that was enrolled before (409
    /// `never_enrolled` otherwise): the box that trades it is told so and holds back provisioning
    /// until `felhom-agent recover` has restored the lost box's guests.
    public func createEnrollmentToken(hostID: String, ttlSeconds: Int?, recovery: Bool = false, by principal: Principal) async throws
        -> EnrollmentToken
    {
        guard principal == .operator else { throw HubError.forbidden("create enrollment tokens (operator only)") }
        let ttl = ttlSeconds ?? 86400
        guard (60...(7 * 86400)).contains(ttl) else { throw HubError.badRequest("must be 60…604800 seconds", path: "$.ttl_seconds") }
        guard try await hostRow(hostID) != nil else { throw HubError.notFound("host \(hostID)") }
        if recovery, try await store.withDB({ db in try await EnrollmentTable.enrolledAt(hostID: hostID, in: db) }) == nil {
            throw HubError(
                .conflict, "never_enrolled",
                "host \(hostID) was never enrolled, so there is no lost box to recover: make an ordinary enrollment token", path: "$.recovery")
        }
        let token = KeyAuthority.newKey(kind: "enroll")
        let now = self.now
        try await store.transaction { db in
            try await EnrollmentTable.replace(
                hostID: hostID, tokenHash: KeyAuthority.hash(token), expiresAt: now + Int64(ttl), purpose: recovery ? "recovery" : "enroll", at: now,
                in: db)
        }
        return EnrollmentToken(
            hostID: hostID, token: token, expiresAt: Timestamp(secondsSince1970: now + Int64(ttl)), recovery: recovery ? true : nil)
    }

    /// Trades a token for the host's key (no bearer key needed: the token is the credential), with
    /// the host's tunnel connector token when one is set.
    public func enroll(token: String) async throws -> Enrolled {
        guard token.hasPrefix("fh_enroll_"), token.count <= 256 else { throw Self.enrollmentRefused }
        let hash = KeyAuthority.hash(token)
        let now = self.now
        let result = try await store.transaction { db -> Enrolled? in
            // Claim the token with one conditional update: two racing boxes cannot both win.
            guard let (hostID, purpose) = try await EnrollmentTable.claim(tokenHash: hash, at: now, in: db),
                let host = try await HostsTable.find(hostID, now: now, in: db)
            else { return nil }
            let customerID = host.customerID
            let recovery = purpose == "recovery"
            try await EnrollmentTable.markEnrolled(hostID: hostID, at: now, in: db)
            let key = try await keys.issue(kind: "host", subjectID: hostID, customerID: customerID, in: db)
            try await recordEvent(
                "host_enrolled", severity: recovery ? .warning : .info, hostID: hostID, customerID: customerID,
                data: recovery ? ["recovery": true] : [:], at: now, in: db)
            // The box runs the host's tunnel with it (first and recovery enrollments alike); a token
            // this hub cannot open fails the enrollment whole (the enrollment token stays unused).
            let tunnelToken = try await revealedTunnelToken(hostID: hostID, in: db)
            return Enrolled(
                hostID: hostID, customerID: customerID, hostName: host.name, apiKey: key, recovery: recovery ? true : nil, tunnelToken: tunnelToken)
        }
        guard let result else { throw Self.enrollmentRefused }
        keys.cache.removeAll()
        return result
    }
}
