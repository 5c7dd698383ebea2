import FelhomCore
import Foundation

/// `POST /api/v1/hosts/{id}/enrollment` (body optional).
public struct NewEnrollmentToken: Codable, Sendable {
    /// Validity (default 24 h).
    public var ttlSeconds: Int?
    public init(ttlSeconds: Int? = nil) { self.ttlSeconds = ttlSeconds }
    enum CodingKeys: String, CodingKey { case ttlSeconds = "ttl_seconds" }
}

/// A one-time enrollment token for a host.
public struct EnrollmentToken: Codable, Sendable {
    public var hostID: String
    /// Shown once; stored only as a hash.
    public var token: String
    public var expiresAt: Timestamp

    public init(hostID: String, token: String, expiresAt: Timestamp) {
        self.hostID = hostID
        self.token = token
        self.expiresAt = expiresAt
    }

    enum CodingKeys: String, CodingKey {
        case token
        case hostID = "host_id"
        case expiresAt = "expires_at"
    }
}

/// `POST /api/v1/enroll`: the token is the only credential.
public struct EnrollRequest: Codable, Sendable {
    public var token: String
    public init(token: String) { self.token = token }
}

/// What enrollment answers: the host's identity and its key (shown once).
public struct Enrolled: Codable, Sendable {
    public var hostID: String
    public var customerID: String
    public var hostName: String
    /// The host's API key, shown once.
    public var apiKey: String

    public init(hostID: String, customerID: String, hostName: String, apiKey: String) {
        self.hostID = hostID
        self.customerID = customerID
        self.hostName = hostName
        self.apiKey = apiKey
    }

    enum CodingKeys: String, CodingKey {
        case hostID = "host_id"
        case customerID = "customer_id"
        case hostName = "host_name"
        case apiKey = "api_key"
    }
}
