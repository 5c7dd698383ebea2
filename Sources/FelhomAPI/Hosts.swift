import FelhomCore
import Foundation

/// A host's liveness from its reports (the dead-man's switch).
public enum LivenessState: String, Codable, Sendable, CaseIterable {
    /// Never reported.
    case unknown
    case alive
    /// Missed reports for `stale_after_seconds`.
    case stale
    /// Missed reports for `down_after_seconds`.
    case down

    /// A value this version does not know reads as `unknown` (a newer hub's state).
    public init(from decoder: any Decoder) throws {
        self = Self(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .unknown
    }
}

/// `POST /api/v1/hosts`.
public struct NewHost: Codable, Sendable {
    public var customerID: String
    public var name: String

    public init(customerID: String, name: String) {
        self.customerID = customerID
        self.name = name
    }

    enum CodingKeys: String, CodingKey {
        case name
        case customerID = "customer_id"
    }
}

/// A host as the API shows it.
public struct HostView: Codable, Sendable, Equatable {
    public var id: String
    public var customerID: String
    public var name: String
    public var desiredGeneration: Int64
    public var blocked: Bool
    public var liveness: LivenessState
    public var lastReportAt: Timestamp?
    public var lastReportAgeSeconds: Int64?
    /// The desired generation the box says it has applied (nil: not yet, or an older agent).
    public var appliedGeneration: Int64?

    public init(
        id: String, customerID: String, name: String, desiredGeneration: Int64, blocked: Bool, liveness: LivenessState,
        lastReportAt: Timestamp?, lastReportAgeSeconds: Int64?, appliedGeneration: Int64?
    ) {
        self.id = id
        self.customerID = customerID
        self.name = name
        self.desiredGeneration = desiredGeneration
        self.blocked = blocked
        self.liveness = liveness
        self.lastReportAt = lastReportAt
        self.lastReportAgeSeconds = lastReportAgeSeconds
        self.appliedGeneration = appliedGeneration
    }

    enum CodingKeys: String, CodingKey {
        case id, name, blocked, liveness
        case appliedGeneration = "applied_generation"
        case customerID = "customer_id"
        case desiredGeneration = "desired_generation"
        case lastReportAt = "last_report_at"
        case lastReportAgeSeconds = "last_report_age_seconds"
    }
}

/// `{"hosts": [...]}`.
public struct HostList: Codable, Sendable {
    public var hosts: [HostView]
    public init(hosts: [HostView]) { self.hosts = hosts }
}

/// `POST /api/v1/hosts/{id}/guests`: a retried request with the same `idempotency_key` gets the same guest.
public struct NewGuest: Codable, Sendable {
    public var name: String
    public var idempotencyKey: String?

    public init(name: String, idempotencyKey: String? = nil) {
        self.name = name
        self.idempotencyKey = idempotencyKey
    }

    enum CodingKeys: String, CodingKey {
        case name
        case idempotencyKey = "idempotency_key"
    }
}

/// `POST /api/v1/customers/{id}/suspend|resume`.
public struct CustomerSuspension: Codable, Sendable, Equatable {
    public var id: String
    public var suspended: Bool
    public init(id: String, suspended: Bool) {
        self.id = id
        self.suspended = suspended
    }
}

/// `DELETE /api/v1/keys/{id}`: how many keys were revoked.
public struct Revoked: Codable, Sendable {
    public var revoked: Int
    public init(revoked: Int) { self.revoked = revoked }
}

/// `POST /api/v1/customers/{id}/keys`: a customer key (shown once).
public struct IssuedKey: Codable, Sendable {
    public var apiKey: String
    public init(apiKey: String) { self.apiKey = apiKey }
    enum CodingKeys: String, CodingKey { case apiKey = "api_key" }
}

/// `GET /healthz`.
public struct Health: Codable, Sendable {
    public var status: String
    public var store: String
    /// The hub's version (absent from hubs before 0.2.0).
    public var version: String?
    public init(status: String, store: String, version: String? = nil) {
        self.status = status
        self.store = store
        self.version = version
    }
}
