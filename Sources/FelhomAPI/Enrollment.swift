import FelhomCore
import Foundation

/// `POST /api/v1/hosts/{id}/enrollment` (body optional).
public struct NewEnrollmentToken: Codable, Sendable {
    /// Validity (default 24 h).
    public var ttlSeconds: Int?
    /// A recovery enrollment token: for a replacement box of a host that was enrolled before (its
    /// old key is revoked on use, as always). The box that trades it holds back provisioning
    /// until `felhom-agent recover` has restored the guests, so it never builds them empty.
    public var recovery: Bool?
    public init(ttlSeconds: Int? = nil, recovery: Bool? = nil) {
        self.ttlSeconds = ttlSeconds
        self.recovery = recovery
    }
    enum CodingKeys: String, CodingKey {
        case ttlSeconds = "ttl_seconds"
        case recovery
    }
}

/// A one-time enrollment token for a host.
public struct EnrollmentToken: Codable, Sendable {
    public var hostID: String
    /// Shown once; stored only as a hash.
    public var token: String
    public var expiresAt: Timestamp
    /// A recovery enrollment token (``NewEnrollmentToken/recovery``).
    public var recovery: Bool?

    public init(hostID: String, token: String, expiresAt: Timestamp, recovery: Bool? = nil) {
        self.hostID = hostID
        self.token = token
        self.expiresAt = expiresAt
        self.recovery = recovery
    }

    enum CodingKeys: String, CodingKey {
        case token, recovery
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
    /// Traded for a recovery enrollment token: this box replaces a lost one and must run
    /// `felhom-agent recover` before it provisions anything.
    public var recovery: Bool?
    /// The host's Cloudflare tunnel connector token when the operator set one
    /// (`PUT /api/v1/hosts/{id}/tunnel-token`): the box keeps it 0600 for `felhom-cloudflared.service`.
    public var tunnelToken: String?

    public init(hostID: String, customerID: String, hostName: String, apiKey: String, recovery: Bool? = nil, tunnelToken: String? = nil) {
        self.hostID = hostID
        self.customerID = customerID
        self.hostName = hostName
        self.apiKey = apiKey
        self.recovery = recovery
        self.tunnelToken = tunnelToken
    }

    enum CodingKeys: String, CodingKey {
        case recovery
        case tunnelToken = "tunnel_token"
        case hostID = "host_id"
        case customerID = "customer_id"
        case hostName = "host_name"
        case apiKey = "api_key"
    }
}
