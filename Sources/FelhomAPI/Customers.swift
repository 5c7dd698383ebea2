import FelhomCore
import Foundation

/// `POST /api/v1/customers`.
public struct NewCustomer: Codable, Sendable {
    public var name: String
    public var email: String
    public var domain: String
    /// IANA time zone (default `Europe/Budapest`).
    public var timezone: String?
    /// `hu` (default) or `en`.
    public var language: String?

    public init(name: String, email: String, domain: String, timezone: String? = nil, language: String? = nil) {
        self.name = name
        self.email = email
        self.domain = domain
        self.timezone = timezone
        self.language = language
    }
}

/// A customer as the API shows it.
public struct CustomerView: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var email: String
    public var domain: String
    public var timezone: String
    public var language: String
    /// The event types this customer is mailed about (their choice, or the default).
    public var notifyTypes: [String]
    /// Whether `notifyTypes` is the hub's default (the customer has not chosen).
    public var notifyTypesDefault: Bool
    public var createdAt: Timestamp
    /// Suspended by the operator (its hosts are blocked, its keys refused).
    public var suspended: Bool = false

    public init(
        id: String, name: String, email: String, domain: String, timezone: String, language: String, notifyTypes: [String],
        notifyTypesDefault: Bool, createdAt: Timestamp, suspended: Bool
    ) {
        self.id = id
        self.name = name
        self.email = email
        self.domain = domain
        self.timezone = timezone
        self.language = language
        self.notifyTypes = notifyTypes
        self.notifyTypesDefault = notifyTypesDefault
        self.createdAt = createdAt
        self.suspended = suspended
    }

    enum CodingKeys: String, CodingKey {
        case id, name, email, domain, timezone, language, suspended
        case notifyTypes = "notify_types"
        case notifyTypesDefault = "notify_types_default"
        case createdAt = "created_at"
    }
}

/// `{"customers": [...]}`.
public struct CustomerList: Codable, Sendable {
    public var customers: [CustomerView]
    public init(customers: [CustomerView]) { self.customers = customers }
}

/// `PUT /api/v1/customers/{id}/notifications`: the event types to mail, or `null` for the default.
public struct NotificationTypes: Codable, Sendable {
    public var types: [String]?
    public init(types: [String]?) { self.types = types }
}

/// What a create call answers: the new id and, for hosts and guests, its API key (shown once).
public struct Created: Codable, Sendable, Equatable {
    public var id: String?
    public var apiKey: String?

    public init(id: String?, apiKey: String? = nil) {
        self.id = id
        self.apiKey = apiKey
    }

    enum CodingKeys: String, CodingKey {
        case id
        case apiKey = "api_key"
    }
}
